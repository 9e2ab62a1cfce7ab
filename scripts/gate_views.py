"""Two defences of the gate measured against the adaptive attacker (issue 24), neither kept.

1. Squeezed views: the gate is also read on a squeezed copy of the image (downsampled and back, or
   colours cut to 3 bits) and the steering follows the larger gate (after Xu et al. 2018, "Feature
   squeezing"). A perturbation tuned against the plain gate rarely survives the squeeze.
2. Image and text tokens apart: two joint gates fitted the shipped way, one on the mean over the
   prompt's image tokens and one on the mean over its text tokens (the face and the name are
   different evidence), each with its ramp read off its own rows (`--gate-ramp`'s rule), steering
   on the larger coefficient.

Each defence is attacked twice with the shipped attack (PGD, eps 16/255, 40 steps, step 2/255,
keeping the answer likely): once lowering the shipped gate only (an attacker who does not know the
defence), once lowering the defended gate itself (the adaptive attacker; for two gates, their max
or the sum of their ramp-normalised values). Scored without generation, on the ramp coefficient the
steering would use (1 = the whole push): its mean on the attacked forget questions and the share of
them under 0.5, and the share of clean retained questions it steers at all. For the shipped eraser,
the adaptive attack leaves 63% of forget questions under 0.5 and lets 32.9% of answers back
(docs/robustness.md): the coefficient is a proxy, comparable between rows of this table only.

    python scripts/gate_views.py --out docs/robustness_gate_views.md   # about 10 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.activations import batches, capture, encode_prompts
from core.contrast import fit_sets
from core.eraser import Eraser
from core.models.load import load_adapter
from core.robustness import cloze_queries, gate_of
from core.toyworld.fitsets import forget_spec, toy_data
from core.toyworld.train import load_world


def ramp(g: torch.Tensor, floor: float, full: float) -> torch.Tensor:
    return ((g - floor) / (full - floor)).clamp(0, 1)


def squeezer(kind: str):
    """A differentiable squeeze of (B, 3, S, S) pixels (3-bit colours: straight-through rounding)."""
    if kind.startswith("down"):
        f = float(kind[4:])

        def down(px):
            s = px.shape[-1]
            n = max(1, round(s * f))
            return F.interpolate(F.interpolate(px, size=(n, n), mode="area"), size=(s, s), mode="bilinear",
                                 align_corners=False)
        return down
    return lambda px: px + (torch.round(px * 7) / 7 - px).detach()


class Setup:
    def __init__(self, model: str, eraser: str, people: int, retain_people: int):
        self.adapter = load_adapter(model)
        self.eraser = Eraser.from_pretrained(eraser, adapter=self.adapter)
        self.data = toy_data(load_world(model), forget_spec(self.eraser.config.forget_split or "forget_10"))
        self.layers = self.eraser.gate_layers
        self.fq = cloze_queries(self.data.forget[:people], "forget")
        self.rq = cloze_queries(self.data.retain[:retain_people], "retain")
        self.image_id = self.adapter.tokenizer.convert_tokens_to_ids(self.adapter.placeholder)

    def pixels(self, qs):
        return torch.stack([self.adapter.to_pixels(q.prompt.image) for q in qs])

    def batch(self, qs, px):
        return self.adapter.encode([q.prompt.question for q in qs], px, [q.target for q in qs])

    def shipped(self, qs, px, grad=False):
        """(raw gate, ramp coefficient) of the shipped eraser."""
        g = gate_of(self.adapter, self.eraser, self.batch(qs, px), self.layers)
        g = g if grad else g.detach()
        return g, ramp(g, self.eraser.config.gate_floor, self.eraser.config.gate_full)

    def split_means(self, batch, h):
        """h (B, n, T, d) -> (mean over the prompt's image tokens, mean over its text tokens)."""
        ids = batch.inputs["input_ids"]
        mask = batch.inputs["attention_mask"].bool()
        prompt = (torch.arange(ids.shape[1])[None] <= batch.prompt_last[:, None]) & mask

        def mean(mask):
            w = mask.float()[:, None, :, None]
            return (h * w).sum(2) / w.sum(2).clamp(min=1)
        return mean(prompt & (ids == self.image_id)), mean(prompt & (ids != self.image_id))

    def attack(self, qs, gate_loss, eps=16 / 255, steps=40, step=2 / 255):
        """The shipped adaptive PGD (random start, sign steps, answer NLL + gate) on any gate."""
        x = self.pixels(qs)
        gen = torch.Generator().manual_seed(0)
        d = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
        d = (x + d).clamp(0, 1) - x
        for p in self.adapter.model.parameters():
            p.requires_grad_(False)
        for _ in range(steps):
            d.requires_grad_(True)
            b = self.batch(qs, x + d)
            loss = (self.adapter.answer_nll(b) + gate_loss(qs, x + d)).mean()
            (grad,) = torch.autograd.grad(loss, d)
            with torch.no_grad():
                d = ((d - step * grad.sign()).clamp(-eps, eps) + x).clamp(0, 1) - x
        return (x + d).detach()

    def attacked(self, gate_loss):
        return torch.cat([self.attack(self.fq[s:s + 16], gate_loss) for s in range(0, len(self.fq), 16)])


def row(name: str, attack: str, forget_c: torch.Tensor, retain_c: torch.Tensor) -> dict:
    return {"defence": name, "attack": attack, "coef": float(forget_c.mean()),
            "under_half": 100 * float((forget_c < 0.5).double().mean()),
            "retain_steered": 100 * float((retain_c > 0).double().mean()), "retain_coef": float(retain_c.mean())}


def squeeze_rows(s: Setup, plain_px: torch.Tensor) -> list[dict]:
    rows = []
    with torch.no_grad():
        clean_r = s.pixels(s.rq)
        rows.append(row("shipped gate", "lowers the shipped gate", s.shipped(s.fq, plain_px)[1],
                        s.shipped(s.rq, clean_r)[1]))
    views = (("down0.5", "downsampled to 1/2"), ("down0.25", "downsampled to 1/4"), ("bits", "3-bit colours"))
    for kind, label in views:
        sq = squeezer(kind)

        def defended(qs, px, grad=False):
            a, _ = s.shipped(qs, px, grad)
            b, _ = s.shipped(qs, sq(px), grad)
            return torch.maximum(a, b)
        cfg = s.eraser.config
        with torch.no_grad():
            retain_c = ramp(defended(s.rq, clean_r), cfg.gate_floor, cfg.gate_full)
            naive = ramp(defended(s.fq, plain_px), cfg.gate_floor, cfg.gate_full)
        rows.append(row(f"max with the gate of a copy {label}", "lowers the shipped gate", naive, retain_c))
        px = s.attacked(lambda qs, p: defended(qs, p, grad=True))
        with torch.no_grad():
            rows.append(row(f"max with the gate of a copy {label}", "lowers the defended gate (adaptive)",
                            ramp(defended(s.fq, px), cfg.gate_floor, cfg.gate_full), retain_c))
        print(rows[-1], flush=True)
    return rows


def split_rows(s: Setup, plain_px: torch.Tensor) -> list[dict]:
    """Fit an image-token and a text-token joint gate on the shipped eraser's own fit sets."""
    cfg = s.eraser.config
    sets = fit_sets(s.data, s.adapter, cfg.direction_kind, seed=cfg.seed, n_retain=cfg.gate_retain)

    def collect(prompts):
        img, txt = [None] * len(prompts), [None] * len(prompts)
        for idx, chunk in batches(prompts, 16, by_length=True):
            b = encode_prompts(s.adapter, chunk)
            a, t = s.split_means(b, capture(s.adapter, b, s.layers, positions="all"))
            for j, i in enumerate(idx):
                img[i], txt[i] = a[j], t[j]
        put = lambda xs: torch.zeros(len(xs), s.adapter.num_layers, xs[0].shape[-1]).index_copy_(  # noqa: E731
            1, torch.tensor(s.layers), torch.stack(xs)).double()
        return put(img), put(txt)
    (Fi, Ft), (Ri, Rt) = collect(sets.forget), collect(sets.retain)
    tags = [p.tag for p in sets.forget]
    gates = {}
    for name, H_f, H_r in (("image", Fi, Ri), ("text", Ft, Rt)):
        e = s.eraser.refit_gate(H_f, H_r, forget_subjects=tags)
        # its ramp off the rows that carry such tokens' evidence: prompts with (image gate) or without (text) a photo
        fm = torch.tensor([(p.image is not None) == (name == "image") for p in sets.forget])
        rm = torch.tensor([(p.image is not None) == (name == "image") for p in sets.retain])
        gates[name] = (e, *e.ramp_from_rows(rows=(H_f[fm], H_r[rm])))
        print(name, "gate ramp", gates[name][1:], flush=True)

    def parts(qs, px, grad=False):
        b = s.batch(qs, px)
        a, t = s.split_means(b, capture(s.adapter, b, s.layers, positions="all", differentiable=grad))
        return [(gates[k][0].read_gate(h.double(), s.layers), *gates[k][1:]) for k, h in (("image", a), ("text", t))]

    def coef(qs, px):
        with torch.no_grad():
            return torch.stack([ramp(g, f, t) for g, f, t in parts(qs, px)]).amax(0)
    retain_c = coef(s.rq, s.pixels(s.rq))
    label = "image-token gate and text-token gate, the larger"
    rows = [row(label, "lowers the shipped gate", coef(s.fq, plain_px), retain_c)]
    for how, combine in (("their max", lambda n: torch.maximum(*n)), ("their sum", lambda n: n[0] + n[1])):
        loss = lambda qs, p, c=combine: c([(g - f) / (t - f) for g, f, t in parts(qs, p, grad=True)]).float()  # noqa: E731
        rows.append(row(label, f"lowers {how} (adaptive)", coef(s.fq, s.attacked(loss)), retain_c))
        print(rows[-1], flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| defence | attack (eps 16/255, 40 steps) | forget: mean coefficient | forget: under 0.5 (%) | "
             "clean retain steered at all (%) | retain: mean coefficient |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['defence']} | {r['attack']} | {r['coef']:.3f} | {r['under_half']:.1f} | "
              f"{r['retain_steered']:.1f} | {r['retain_coef']:.4f} |" for r in rows]
    return "\n".join(lines)


def arguments(doc: str, out: str) -> argparse.ArgumentParser:
    """The options of a gate-defence experiment (this script's and scripts/answer_gate.py's)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--model", default="assets/toy-llava")
    ap.add_argument("--eraser", default="assets/toy-llava-eraser")
    ap.add_argument("--people", type=int, default=10, help="forget people attacked (7 cloze questions each)")
    ap.add_argument("--retain-people", type=int, default=40, help="retained people whose clean questions are scored")
    ap.add_argument("--out", default=out)
    return ap


def main() -> None:
    args = arguments(__doc__, "docs/robustness_gate_views.md").parse_args()
    torch.set_num_threads(2)
    start = time.time()
    s = Setup(args.model, args.eraser, args.people, args.retain_people)
    plain_px = s.attacked(lambda qs, p: s.shipped(qs, p, grad=True)[0])
    rows = squeeze_rows(s, plain_px) + split_rows(s, plain_px)
    text = (f"# Two gate defences that an adaptive attacker gets around\n\nProduced by `python scripts/gate_views.py "
            f"--people {args.people} --retain-people {args.retain_people} --out {args.out}` on {args.eraser} "
            f"({time.time() - start:.0f} s). {len(s.fq)} forget cloze questions attacked, {len(s.rq)} clean retained "
            "ones scored. What each column means and why the coefficient is a proxy: the script's docstring.\n\n"
            + table(rows) + "\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
