"""A gate floor read off retained people the gate was not fitted on (docs/results.md, "Retained
people the gate was not fitted on").

The shipped ramp reads its floor at the 95th percentile of the gate on the fit's own retain rows,
where the gate was fitted to read 0; on retained people it never saw the gate reads higher, and
`scripts/heldout_people.py` measured the cost (about 10% of their questions refused). Here the
floor is cross-fitted: the retained people in 3 inner folds, the gate refitted without each fold
and read on that fold's rows, the floor at the 95th percentile of those out-of-fold gates. It is
measured as `heldout_people.py` measures the shipped recipe (3 outer folds: gate and floor fitted
without the fold, the fold's retain questions asked), and on the forget and test splits with the
gate fitted on every row and its cross-fitted floor (does the forgetting survive the higher floor?).

    python scripts/crossfit_ramp.py   ->  results/crossfit_ramp.json
    python scripts/crossfit_ramp.py --save-only runs/eraser-crossfit-floor   (that eraser, for `attack`)
    python scripts/crossfit_ramp.py --floor 0.25 [--save-only DIR]   (a fixed floor in between, measured alike)
    python scripts/crossfit_ramp.py --gamma G --retain-weight W [--save-only DIR]   (another ridge, cross-fitted)
    python scripts/crossfit_ramp.py --per-person   (one floor on the largest per-person gate, or one per person?)
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import replace
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

FOLDS, INNER, QUANTILE = 3, 3, 0.95


def crossfit_floor(gate: Eraser, H_f: torch.Tensor, H_r: torch.Tensor, tags: list[str], people: list[str]) -> float:
    """The 95th percentile of the gate on retained people's rows, each read by a gate refitted
    without that person's inner fold: the floor `fit --gate-ramp --floor-folds 3` reads
    (Eraser.crossfit_retain_gates), for `gate` (a refit on these rows) and the people given."""
    probe = copy.copy(gate)  # its settings; the folds' own gates are fitted by crossfit_retain_gates
    probe.config = replace(gate.config, gate_ramp=True, floor_folds=INNER, floor_subjects=list(people))
    return round(float(probe.crossfit_retain_gates(H_f, H_r, tags).quantile(QUANTILE)), 3)


def per_person(shipped: Eraser, H_f: torch.Tensor, H_r: torch.Tensor, tags: list[str], people: list[str],
               **ridge) -> dict:
    """Would a floor per forget person do better than one floor on the largest of their gates?
    Each person's gate on retained people outside the fit (3 folds, the shipped recipe), and the
    floors that let the same 5% of those rows past (the quantile level found by bisection)."""
    layers = shipped.gate_layers
    out = []
    for fold in (people[i::FOLDS] for i in range(FOLDS)):
        held = torch.tensor([t in set(fold) for t in tags])
        gate = shipped.refit_gate(H_f, H_r[~held], **ridge)
        h = H_r[held][:, layers].double()
        if gate.config.joint_gate:
            out.append(torch.einsum("nld,lkd->nk", h, gate.joint.double()))
        else:
            out.append(torch.stack([h[:, i] @ gate.gate[l].double().T for i, l in enumerate(layers)]).mean(0))
    G = torch.cat(out)
    lo, hi = QUANTILE, 1.0
    for _ in range(30):  # the per-person quantile level at which 5% of rows pass some person's floor
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (G > G.quantile(mid, dim=0)).any(-1).float().mean() > 1 - QUANTILE else (lo, mid)
    floors = G.quantile(hi, dim=0)
    return {"rows": len(G), "one_floor_on_the_largest_gate": round(float(G.amax(-1).quantile(QUANTILE)), 3),
            "each_persons_95th_percentile": [round(float(v), 3) for v in G.quantile(QUANTILE, dim=0)],
            "per_person_level": round(hi, 4), "per_person_floors": [round(float(v), 3) for v in floors],
            "rows_past_a_floor": round(float((G > floors).any(-1).float().mean()), 4),
            "subjects": list(shipped.config.subjects)}


def with_floor(eraser: Eraser, floor: float) -> Eraser:
    eraser.config.gate_floor, eraser.config.gate_ramp = floor, False  # a refit must not read it off the rows again
    if not floor + 0.01 < eraser.config.gate_full:
        raise SystemExit(f"floor {floor} reaches the full value {eraser.config.gate_full}")
    return eraser


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save-only", default=None, metavar="DIR",
                   help="save the eraser fitted on every row with its cross-fitted floor there, and stop")
    p.add_argument("--floor", type=float, default=None, help="a fixed floor instead of the cross-fitted one")
    p.add_argument("--per-person", action="store_true",
                   help="only compare one floor on the largest per-person gate with a floor per person")
    p.add_argument("--gamma", type=float, default=None, help="the gate's ridge penalty (default: the shipped eraser's)")
    p.add_argument("--retain-weight", type=float, default=None,
                   help="the weight of the gate's retain rows (default: the shipped eraser's)")
    args = p.parse_args()
    if args.per_person and (args.floor is not None or args.save_only):
        p.error("--per-person compares floors read off the rows: leave out --floor and --save-only")
    ridge = {"gamma": args.gamma, "retain_weight": args.retain_weight}
    key = ("crossfit" if args.floor is None else f"floor {args.floor:g}") + "".join(
        f", {k} {v:g}" for k, v in ridge.items() if v is not None)

    def floored(H_r, tags, people) -> Eraser:
        """The gate refitted on these rows, with their cross-fitted floor (or the fixed one)."""
        gate = shipped.refit_gate(H_f, H_r, **ridge)
        return with_floor(gate, crossfit_floor(gate, H_f, H_r, tags, people) if args.floor is None else args.floor)
    adapter = load_adapter(ROOT / "assets" / "toy-llava")
    shipped = Eraser.from_pretrained(ROOT / "assets" / "toy-llava-eraser", adapter=adapter)
    data = toy_data(load_world(ROOT / "assets" / "toy-llava"), forget_spec(shipped.config.forget_split))
    forget, retain = eraser_gate_sets(data, shipped.config)
    state = collect_state(shipped, adapter, forget, retain)
    H_f, H_r, tags = state.H_forget, state.H_retain, state.retain_tags
    people = [r.id for r in data.retain]
    if args.per_person:
        res = per_person(shipped, H_f, H_r, tags, people, **ridge)
        print(json.dumps(res, indent=1))
        out = ROOT / "results" / "crossfit_ramp.json"
        saved = json.loads(out.read_text()) if out.is_file() else {}
        write_atomic(out, json.dumps({**saved, key.replace("crossfit", "per person", 1): res}, indent=1))
        return
    if args.save_only:
        full = floored(H_r, tags, people)
        print(f"saved {full.save_pretrained(args.save_only)} (floor {full.config.gate_floor}, full "
              f"{full.config.gate_full})")
        return
    folds = [people[i::FOLDS] for i in range(FOLDS)]
    queries, per_fold = [], []
    for k, fold in enumerate(folds):
        keep = torch.tensor([t not in set(fold) for t in tags])
        rest = [p for p in people if p not in set(fold)]
        kept_tags = [t for t, kk in zip(tags, keep.tolist()) if kk]
        gate = floored(H_r[keep], kept_tags, rest)
        floor = gate.config.gate_floor
        qs = [q for rec in data.retain if rec.id in set(fold) for q in record_queries(rec, "retain")]
        answer(adapter, qs, EvalConfig(), gate.task_steering(adapter))
        queries += qs
        per_fold.append({"floor": floor, "full": gate.config.gate_full})
        print(f"fold {k}: floor {floor} (full {gate.config.gate_full}): {summarise(qs)}", flush=True)
    held_out = summarise(queries)
    print("held-out people, pooled:", held_out, flush=True)
    full = floored(H_r, tags, people)
    floor = full.config.gate_floor
    print(f"every row: floor {floor} (shipped {shipped.config.gate_floor}), full {full.config.gate_full}", flush=True)
    splits = {}
    for name, rows in (("forget", data.forget), ("test", data.test)):
        qs = [q for rec in rows for q in record_queries(rec, name)]
        answer(adapter, qs, EvalConfig(), full.task_steering(adapter))
        splits[name] = summarise(qs)
        print(name, splits[name], flush=True)
    out = ROOT / "results" / "crossfit_ramp.json"
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved[key] = {**{k: v for k, v in ridge.items() if v is not None}, "folds": FOLDS, "inner_folds": INNER, "quantile": QUANTILE, "per_fold": per_fold,
                  "held_out_retain": held_out, "floor": floor, "full": full.config.gate_full, "splits": splits}
    write_atomic(out, json.dumps(saved, indent=1))
    print(f"wrote {out} ({key})")


if __name__ == "__main__":
    main()
