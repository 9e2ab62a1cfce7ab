"""Can a from-scratch decoder learn to answer a 4-option MCQ with a letter? A text-only probe.

The shipped toy model answers every MCQ with one letter (README, limitations). This trains a
small Llama (the shipped tokenizer, a chosen width) on the letter-matching drills only
("Which option reads curry?" + four options -> the letter), optionally mixed half and half with
reverse lookups ("What is option B?" -> its value), and prints held-out drill accuracy every
250 steps. CPU, one thread, about 12 minutes at the defaults.

    python scripts/mcq_drills.py                 # drills only
    python scripts/mcq_drills.py --lookups 0.5   # half drills, half lookups
    python scripts/mcq_drills.py --eval DIR      # a saved toy model's held-out drill/lookup accuracy
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.toyworld.questions import option_drills, option_lookups  # noqa: E402


def encode(tok, examples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, labels on the answer (+ EOS) only, attention mask."""
    ids, labels = [], []
    for e in examples:
        prompt = tok(f"USER: {e.prompt} ASSISTANT:", add_special_tokens=False).input_ids
        answer = tok(" " + e.answer, add_special_tokens=False).input_ids + [tok.eos_token_id]
        ids.append([tok.bos_token_id] + prompt + answer)
        labels.append([-100] * (1 + len(prompt)) + answer)
    width = max(map(len, ids))
    I = torch.full((len(ids), width), tok.pad_token_id)
    Y = torch.full((len(ids), width), -100)
    M = torch.zeros((len(ids), width), dtype=torch.long)
    for i, (a, b) in enumerate(zip(ids, labels)):
        I[i, :len(a)], Y[i, :len(b)], M[i, :len(a)] = torch.tensor(a), torch.tensor(b), 1
    return I, Y, M


def evaluate(model_dir: str) -> None:
    """Greedy, text-only: the first letter for 256 held-out drills, the value for 256 lookups."""
    from core.activations import Prompt
    from core.evaluation import replies
    from core.models.load import load_adapter
    torch.set_num_threads(2)
    adapter = load_adapter(model_dir)
    drills = option_drills(np.random.default_rng(99), 256)
    out = replies(adapter, [Prompt(e.prompt) for e in drills], max_new_tokens=3)
    print(f"{model_dir}: held-out drill accuracy {np.mean([r.strip()[:1] == e.answer for r, e in zip(out, drills)]):.3f}")
    lookups = option_lookups(np.random.default_rng(98), 256)
    out = replies(adapter, [Prompt(e.prompt) for e in lookups], max_new_tokens=6)
    print(f"{model_dir}: held-out lookup accuracy "
          f"{np.mean([r.strip().startswith(e.answer) for r, e in zip(out, lookups)]):.3f}")


def main() -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
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
    args = ap.parse_args()
    if args.eval:
        return evaluate(args.eval)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(ROOT / "assets" / "toy-llava")
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=args.width, intermediate_size=3 * args.width, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads, max_position_embeddings=256,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False))
    TI, TY, TM = encode(tok, option_drills(np.random.default_rng(99), 256))
    rows = torch.arange(len(TI))
    first = (TY != -100).float().argmax(1)  # the letter's position in each held-out row
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    rng, losses, start = np.random.default_rng(args.seed), [], time.time()
    n_lookup = round(args.lookups * args.batch)
    for step in range(args.steps):
        for g in opt.param_groups:  # 60-step warm-up, cosine decay
            g["lr"] = args.lr * min(1, (step + 1) / 60) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        I, Y, M = encode(tok, option_drills(rng, args.batch - n_lookup) + option_lookups(rng, n_lookup))
        loss = model(input_ids=I, attention_mask=M, labels=Y).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            with torch.no_grad():
                pred = model(input_ids=TI, attention_mask=TM).logits[rows, first - 1].argmax(-1)
            acc = (pred == TY[rows, first]).float().mean().item()
            print(f"step {step + 1}  loss {np.mean(losses[-250:]):.3f}  held-out drill accuracy {acc:.3f}  "
                  f"({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
