"""Can a from-scratch decoder learn to answer a 4-option MCQ with a letter? A text-only probe.

The shipped toy model answers every MCQ with one letter (README, limitations). This trains a
small Llama (the shipped tokenizer, a chosen width) on the letter-matching drills only
("Which option reads curry?" + four options -> the letter), optionally mixed half and half with
reverse lookups ("What is option B?" -> its value), and prints held-out drill accuracy every
250 steps. CPU, one thread, about 12 minutes at the defaults.

    python scripts/mcq_drills.py                 # drills only
    python scripts/mcq_drills.py --lookups 0.5   # half drills, half lookups
    python scripts/mcq_drills.py --eval DIR      # a saved toy model: held-out drills, lookups, MCQ by attribute
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.toyworld.pretrain import held_out_examples  # noqa: E402


def evaluate(model_dir: str, people: int = 30) -> None:
    """Greedy: the first letter for 256 held-out text drills and 256 name drills, the value for
    256 lookups, and MCQ accuracy per attribute on the first `people` forget_10 and retain people
    (and the letters given)."""
    from collections import Counter, defaultdict
    from core.activations import Prompt
    from core.evaluation import replies
    from core.models.load import load_adapter
    from core.data.formats import classification_prompt
    from core.toyworld.train import eval_splits, load_world
    torch.set_num_threads(2)
    adapter = load_adapter(model_dir)
    for label, drills in (("drill", held_out_examples("drills")), ("name drill", held_out_examples("name_drills"))):
        out = replies(adapter, [Prompt(e.prompt) for e in drills], max_new_tokens=3)
        print(f"{model_dir}: held-out {label} accuracy "
              f"{np.mean([r.strip()[:1] == e.answer for r, e in zip(out, drills)]):.3f}")
    lookups = held_out_examples("lookups")
    out = replies(adapter, [Prompt(e.prompt) for e in lookups], max_new_tokens=6)
    print(f"{model_dir}: held-out lookup accuracy "
          f"{np.mean([r.strip().startswith(e.answer) for r, e in zip(out, lookups)]):.3f}")
    splits = eval_splits(load_world(model_dir), "forget_10")
    for split in ("forget", "retain"):
        for modality in ("image", "text"):
            rows = [(it, r.image if modality == "image" else None) for r in splits[split][:people]
                    for it in getattr(r, f"classification_{modality}")]
            out = replies(adapter, [Prompt(classification_prompt(it), im) for it, im in rows], max_new_tokens=2)
            right, letters = defaultdict(list), Counter(r.strip()[:1] for r in out)
            for (it, _), r in zip(rows, out):
                right[it.attribute].append(r.strip()[:1].upper() == it.correct_answer)
            print(f"{split} {modality} MCQ by attribute: "
                  + ", ".join(f"{k} {np.mean(v):.2f} (n={len(v)})" for k, v in right.items())
                  + f"; letters given {dict(sorted(letters.items()))}")


def main() -> None:
    from transformers import AutoTokenizer
    from core.toyworld.pretrain import TextPretrainConfig, pretrain_text
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lookups", type=float, default=0.0, help="share of each batch that is reverse lookups")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval", metavar="DIR", help="only measure a saved toy model (no training)")
    ap.add_argument("--save", metavar="DIR", help="save the trained text model here (train-toy --text-init DIR)")
    args = ap.parse_args()
    if args.eval:
        return evaluate(args.eval)
    torch.set_num_threads(1)
    cfg = TextPretrainConfig(hidden=args.width, layers=args.layers, heads=args.heads, intermediate=3 * args.width,
                             steps=args.steps, batch_size=args.batch, lookups=args.lookups, lr=args.lr,
                             weight_decay=args.weight_decay, seed=args.seed,
                             refusals=0)  # the probe of the README's tables: drills and lookups only
    start = time.time()

    def progress(step: int, steps: int, loss: float, accuracy: float | None) -> None:
        if accuracy is not None:
            print(f"step {step}  loss {loss:.3f}  held-out drill accuracy {accuracy:.3f}  "
                  f"({time.time() - start:.0f} s)", flush=True)
    pretrain_text(args.save, AutoTokenizer.from_pretrained(ROOT / "assets" / "toy-llava"), cfg, progress)


if __name__ == "__main__":
    main()
