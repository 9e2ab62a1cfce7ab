"""The eraser's recipes on two toy worlds: world seed 0 (the shipped models) next to world seed 1
(models trained again from scratch on another world), the recipes' flags unchanged (issue 24: no
tuning by hand for one seed).

    python scripts/seed_table.py     # writes docs/seeds.md from results/ and results/seed1_joint_gate/

Each seed has vanilla.json and retain_only.json (`python -m core evaluate`) and, per recipe, the
eraser's evaluation and attack report (`python -m core attack`): results/, results/ramp/ and
docs/robustness.json for seed 0, results/seed1_joint_gate/ for seed 1 (scripts/reproduce.sh, SEED1=1).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from ramp_table import lowest_kept, worst_text_cost  # noqa: E402

R = ROOT / "results"
# per world seed: its vanilla and retain-only evaluations, then each recipe's (label, evaluation, attack report)
S1 = R / "seed1_joint_gate"  # results/seed1/ holds an earlier seed-1 run (docs/results.md), of another recipe
SEEDS = {0: (R, [("eraser, shipped recipe", R / "eraser.json", ROOT / "docs" / "robustness.json"),
                 ("eraser, + 1 hardening round", R / "ramp" / "hard1-rows.json",
                  R / "ramp" / "hard1-rows-attack.json")]),
         1: (S1, [("eraser, shipped recipe", S1 / "eraser.json", S1 / "robustness.json"),
                  ("eraser, + 1 hardening round", S1 / "eraser_hardened_1.json", S1 / "robustness_hardened_1.json")])}
METRICS = [("forget", "image_text", "classification", "forget MCQ img"),
           ("forget", "text_only", "classification", "forget MCQ text"),
           ("test", "image_text", "classification", "test MCQ img"),
           ("test", "text_only", "classification", "test MCQ text"),
           ("forget", "image_text", "cloze", "forget cloze img"),
           ("retain", "image_text", "classification", "retain MCQ img"),
           ("retain", "text_only", "classification", "retain MCQ text"),
           ("retain", "image_text", "cloze", "retain cloze img"),
           ("real", "image_text", "classification", "real MCQ img"),
           ("forget", "image_text", "fluency", "forget fluency img")]


def load(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def metric_cells(run: dict) -> str:
    sp = run["splits"]
    return " | ".join("-" if sp[s][m].get(k) is None else f"{100 * sp[s][m][k]:.1f}" for s, m, k, _ in METRICS)


def seed_rows(seed: int) -> list[str]:
    folder, recipes = SEEDS[seed]
    vanilla = load(folder, "vanilla")
    out = [f"| {seed} | {label} | {metric_cells(load(folder, name))} | | | | |"
           for label, name in (("vanilla", "vanilla"), ("retain-only twin", "retain_only"))]
    for label, ev_file, attack_file in recipes:
        run = json.loads(ev_file.read_text())
        attacks = json.loads(attack_file.read_text())
        attacks = attacks["attacks"] if isinstance(attacks, dict) else attacks
        adaptive = next(r for r in attacks if r["attack"].startswith("adaptive PGD"))
        cost, worst = worst_text_cost(attacks)
        info = run["eraser"]
        out.append(f"| {seed} | {label} | {metric_cells(run)} | {lowest_kept(run, vanilla):.1f} | "
                   f"{100 * adaptive['forget_erased']:.1f} | {cost:.1f} ({worst}) | "
                   f"{info.get('gate_floor', 0):g} / {info.get('gate_full', 1):g} |")
    return out


def main() -> None:
    missing = [str(p) for folder, recipes in SEEDS.values() for p in
               [folder / "vanilla.json", folder / "retain_only.json", *(f for _, *files in recipes for f in files)]
               if not p.is_file()]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: run the SEED1 lines of scripts/reproduce.sh first")
    head = " | ".join(label for *_, label in METRICS)
    lines = ["# The shipped recipe on a second toy world", "",
             "World seed 0 is the shipped world and models. World seed 1 is another world (other people, faces, "
             "names and facts), on which the vanilla model and its retain-only twin were trained from scratch with "
             "the same recipe (`train-toy --seed 1`), and the eraser fitted with the shipped eraser's flags "
             "unchanged: `fit --no-tune --steer-layers 1 --strength 2.0 --joint-gate 0,1,2,3 --gate-ramp --no-state` "
             "(its ramp is read off its own fit rows by the same rule), and the same with one round of adversarial "
             "gate fitting (`--adversarial-rounds 1`; chosen on seed 0, docs/robustness_ramp.md). Nothing was tuned "
             "on seed 1. Metrics in % "
             "(`python -m core evaluate`); the attack columns from `python -m core attack` (10 forget and 10 "
             "retained people, adaptive PGD eps 16/255, 40 steps). Rendered by `python scripts/seed_table.py`.", "",
             f"| world seed | model | {head} | lowest retained / general metric (% of vanilla) | adaptive PGD: "
             "forget recovered | worst text-format retain cost (points) | gate ramp (floor / full) |",
             "|" + "---|" * (len(METRICS) + 6)]
    for seed in SEEDS:
        lines += seed_rows(seed)
    out = ROOT / "docs" / "seeds.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
