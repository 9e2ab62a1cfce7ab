"""Render results/*.json (from `python -m core evaluate --json`) as the README's headline table
and the full tables of docs/results.md.

    python scripts/results_table.py          # rewrites the blocks between the markers of both files
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ROWS = [("vanilla", "results/vanilla.json"), ("retain-only (gold standard)", "results/retain_only.json"),
        ("vanilla + MLLMEraser", "results/eraser.json")]
BASELINES = [("GA", "ga"), ("GA_Diff", "ga_diff"), ("KL_Min", "kl_min"), ("NPO (ref: retain-only)", "npo"),
             ("IdkNLL", "idk"), ("MMUnlearner (Fisher-masked GA)", "mmunlearner"),
             ("SMFA (full-rank deltas, k=5)", "smfa"), ("VKD (vision tower + projector only)", "vkd")]
START, END = "<!-- results:start -->", "<!-- results:end -->"
HEAD_START, HEAD_END = "<!-- headline:start -->", "<!-- headline:end -->"
HEADLINE = [("vanilla", "vanilla"), ("retain-only twin (gold standard)", "retain_only"),
            ("**MLLMEraser** (shipped eraser, weights untouched)", "eraser"), ("IdkNLL (weights edited)", "baseline_idk"),
            ("NPO (weights edited)", "baseline_npo"), ("GA_Diff (weights edited)", "baseline_ga_diff"),
            ("SMFA (weights edited)", "baseline_smfa")]


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _per_task(eraser: dict) -> str:
    per = eraser.get("task_strengths") or {}
    return f" ({', '.join(f'{t} {v}' for t, v in per.items())})" if per else ""


def table() -> str:
    lines = ["| model | split | MCQ img | MCQ text | ROUGE-L img | cloze img | refusal img | fluency img |",
             "|---|---|---|---|---|---|---|---|"]
    extra = []
    for label, path in ROWS:
        f = ROOT / path
        if not f.is_file():
            continue
        res = json.loads(f.read_text())
        for split in ("forget", "test", "retain", "real"):
            it, tx = res["splits"][split]["image_text"], res["splits"][split].get("text_only", {})
            lines.append(f"| {label} | {split} | {pct(it['classification'])} | {pct(tx.get('classification'))} | "
                         f"{pct(it['generation_rougeL'])} | {pct(it['cloze'])} | {pct(it['refusal_rate'])} | "
                         f"{pct(it.get('fluency'))} |")
        rp = res.get("refusal_prompts", {})
        if rp:
            extra.append(f"- {label}: private-data requests refused: forget people {pct(rp.get('forget'))}%, "
                         f"retain people {pct(rp.get('retain'))}%")
        if res.get("eraser"):
            e = res["eraser"]
            extra.append(f"- eraser setting: direction `{e['direction']}`, layers {e['layers']}, strength "
                         f"{e['strength']}{_per_task(e)}, mode `{e['mode']}`, ratio {e['ratio']}, gamma {e['gamma']}, "
                         f"retain weight {e.get('retain_weight', 0.0)}, "
                         f"{'one gate per forget person' if e.get('subject_gates') else 'one gate'}, gate read at "
                         f"the {e.get('gate_position', 'last_prompt_token').replace('_', ' ')}"
                         + (f" of layers {', '.join(map(str, e['joint_gate']))} together (one joint gate, read "
                            "before the steered layer)" if e.get("joint_gate") else
                            f" of layer {e['gate_layer']} (read before the steered layer)" if e.get("gate_layer") is not None
                            else " of each steered layer"))
    relearn = relearning()
    return "\n".join(lines + [""] + extra + ["", comparison()] + ([relearn] if relearn else []))


def _setting(eraser: dict | None) -> str:
    """Where and how hard an eraser row steers, so that rows pinned at an earlier choice say so."""
    if not eraser:
        return ""
    layers = eraser["layers"]
    where = f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(map(str, layers))}"
    gate = "" if eraser.get("gate_layer") is None else f", gate read at layer {eraser['gate_layer']}"
    if eraser.get("joint_gate"):
        gate = f", one gate read over layers {', '.join(map(str, eraser['joint_gate']))}"
    floor, full = eraser.get("gate_floor") or 0.0, eraser.get("gate_full") or 1.0
    ramp = f", gate ramp {floor:g}-{full:g}" if (floor, full) != (0.0, 1.0) else ""  # rows told apart by it alone
    return f" [{where} at {eraser['strength']}{_per_task(eraser)}{gate}{ramp}]"


def comparison() -> str:
    """One line per method: forgetting (forget / test) against utility (retain / real); image+text
    unless marked."""
    paper = "vanilla + MLLMEraser, the paper's null-space fit"
    one = "vanilla + MLLMEraser, one gate with retain rows"
    rows = ROWS + [("vanilla + MLLMEraser, adversarial gate fitting, 3 rounds (`fit --adversarial-rounds 3`)",
                    "results/eraser_hardened.json"),
                   ("vanilla + MLLMEraser, gate read at layer 3 alone (the previous shipped eraser)",
                    "results/eraser_gate_layer3.json"),
                   ("vanilla + MLLMEraser, gate read at the steered layer (the shipped eraser before that)",
                    "results/eraser_own_layer.json"),
                   (f"{one} (the preset before that)", "results/eraser_retain_rows.json"),
                   (f"{one}, MCQ strength 1.5 set by hand", "results/eraser_mcq_strength_retain_rows.json"),
                   (f"{paper} (an earlier preset)", "results/eraser_null_space.json"),
                   (f"{paper}, the method's last-token gate", "results/eraser_last_token.json"),
                   (f"{paper}, latched mode", "results/eraser_latched.json"),
                   (f"{paper}, a strength per task tuned by `--tune-tasks`", "results/eraser_task_tuned.json"),
                   (f"{paper}, MCQ strength 1.0 set by hand", "results/eraser_mcq_strength.json"),
                   (f"{paper}, gate fitted on later-turn formats too", "results/eraser_gate_variants.json")]
    rows += [(f"{label} (weights edited)", f"results/baseline_{key}.json") for label, key in BASELINES]
    lines = ["| method | forget MCQ | forget MCQ text | test MCQ | forget cloze | test cloze | forget ROUGE-L | "
             "retain MCQ | retain MCQ text | retain cloze | retain ROUGE-L | real cloze | real ROUGE-L (text) | "
             "forget fluency | retain fluency |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, path in rows:
        f = ROOT / path
        if not f.is_file():
            continue
        res = json.loads(f.read_text())
        sp = res["splits"]
        it = {k: v["image_text"] for k, v in sp.items()}
        tx = {k: v["text_only"] for k, v in sp.items()}
        lines.append(f"| {label}{_setting(res.get('eraser'))} | {pct(it['forget']['classification'])} | "
                     f"{pct(tx['forget']['classification'])} | "
                     f"{pct(it['test']['classification'])} | {pct(it['forget']['cloze'])} | "
                     f"{pct(it['test']['cloze'])} | {pct(it['forget']['generation_rougeL'])} | "
                     f"{pct(it['retain']['classification'])} | {pct(tx['retain']['classification'])} | "
                     f"{pct(it['retain']['cloze'])} | {pct(it['retain']['generation_rougeL'])} | "
                     f"{pct(it['real']['cloze'])} | {pct(tx['real']['generation_rougeL'])} | "
                     f"{pct(it['forget'].get('fluency'))} | {pct(it['retain'].get('fluency'))} |")
    return "\n".join(lines)


def relearning() -> str:
    """The relearning attack (results/relearn.json from `python -m core relearn`), one row per model."""
    f = ROOT / "results" / "relearn.json"
    if not f.is_file():
        return ""
    labels = {"toy-llava-retain-only": "retain-only (gold standard)", **{key: label for label, key in BASELINES}}
    rows = json.loads(f.read_text())
    b = rows[0]["budget"]
    lines = ["", f"Relearning attack: {b['steps']} fine-tuning steps (lr {b['lr']:g}, batch {b['batch_size']}) on the "
             f"forget people's {', '.join(rows[0]['relearned_attributes'])} facts; cloze on their other attributes, "
             "which the attack never shows (image and text questions).", "",
             "| model | held-out cloze before | held-out cloze after | shown cloze after |", "|---|---|---|---|"]
    for r in rows:
        name = labels.get(Path(r["model"]).name, r["model"])
        lines.append(f"| {name} | {pct(r['before']['held_out'])} | {pct(r['after']['held_out'])} | "
                     f"{pct(r['after']['shown'])} |")
    return "\n".join(lines)


def headline() -> str:
    """The README's one table: forgetting against utility for the models a reader compares first."""
    lines = ["| model | forget MCQ (image / text) | test MCQ | forget cloze | retain MCQ | retain cloze | "
             "real cloze | forget fluency |", "|---|---|---|---|---|---|---|---|"]
    for label, key in HEADLINE:
        f = ROOT / "results" / f"{key}.json"
        if not f.is_file():
            continue
        sp = json.loads(f.read_text())["splits"]
        it = {k: v["image_text"] for k, v in sp.items()}
        lines.append(f"| {label} | {pct(it['forget']['classification'])} / "
                     f"{pct(sp['forget']['text_only']['classification'])} | {pct(it['test']['classification'])} | "
                     f"{pct(it['forget']['cloze'])} | {pct(it['retain']['classification'])} | "
                     f"{pct(it['retain']['cloze'])} | {pct(it['real']['cloze'])} | "
                     f"{pct(it['forget'].get('fluency'))} |")
    return "\n".join(lines)


def write_between(path: Path, start: str, end: str, body: str) -> None:
    text = path.read_text()
    if start not in text or end not in text:
        raise SystemExit(f"{path.name} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body}\n{end}{tail}")


def sequential_doc() -> str:
    """docs/sequential.md: every sequential run in results/ (requests of one and of two people),
    each method after its first and last request, with its figure, then the full evaluation
    after the last request, where the gate is read, and why."""
    from core.sequential import final_table, table as seq_table
    parts = ["# Forget requests one at a time\n",
             "Written by `python scripts/results_table.py` from the JSON of `python -m core sequential` "
             "(`--group 1`: results/sequential.json, docs/sequential.png; `--group 2`: results/sequential_pairs.json, "
             "docs/sequential_pairs.png). Image+text questions; retained people and general rows: the first 10 of each "
             "(24 new tokens). Training baselines fine-tune the previous request's model on the new people (NPO's "
             "reference: the previous model). The eraser takes each person's prompts from the batch fit's sets: until "
             "their request, a person's gate prompts are retained rows like anyone else's; a request moves them to the "
             "forget side and brings the person's contrast prompts, so the direction is built again from everyone "
             "requested (`add_subjects(..., contrast=)`).\n"]
    for name, figure_name, title in (("sequential", "sequential.png", "Ten requests of one person"),
                                     ("sequential_pairs", "sequential_pairs.png", "Five requests of two people"),
                                     ):
        f = ROOT / "results" / f"{name}.json"
        if f.is_file():
            res = json.loads(f.read_text())["results"]
            parts += [f"## {title}\n", f"![{title}]({figure_name})\n", seq_table(res), ""]
            w = res.get("eraser", {}).get("withdrawal") or {}
            if w:
                parts.append(f"Withdrawal of {', '.join(w['withdrawn'])}: {pct(w['withdrawn_equal_to_vanilla'])}% of "
                             f"their {w['questions']} image questions answered exactly as the unsteered model; "
                             f"{pct(w['others_unchanged'])}% of the other forgotten people's answers unchanged.\n")
            fb = res.get("eraser", {}).get("final_vs_batch")
            if fb:
                parts.append("After the last request the eraser is the batch fit of the same prompts: largest relative "
                             "difference per layer " + ", ".join(f"{k} {v:.0e}" for k, v in fb.items()) + ".\n")
            if any(r.get("final") for r in res.values()):
                parts += ["After the last request, each method's full evaluation (`python -m core evaluate`'s splits "
                          "and defaults: every row, image+text and text-only), where the bars of the batch eraser "
                          "are checked:\n", final_table(res), ""]
    runs = {n: json.loads((ROOT / "results" / f"{n}.json").read_text())["results"]
            for n in ("sequential", "sequential_gate_layer3", "sequential_own_layer")
            if (ROOT / "results" / f"{n}.json").is_file()}
    if len(runs) == 3:
        parts.append(pending_table(runs))
    f = ROOT / "results" / "gate_heldout.json"
    if f.is_file():
        parts.append(heldout_table(json.loads(f.read_text())))
    f = ROOT / "results" / "sequential_lookalikes.json"
    if f.is_file():
        parts.append(lookalikes(json.loads(f.read_text())))
    return "\n".join(parts)


def pending_table(runs: dict) -> str:
    """Pending people's image MCQ after each request, for the three places the gate was read."""
    def row(label, steps):
        return f"| {label} | " + " | ".join(pct(s["pending classification"]) for s in steps
                                            if "pending classification" in s) + " |"
    n = sum("pending classification" in s for s in runs["sequential"]["vanilla"]["steps"])
    return "\n".join([
        "## Where the gate is read\n",
        "Image MCQ of the people not requested yet, after each request, with the same strength and steered layer "
        "(layer 1 at 2.0) and the gate read in three places: at the steered layer itself "
        "(results/sequential_own_layer.json), at layer 3, read before the steered layer "
        "(results/sequential_gate_layer3.json), and as one gate fitted over layers 0-3 together, read the same "
        "way (the shipped eraser, `joint_gate`; results/sequential.json). Each is `python -m core "
        "sequential` run with that eraser's settings.\n",
        "| gate | " + " | ".join(f"after {k + 1}" for k in range(n)) + " |", "|---|" + "---|" * n,
        row("vanilla (no eraser)", runs["sequential"]["vanilla"]["steps"]),
        row("read at the steered layer (1)", runs["sequential_own_layer"]["eraser"]["steps"]),
        row("read at layer 3", runs["sequential_gate_layer3"]["eraser"]["steps"]),
        row("one gate over layers 0-3 (shipped)", runs["sequential"]["eraser"]["steps"]),
        "\nThe people not requested yet are retained people until their request: their own gate prompts are "
        "retain rows (target 0), which is why every reading keeps them here. The steered layer's row lost up to "
        "21 points when only a random sample of retained prompts stood for them (the earlier protocol, session "
        "19; docs/research-log.md); on people the gate never saw, the readings differ (next section).\n"])


def heldout_table(res: dict) -> str:
    """How the reading was chosen: held-out people (results/gate_heldout.json)."""
    lines = ["### Choosing where the gate is read, on people the gate never saw\n",
             f"From `python scripts/gate_heldout.py`: the retained people in {res['folds']} folds; each fold's rows "
             "leave the gate's retain side, the 10 forget people's gates are solved on the rest (the shipped recipe), "
             "and the gate is read on the fold's own questions. A row fires when its gate exceeds half the forget "
             "people's median. The reading with the fewest held-out fires is the one shipped; the forget people are "
             "not used to choose. Beside it, as the test: the first K requested people's gates read on the image "
             "questions of requested and pending people (smallest requested gate | largest pending gate, both over "
             "the requested people's median; the pending one should stay below the requested one).\n",
             "| gate read at | held-out rows firing (%) | held-out 99th percentile | K = 1 | K = 5 | K = 8 | K = 9 |",
             "|---|---|---|---|---|---|---|"]
    for r in res["readings"]:
        ks = {s["requested"]: f"{s['requested_min']:.2f} \\| {s['pending_max']:.2f}" for s in r["sequential"]}
        name = f"layer {r['layers'][0]}" if len(r["layers"]) == 1 else f"layers {', '.join(map(str, r['layers']))} (joint)"
        if r["layers"] == res["chosen"]:
            name = f"**{name}, shipped**"
        lines.append(f"| {name} | {r['heldout_fire_pct']:.2f} +- {r['heldout_fire_se']:.2f} | {r['heldout_q99']:.2f} | "
                     + " | ".join(ks[k] for k in (1, 5, 8, 9)) + " |")
    lines.append("\n(+- one standard error over the folds: the joint readings differ by less than it; the rule "
                 "chose the lowest mean.)\n")
    return "\n".join(lines)


def lookalikes(res: dict) -> str:
    """Why people not requested yet lose answers (results/sequential_lookalikes.json)."""
    n, steer = len(res["requested"]), res["steer_layer"]
    layers = len(res["people"][0]["gate_median_per_layer"])
    joint = ", ".join(map(str, res.get("shipped_gate_layers", [])))
    lines = ["## Why people not requested yet lose answers\n",
             f"From `python scripts/lookalikes.py --requested {n}`: the eraser of the first {n} requested people, its "
             "per-subject gates read on every forget person's image questions (median over the questions of the "
             f"largest subject gate), each layer's own gate and the shipped joint gate (layers {joint}); the eraser "
             f"steers layer {steer}. A requested person's own gate reads 0.6-0.8 at the steered layer; a pending "
             "person's is the gate of the requested person who looks most like them, through the picture's visible "
             "attributes (background, shirt, accessory), not the face.\n",
             "| person | requested | " + " | ".join(f"gate, layer {l}" for l in range(layers))
             + f" | joint gate (median / max) | gate that fires at layer {steer} | visible attributes shared with that person |",
             "|---|---|" + "---|" * layers + "---|---|---|"]
    for p in res["people"]:
        lines.append(f"| {p['id']} | {'yes' if p['requested'] else '**no**'} | "
                     + " | ".join(f"{g:.2f}" for g in p["gate_median_per_layer"])
                     + f" | {p['shipped_gate_median']:.2f} / {p['shipped_gate_max']:.2f}"
                     + f" | {p['gate_that_fires']} | {', '.join(p['shared_visible_attributes']) or '-'} |")
    lines.append("\nAt the steered layer the gate reads the picture more than the person: a look-alike of a "
                 "requested person is steered too. Deeper layers separate them better, and a gate fitted over all "
                 "the layers together best: the shipped eraser reads it up to layer 3 before it steers layer 1 "
                 "(`EraserConfig.joint_gate`, `fit --joint-gate`; blocks 1-2 run twice on the prompt, "
                 "docs/performance.md). In the batch setting every forget person "
                 "is requested at once, so the look-alikes among them do not show; retained people are in the "
                 "gate's retain rows and stay unsteered.\n")
    return "\n".join(lines)


def sequential() -> str:
    """The sequential-requests table (results/sequential.json from `python -m core sequential`)."""
    from core.sequential import table as seq_table
    res = json.loads((ROOT / "results" / "sequential.json").read_text())
    w = res["results"].get("eraser", {}).get("withdrawal") or {}
    lines = [seq_table(res["results"], first=False)]
    if w:
        lines.append(f"\nWithdrawal of {', '.join(w['withdrawn'])} from the eraser at the end: "
                     f"{pct(w['withdrawn_equal_to_vanilla'])}% of their {w['questions']} image questions answered "
                     f"exactly as the unsteered model (before: {pct(w['withdrawn_equal_to_vanilla_before'])}%); "
                     f"{pct(w['others_unchanged'])}% of the other forgotten people's answers unchanged.")
    return "\n".join(lines)


def main() -> None:
    write_between(ROOT / "README.md", HEAD_START, HEAD_END, headline())
    write_between(ROOT / "docs" / "results.md", START, END, table())
    if (ROOT / "results" / "sequential.json").is_file():
        write_between(ROOT / "README.md", "<!-- sequential:start -->", "<!-- sequential:end -->", sequential())
        (ROOT / "docs" / "sequential.md").write_text(sequential_doc())
    print(headline())


if __name__ == "__main__":
    main()
