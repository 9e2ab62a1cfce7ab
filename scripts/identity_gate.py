"""A gate that reads only the directions that tell people apart (issue 24): an experiment.

Why it was tried: the shipped ridge gate is fitted over the whole width of the activations, so
part of it may lie along directions the model does not need for who it sees, and the adaptive
attacker can lower the gate there while the answer stays. Restricted to the span of the people's
mean activations (the top `k` directions of the between-person scatter at each gate layer), the
gate can only be lowered by moving the picture's reading towards someone else's, which should
cost the attacker the answer too. The gate stays a linear map of the same shape (the shipped
recipe refitted on the projected rows: joint over layers 0-3, one gate per forget person, ramp
read off its rows), so it is saved as an ordinary eraser and scored with the project's own
`evaluate` and `attack` commands.

    python scripts/identity_gate.py --k 32 --out runs/eraser-identity-32
    python -m core attack --eraser runs/eraser-identity-32 --people 10 --eps 16 --steps 40
    python -m core evaluate --eraser runs/eraser-identity-32
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.contrast import fit_sets  # noqa: E402
from core.eraser import Eraser  # noqa: E402
from core.models.load import load_adapter  # noqa: E402
from core.toyworld.fitsets import forget_spec, toy_data  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402

PERSON = re.compile(r"^p\d+$")


def person_subspace(H: torch.Tensor, tags: list[str], k: int) -> torch.Tensor:
    """(L, d, k): at each layer, the top-k directions of the spread of the people's mean rows."""
    people = sorted({t for t in tags if PERSON.match(t)})
    idx = {p: [i for i, t in enumerate(tags) if t == p] for p in people}
    means = torch.stack([H[idx[p]].double().mean(0) for p in people])  # (P, L, d)
    out = []
    for l in range(H.shape[1]):
        centred = means[:, l] - means[:, l].mean(0)
        _, _, vt = torch.linalg.svd(centred, full_matrices=False)
        out.append(vt[:k].T)
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(ROOT / "assets" / "toy-llava"))
    ap.add_argument("--eraser", default=str(ROOT / "assets" / "toy-llava-eraser"))
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    adapter = load_adapter(args.model)
    shipped = Eraser.from_pretrained(args.eraser, adapter=adapter)
    c = shipped.config
    data = toy_data(load_world(args.model), forget_spec(c.forget_split))
    sets = fit_sets(data, adapter, c.direction_kind, seed=c.seed, n_retain=c.gate_retain)
    acts: dict = {}
    again = Eraser.fit(adapter, sets.forget, sets.retain, sets.recall, sets.erase, shipped.config_reading(),
                       activations=acts)
    print("refit as shipped: gate equal to the shipped one within",
          max(float((again.joint[i] - shipped.joint[i]).norm() / shipped.joint[i].norm()) for i in range(len(c.joint_gate))))
    tags_f, tags_r = [p.tag for p in sets.forget], [p.tag for p in sets.retain]
    P = person_subspace(torch.cat([acts["forget"], acts["retain"]]), tags_f + tags_r, args.k)

    def project(H: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nld,ldk,lek->nle", H.double(), P, P).to(H.dtype)
    for name, H in (("forget", acts["forget"]), ("retain", acts["retain"])):
        kept = project(H).norm() / H.norm()
        print(f"{name} rows: {100 * float(kept):.1f}% of their norm lies in the {args.k} directions per layer")
    narrow = shipped.refit_gate(project(acts["forget"]), project(acts["retain"]), forget_subjects=tags_f)
    narrow.config.preset = f"identity subspace k={args.k} (scripts/identity_gate.py)"
    narrow.save_pretrained(args.out)
    print(f"saved {args.out}: ramp {narrow.config.gate_floor:.3f} / {narrow.config.gate_full:.3f} "
          f"(shipped {c.gate_floor:.3f} / {c.gate_full:.3f})")


if __name__ == "__main__":
    main()
