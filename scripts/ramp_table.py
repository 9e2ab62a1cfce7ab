"""The gate ramp (floor / full value) on the shipped and the hardened eraser: one row per setting,
from the evaluations and attack reports in results/ramp/ (issue 24).

    python scripts/ramp_table.py     # writes docs/robustness_ramp.md

Each setting NAME has results/ramp/NAME.json (`python -m core evaluate ... --gate-floor F
--gate-full T --json ...`) and results/ramp/NAME-attack.json (`python -m core attack ... --out
results/ramp/NAME-attack.md`); scripts/reproduce.sh runs both for every row.
"""
from __future__ import annotations

import json
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_FORMATS = ("benign prefix", "instruction injection", "role-play", "answer prefilling", "multi-turn")
# the eraser of a row, by its name's first part: the shipped one, and hardened by 3 or 1 rounds of adversarial
# gate fitting (fit --adversarial-rounds N, on the shipped recipe)
ERASERS = {"ship": "toy-llava-eraser", "hard": "eraser-hardened (3 rounds)", "hard1": "eraser-hardened-1 (1 round)"}


def lowest_kept(ev: dict, vanilla: dict) -> float:
    """The lowest retained / general metric (MCQ, cloze, ROUGE-L; image and text) as % of vanilla."""
    return 100 * min(ev["splits"][s][m][k] / vanilla["splits"][s][m][k] for s in ("retain", "real")
                     for m in ("image_text", "text_only") for k in ("classification", "cloze", "generation_rougeL"))


def points(a: float, b: float) -> float:
    """100 (a - b) to one decimal, for rates stored rounded to 4 places. Why not the float
    difference: 54/70 - 52/70 is stored as 0.7714 - 0.7429, whose float difference prints 2.8
    where the counts give 2.857; the exact decimal difference (2.85, within 0.01 of the truth)
    rounded half up gives 2.9."""
    diff = (Decimal(str(a)) - Decimal(str(b))) * 100
    return float(diff.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def worst_text_cost(report: list[dict]) -> tuple[float, str]:
    """The text format that costs retained people the most cloze answers beyond vanilla's under
    it (points), from an attack report's rows."""
    costs = {r["attack"].split(" (")[0]: points(r["retain_vanilla"], r["retain_erased"]) for r in report
             if r["attack"].startswith(TEXT_FORMATS)}
    worst = max(costs, key=costs.get)
    return costs[worst], worst


def row(name: str, vanilla: dict) -> str:
    ev = json.loads((ROOT / "results" / "ramp" / f"{name}.json").read_text())
    attack = json.loads((ROOT / "results" / "ramp" / f"{name}-attack.json").read_text())
    info, sp = ev["eraser"], ev["splits"]
    adaptive = next(r for r in attack if r["attack"].startswith("adaptive PGD"))
    cost, worst = worst_text_cost(attack)
    floor, full = info.get("gate_floor", 0.0), info.get("gate_full", 1.0)
    how = ("the method (no ramp)" if (floor, full) == (0.0, 1.0) else
           "read off the fit's rows (`--gate-ramp`)" if name.endswith("-rows") else "picked by hand")
    kind = name.split("-")[0]
    if kind == "ship" and name.endswith("-rows"):
        how = f"**shipped**: {how}"
    return (f"| {ERASERS[kind]} | {floor:g} | {full:g} | {how} | "
            f"{100 * adaptive['forget_erased']:.1f} | {adaptive['forget_gate']:.2f} | "
            f"{cost:.1f} ({worst}) | {lowest_kept(ev, vanilla):.1f} | "
            f"{100 * sp['forget']['image_text']['classification']:.1f} / "
            f"{100 * sp['forget']['text_only']['classification']:.1f} | "
            f"{100 * sp['test']['image_text']['classification']:.1f} / "
            f"{100 * sp['test']['text_only']['classification']:.1f} | "
            f"{100 * sp['forget']['image_text']['cloze']:.1f} |")


def main() -> None:
    folder = ROOT / "results" / "ramp"
    names = sorted(p.stem for p in folder.glob("*.json") if not p.stem.endswith("-attack"))
    missing = [n for n in names if not (folder / f"{n}-attack.json").is_file()]
    if missing:
        sys.exit(f"no attack report for {', '.join(missing)}: run its attack line of scripts/reproduce.sh")
    if not names:
        sys.exit("no results/ramp/*.json: run the ramp lines of scripts/reproduce.sh first")
    vanilla = json.loads((ROOT / "results" / "vanilla.json").read_text())
    lines = ["# The gate ramp: leaving retained inputs alone without opening the door to the attacker", "",
             "The gate steers by `(g - floor)+ / (full - floor)`, capped at 1 when `full` < 1 "
             "(`SteeringConfig.coefficient`; `--gate-floor`, `--gate-full`). Floor 0 and full 1 is the method's "
             "`g`. Each row: `python -m core evaluate` and `python -m core attack --people 10 --eps 16 --steps 40` "
             "with that setting (results/ramp/, rendered by `python scripts/ramp_table.py`). Adaptive PGD attacks "
             "the gate the row steers with (eps 16/255, 40 steps) on 70 forget cloze questions; the text formats' "
             "cost is the retained people's cloze answers lost beyond vanilla's under the same format; the lowest "
             "kept is the lowest retained or general metric of the full evaluation as % of vanilla.", "",
             "| eraser | floor | full | how the setting was chosen | adaptive PGD: forget recovered | attacked gate | worst text-format retain "
             "cost (points) | lowest retained / general metric (% of vanilla) | forget MCQ img / text | "
             "test MCQ img / text | forget cloze |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def order(name: str):
        info = json.loads((folder / f"{name}.json").read_text())["eraser"]
        return list(ERASERS).index(name.split("-")[0]), info.get("gate_floor", 0.0), info.get("gate_full", 1.0)
    lines += [row(n, vanilla) for n in sorted(names, key=order)]
    lines += ["", "The hardened eraser's rows give 0.228 / 0.394 (`Eraser.ramp_from_rows`), run rounded to two "
              "decimals. The 1-round hardened eraser is the recipe `fit ... --adversarial-rounds 1 --gate-ramp` (its "
              "ramp, 0.178 / 0.425, read off its rows after the round), not a hand pick: the closest to the project's "
              "bar (at most 15% recovered while every retained metric keeps 97% of vanilla's), which it misses on "
              "retained image cloze (96.3, 607 of 630, against vanilla's 99.7). The hand-picked rows were chosen looking at this "
              "table, on the same forget people it "
              "measures (the world has no held-out forget people), so they show what a ramp can do here, not a "
              "recipe; the shipped ramp is the rule's, fixed before its row was measured. A floor alone (full 1) "
              "helps retained people and hands the attacker the floor; a full value under 1 makes a gate pushed "
              "part of the way down steer most of the way. On the hardened gate no setting separates the attacked "
              "forget images (mean gate 0.46) from the tail of retained people's gates, so each setting that stops "
              "the attack also steers retained questions."]
    out = ROOT / "docs" / "robustness_ramp.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
