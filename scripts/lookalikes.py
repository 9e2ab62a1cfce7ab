"""Why people not requested yet lose answers as an eraser grows (docs/sequential.md): the
per-subject gates of the first K requested people, read on every forget person's image
questions at every layer (each layer's own gate) and as the shipped eraser reads them (its
joint gate), and the requested person whose gate fires on each pending one.

    python scripts/lookalikes.py [--requested 8]   ->  results/sequential_lookalikes.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.activations import collect  # noqa: E402
from core.contrast import eraser_gate_sets  # noqa: E402
from core.eraser import Eraser, FitState  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.requests import collect_state, refit_with, request_entry  # noqa: E402
from core.sequential import _image_prompts  # noqa: E402
from core.toyworld.fitsets import forget_spec, toy_data  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402

VISIBLE = ("face_shape", "skin_tone", "hair_style", "hair_colour", "eye_colour", "accessory", "shirt_colour",
           "background_colour", "background_pattern")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requested", type=int, default=8, help="people requested so far (in the sequential order)")
    args = ap.parse_args()
    adapter = load_adapter(ROOT / "assets" / "toy-llava")
    shipped = Eraser.from_pretrained(ROOT / "assets" / "toy-llava-eraser", adapter=adapter)
    world = load_world(ROOT / "assets" / "toy-llava")
    data = toy_data(world, forget_spec("forget_10"))
    forget, retain = eraser_gate_sets(data, shipped.config)
    state = collect_state(shipped, adapter, forget, retain)
    ids, k = data.forget_ids, args.requested
    keep = [i for i, t in enumerate(state.forget_tags) if t in ids[:k]]
    grown = FitState(state.H_forget[keep], [state.forget_tags[i] for i in keep], state.H_retain, state.retain_tags)
    entry = request_entry("fit", ids[:k], "")
    eraser = joint = refit_with(shipped, grown, entry)  # its `gate`: each layer's own; `read_gate`: what decides
    people = []
    for pid in ids:
        H = collect(adapter, [q for rec in data.pick([pid]).forget for q in _image_prompts(rec)], position="mean").double()
        per_layer = [(H[:, l] @ eraser.gate[l].T) for l in range(adapter.num_layers)]  # (n, K) each
        steered = per_layer[shipped.config.steer_layers[0]]
        top = eraser.config.subjects[int(steered.mean(0).argmax())]
        me, other = world.person(pid), world.person(top)
        decided = joint.read_gate(H[:, joint.gate_layers], joint.gate_layers)
        people.append({"id": pid, "requested": pid in ids[:k], "questions": len(H),
                       "gate_median_per_layer": [round(float(g.max(1).values.median()), 3) for g in per_layer],
                       "shipped_gate_median": round(float(decided.median()), 3),
                       "shipped_gate_max": round(float(decided.max()), 3),
                       "gate_that_fires": top,
                       "shared_visible_attributes": [a for a in VISIBLE if getattr(me, a) == getattr(other, a)]
                       if top != pid else []})
        print(people[-1], flush=True)
    out = ROOT / "results" / "sequential_lookalikes.json"
    out.write_text(json.dumps({"requested": ids[:k], "steer_layer": shipped.config.steer_layers[0],
                               "shipped_gate_layers": shipped.gate_layers,
                               "people": people}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
