"""Ablations of the method on any model and forget set, as a markdown report.

Each experiment fits or re-applies an eraser with one knob changed and evaluates it on a fixed
subset of the forget / test / retain / real splits (image+text cloze, MCQ accuracy, ROUGE-L,
refusal rate, fluency), next to the unsteered model. Knobs: steering strength, PGD eps of the
adversarial contrast images, direction construction, steered layers, how the gate is fitted
(the paper's null space, retain rows, both) and the gate off (plain d_erase addition), and the
linear gate against a small MLP gate.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from core.activations import collect
from core.contrast import direction_pgd, direction_sets, gate_sets
from core.eraser import GATE_POSITIONS, Eraser, EraserConfig, gate_position_of
from core.evaluation import EvalConfig, evaluate
from core.data.source import ForgetData
from core.models.base import VLMAdapter


@dataclass
class SweepConfig:
    strengths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
    eps: tuple[int, ...] = (8, 16, 32, 64)  # in 1/255
    n_people: int = 10  # rows per split evaluated
    max_new_tokens: int = 24
    seed: int = 0


# How the gate is fitted: (label, null-space ratio, retain weight, one gate per forget person); gamma stays
# the base's.
GATE_FITS = (("null space only, ratio 0.6, one gate (the paper's form, the base fit's gamma)", 0.6, 0.0, False),
             ("null space ratio 0.6 + retain rows (weight 1)", 0.6, 1.0, False),
             ("retain rows (weight 1), no null space", 1.0, 1.0, False),
             ("one gate per forget person, retain rows (weight 0.3)", 1.0, 0.3, True))


@dataclass
class Row:
    experiment: str
    setting: str
    metrics: dict = field(default_factory=dict)


def _metrics(result) -> dict:
    s = result.splits
    pick = lambda split, key: s.get(split, {}).get("image_text", {}).get(key)  # noqa: E731 - a split may be absent
    return {"forget_mcq": pick("forget", "classification"), "forget_cloze": pick("forget", "cloze"),
            "forget_refusal": pick("forget", "refusal_rate"), "test_cloze": pick("test", "cloze"),
            "retain_mcq": pick("retain", "classification"), "retain_cloze": pick("retain", "cloze"),
            "retain_rougeL": pick("retain", "generation_rougeL"), "real_cloze": pick("real", "cloze"),
            "fluency": min(s[k]["image_text"]["fluency"] for k in s if "image_text" in s[k])}


def run_sweep(adapter: VLMAdapter, data: ForgetData, base: EraserConfig, cfg: SweepConfig = SweepConfig(),
              progress: Callable[[str], None] | None = None) -> list[Row]:
    """All experiments on one forget set; `base` fixes the default layers / strength / mode / direction."""
    say = progress or (lambda msg: None)
    splits = data.splits(cfg.n_people)
    ecfg = EvalConfig(max_new_tokens=cfg.max_new_tokens)
    # the base eraser's own recipe (seed, later-turn variants, PGD budget): the "default" rows are that eraser
    forget_p, retain_p = gate_sets(data, n_retain=base.gate_retain, seed=base.seed, variants=base.gate_variants)
    subjects = [p.tag for p in forget_p]
    # the gate sets are the same for every experiment: their activations are collected once
    pos = gate_position_of(base)
    H_forget, H_retain = collect(adapter, forget_p, position=pos), collect(adapter, retain_p, position=pos)
    retain_tags = [p.tag for p in retain_p]
    rows: list[Row] = []
    contrast: dict[tuple, tuple] = {}  # (kind, eps) -> recall / erase activations

    def fit(kind: str, eps: float | None = None, position: str | None = None) -> Eraser:
        eps = base.pgd_eps if eps is None else eps  # one key per budget: the base's is not run twice
        if (kind, eps) not in contrast:
            # the PGD start seeded as `fit` seeds it (core.contrast.direction_pgd's default)
            rec, era = direction_sets(data, adapter, kind, seed=base.seed, pgd_cfg=direction_pgd(eps))
            contrast[kind, eps] = collect(adapter, rec), collect(adapter, era)
        c = EraserConfig(**{**asdict(base), "direction_kind": kind, "model": asdict(adapter.info()),
                            "data_hash": "", "counts": {}, "position": position or base.position})
        Hf, Hr = (H_forget, H_retain) if c.position == base.position else (
            collect(adapter, forget_p, position=gate_position_of(c)),
            collect(adapter, retain_p, position=gate_position_of(c)))
        return Eraser.from_activations(Hf, Hr, *contrast[kind, eps], c, subjects if c.subject_gates else None,
                                       retain_tags)  # what a cross-fitted floor folds

    def run(name: str, setting: str, eraser: Eraser | None, **apply_kw) -> None:
        t = time.time()
        steering = None if eraser is None else (lambda: eraser.apply(adapter, **apply_kw))
        res = evaluate(adapter, splits, None, ecfg, steering=steering)
        rows.append(Row(name, setting, _metrics(res)))
        say(f"{name:<12} {setting:<28} {rows[-1].metrics}  ({time.time() - t:.0f}s)")

    base_layers = base.steer_layers or base.layers
    run("baseline", "no steering", None)
    default = fit(base.direction_kind)
    for s in cfg.strengths:
        run("strength", f"{s}", default, strength=s, layers=base_layers, mode=base.mode)
    n = adapter.num_layers
    fitted = set(default.fitted_layers)

    def fitted_only(label: str, layers: list[int]) -> tuple[str, list[int]]:
        """The layers of a row that the eraser fitted (it refuses to steer others): an eraser fitted on
        a few layers (fit --layers 2,3) made the sweep fail half-way."""
        use = [l for l in layers if l in fitted]
        return (label if use == layers else f"{label}, fitted ones: {use or 'none'}"), use

    thirds = {"early": [1], "middle": [n // 2], "late": [n - 1], "all (1..L-1)": list(range(1, n))}
    for label, layers in thirds.items():
        label, layers = fitted_only(label, layers)
        if layers:
            run("layers", label, default, strength=base.strength, layers=layers, mode=base.mode)
    for label, ratio, weight, per_person in GATE_FITS:
        er = default.refit_gate(H_forget, H_retain, ratio=ratio, retain_weight=weight, subject_gates=per_person,
                                forget_subjects=subjects, retain_tags=retain_tags,
                                floor_folds=None if per_person else 0)  # one gate for all keeps no rows to fold
        preset = " (preset)" if (ratio, weight, per_person) == (base.ratio, base.retain_weight,
                                                                base.subject_gates) else ""
        run("null space", label + preset, er, strength=base.strength, layers=base_layers, mode=base.mode)
    run("null space", "off (plain d_erase)", default, strength=base.strength, layers=base_layers, mode=base.mode,
        gated=False)
    from core.mlp_gate import fit_mlp_gates
    mlp = fit_mlp_gates(H_forget, H_retain, default.fitted_layers, seed=cfg.seed)
    run("gate", "linear (method; the preset's fit)", default, strength=base.strength, layers=base_layers, mode=base.mode)
    run("gate", "MLP (64 hidden, unconstrained)", default, strength=base.strength, layers=base_layers,
        mode=base.mode, gate_fn=mlp)
    by_position = {}
    for position in GATE_POSITIONS:
        er = by_position[position] = default if position == base.position else fit(base.direction_kind,
                                                                                    position=position)
        run("gate position", position.replace("_", " ") + (" (method)" if position == "last_prompt_token" else ""),
            er, strength=base.strength, layers=base_layers, mode=base.mode)
    run("mode", "prefill (paper)", default, strength=base.strength, layers=base_layers, mode="prefill")
    label, layers = fitted_only("layers 1..L-1, prefill, 0.3, last token (the base fit's gate)", list(range(1, n)))
    if layers:
        run("paper preset", label, by_position["last_prompt_token"], strength=0.3, layers=layers, mode="prefill")
    unbuilt = set()
    for kind in ("recall", "refusal", "text_only", "image_only"):
        try:
            er = default if kind == base.direction_kind else fit(kind)
        except ValueError as exc:  # a construction the data cannot give (text_only needs names, the others photos)
            unbuilt.add(kind)
            rows.append(Row("direction", f"{kind}: not built ({exc})"))
            say(f"direction    {kind}: not built ({exc})")
            continue
        run("direction", kind, er, strength=base.strength, layers=base_layers, mode=base.mode)
    for eps in cfg.eps:
        if "refusal" in unbuilt:
            break  # the eps rows build the same construction
        run("PGD eps", f"{eps}/255 (refusal direction)", fit("refusal", eps), strength=base.strength,
            layers=base_layers, mode=base.mode)
    return rows


def report(rows: list[Row], title: str, command: str) -> str:
    """Markdown: one table per experiment, percentages."""
    keys = ["forget_cloze", "forget_refusal", "test_cloze", "retain_cloze", "retain_rougeL", "real_cloze",
            "forget_mcq", "retain_mcq", "fluency"]
    out = [f"# {title}", "", f"Produced by `{command}`. Image+text questions; percentages.", ""]
    for exp in dict.fromkeys(r.experiment for r in rows):
        out += [f"## {exp}", "", "| setting | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        for r in rows:
            if r.experiment == exp:
                out.append(f"| {r.setting} | " + " | ".join(
                    "-" if r.metrics.get(k) is None else f"{100 * r.metrics[k]:.1f}" for k in keys) + " |")
        out.append("")
    return "\n".join(out)


def tradeoff_figure(rows: list[Row], path) -> None:
    """PNG: (left) forget vs retain cloze accuracy for every setting, the strength and eps sweeps as curves;
    (right) the strength sweep's metrics against lambda. Up-left is better on the left panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"wspace": 0.9})
    # a setting without both cloze numbers (not built, or data without a retain split) has no point to draw
    rows = [r for r in rows if r.metrics.get("forget_cloze") is not None and r.metrics.get("retain_cloze") is not None]
    for exp, style in (("strength", "o-"), ("PGD eps", "s--")):
        pts = [r for r in rows if r.experiment == exp]
        if pts:
            ax.plot([100 * r.metrics["forget_cloze"] for r in pts], [100 * r.metrics["retain_cloze"] for r in pts],
                    style, label=exp)
            for r in pts:
                ax.annotate(r.setting.split(" ")[0], (100 * r.metrics["forget_cloze"], 100 * r.metrics["retain_cloze"]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
    markers = "vD^P*Xhp<>d"
    others = [r for r in rows if r.experiment not in ("strength", "PGD eps")]
    for i, r in enumerate(others):  # a legend, not labels: these points sit on top of each other
        ax.scatter(100 * r.metrics["forget_cloze"], 100 * r.metrics["retain_cloze"], s=30, alpha=0.8,
                   marker=markers[i % len(markers)], label=f"{r.experiment}: {r.setting}")
    ax.set(xlabel="forget cloze accuracy, image+text (%)  (lower = forgotten)", ylabel="retain cloze accuracy (%)",
           title="Forget vs retain, every setting")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    pts = [r for r in rows if r.experiment == "strength"]
    lam = [float(r.setting) for r in pts]
    for key, label in (("forget_cloze", "forget cloze"), ("forget_refusal", "forget refusals"),
                       ("retain_cloze", "retain cloze"), ("real_cloze", "real cloze"), ("fluency", "fluency")):
        ys = [None if r.metrics.get(key) is None else 100 * r.metrics[key] for r in pts]
        if any(y is not None for y in ys):  # a split the data has not (no real split): no line
            bx.plot([x for x, y in zip(lam, ys) if y is not None], [y for y in ys if y is not None], "o-", label=label)
    bx.set(xlabel="steering strength lambda", ylabel="%", title="Strength sweep")
    bx.legend(fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.92)
    fig.savefig(path, dpi=110)
    plt.close(fig)
