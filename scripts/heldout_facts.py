"""Does the gate keep general questions it never saw? (docs/results.md, "General questions the
gate was not fitted on").

The shipped gate's retain rows hold every general fact of the toy world, in every MLLMU format
(`core.toyworld.fitsets.gate_sets`, `fact_draws`), and the `real` split's text-only questions are
those same 11 facts: its real text-only scores are in-sample for the gate. Here the facts are
split into two folds; for each fold the fact rows of that fold leave the gate's retain side, the
gate is refitted with the shipped recipe (same direction, same ramp rule), and the real split's
text-only questions about that fold's facts are answered with that gate. Every other setting is
the shipped eraser's.

    python scripts/heldout_facts.py   ->  results/heldout_facts.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.contrast import eraser_gate_sets  # noqa: E402
from core.eraser import Eraser  # noqa: E402
from core.evaluation import EvalConfig, answer, record_queries, summarise  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.requests import collect_state  # noqa: E402
from core.toyworld.fitsets import forget_spec, toy_data  # noqa: E402
from core.toyworld.questions import GENERAL_FACTS  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402

FOLDS = 2


def fact_of(question: str) -> int | None:
    """Index of the general fact a text question asks (its question or its cloze sentence)."""
    hits = [i for i, f in enumerate(GENERAL_FACTS)
            if any(t in question for t in (f.question, f.cloze, f.cloze.replace("__", "[Blank]")))]
    return hits[0] if len(hits) == 1 else None


def real_text_queries(data, facts: set[int]):
    """The real split's text-only questions about these facts (row i asks fact i mod 11)."""
    out = []
    for i, rec in enumerate(data.real):
        if i % len(GENERAL_FACTS) in facts:
            out += [q for q in record_queries(rec, "real") if q.modality == "text_only"]
    return out


def scores(adapter, queries, eraser: Eraser | None) -> dict:
    steering = None if eraser is None else eraser.task_steering(adapter)
    answer(adapter, queries, EvalConfig(), steering)
    return summarise(queries)["text_only"]


def main() -> None:
    adapter = load_adapter(ROOT / "assets" / "toy-llava")
    shipped = Eraser.from_pretrained(ROOT / "assets" / "toy-llava-eraser", adapter=adapter)
    data = toy_data(load_world(ROOT / "assets" / "toy-llava"), forget_spec(shipped.config.forget_split))
    forget, retain = eraser_gate_sets(data, shipped.config)
    state = collect_state(shipped, adapter, forget, retain)
    facts = [fact_of(p.question) if t.startswith("fact_") else None for p, t in zip(retain, state.retain_tags)]
    if any(t.startswith("fact_") and f is None for f, t in zip(facts, state.retain_tags)):
        bad = next(p.question for p, f, t in zip(retain, facts, state.retain_tags) if t.startswith("fact_") and f is None)
        raise SystemExit(f"a fact row names no fact or several: {bad!r}")
    refit = shipped.refit_gate(state.H_forget, state.H_retain)  # the recipe on these rows: the check below
    gate_diff = float((refit.gate - shipped.gate).norm() / shipped.gate.norm())
    print(f"refit on every row vs shipped gate: relative difference {gate_diff:.1e}", flush=True)
    rows = {"vanilla": [], "shipped": [], "held_out": []}
    n_rows = []
    for k in range(FOLDS):
        held = set(range(k, len(GENERAL_FACTS), FOLDS))
        keep = torch.tensor([f not in held for f in facts])
        gate = shipped.refit_gate(state.H_forget, state.H_retain[keep])
        n_rows.append(int((~keep).sum()))
        for name, eraser in (("vanilla", None), ("shipped", shipped), ("held_out", gate)):
            qs = real_text_queries(data, held)
            rows[name].append((scores(adapter, qs, eraser), len(qs)))
            print(f"fold {k} ({len(held)} facts, {n_rows[-1]} retain rows left out) {name}: {rows[name][-1][0]}",
                  flush=True)

    def pooled(parts, key):
        # per-task counts: each fold's question mix is the same (every fact asked in each format)
        n = sum(r["n"] for r, _ in parts)
        return round(sum(r[key] * r["n"] for r, _ in parts) / n, 4)

    keys = ("classification", "generation_rougeL", "cloze", "refusal_rate", "fluency")
    table = {name: {k: pooled(parts, k) for k in keys} | {"n": sum(r["n"] for r, _ in parts)}
             for name, parts in rows.items()}
    for name, row in table.items():
        print(name, row)
    out = ROOT / "results" / "heldout_facts.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"folds": FOLDS, "retain_rows_left_out": n_rows, "refit_vs_shipped_gate": gate_diff,
                               "real_text_only": table}, indent=1))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
