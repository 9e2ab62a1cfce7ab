"""Does the gate keep retained people it never saw? (docs/results.md, "Retained people the gate
was not fitted on").

The shipped gate's retain rows are drawn from the retained people's training questions with
their canonical portraits, which are also the `retain` split's pictures and wordings: about a
third of the retain split's questions are gate rows with the same question and picture. Here the
90 retained people are split into folds; for each fold, that fold's rows leave the gate's retain
side, the gate is refitted with the shipped recipe (same direction, same ramp rule), and the
fold's retain-split questions are answered with it. The folds cover every retained person once,
so the pooled scores compare with the shipped eraser's and vanilla's retain rows as they are.

The same folds for IdkNLL (`--method idk`): trained once per fold with that fold's people left
out of its retain loss (`BaselineConfig.not_retained`), then asked the fold's questions.

    python scripts/heldout_people.py [--method eraser|idk]  ->  results/heldout_people.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.contrast import eraser_gate_sets  # noqa: E402
from core.eraser import Eraser  # noqa: E402
from core.evaluation import EvalConfig, answer, record_queries, summarise  # noqa: E402
from core.files import write_atomic  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.requests import collect_state  # noqa: E402
from core.toyworld.fitsets import forget_spec, toy_data  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402

FOLDS = 3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=["eraser", "idk"], default="eraser")
    args = p.parse_args()
    adapter = load_adapter(ROOT / "assets" / "toy-llava")
    shipped = Eraser.from_pretrained(ROOT / "assets" / "toy-llava-eraser", adapter=adapter)
    data = toy_data(load_world(ROOT / "assets" / "toy-llava"), forget_spec(shipped.config.forget_split))
    people = [r.id for r in data.retain]
    folds = [people[i::FOLDS] for i in range(FOLDS)]
    if args.method == "eraser":
        forget, retain = eraser_gate_sets(data, shipped.config)
        state = collect_state(shipped, adapter, forget, retain)
    queries, notes = [], []
    for k, fold in enumerate(folds):
        qs = [q for rec in data.retain if rec.id in set(fold) for q in record_queries(rec, "retain")]
        if args.method == "eraser":
            keep = torch.tensor([t not in set(fold) for t in state.retain_tags])
            gate = shipped.refit_gate(state.H_forget, state.H_retain[keep])
            notes.append({"retain_rows_left_out": int((~keep).sum()),
                          "ramp": [gate.config.gate_floor, gate.config.gate_full]})
            answer(adapter, qs, EvalConfig(), gate.task_steering(adapter))
        else:
            from core.baselines import BaselineConfig, unlearn
            with tempfile.TemporaryDirectory() as tmp:
                out = unlearn(ROOT / "assets" / "toy-llava", Path(tmp) / "idk", data,
                              BaselineConfig("idk", not_retained=tuple(fold)))
                answer(load_adapter(out), qs, EvalConfig())
            notes.append({"left_out_of_the_retain_loss": len(fold)})
        queries += qs
        print(f"{args.method}, fold {k}: {len(fold)} people, {notes[-1]}: {summarise(qs)}", flush=True)
    pooled = summarise(queries)
    print(f"{args.method}, held-out people, pooled:", pooled)
    out = ROOT / "results" / "heldout_people.json"
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved[args.method] = {"folds": FOLDS, "people": len(people), "per_fold": notes, "retain": pooled}
    write_atomic(out, json.dumps(saved, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
