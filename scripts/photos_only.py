"""Photos and a name on a model without a world: what the eraser costs, with and without people to keep.

The shipped model is copied WITHOUT world.json (a model the project knows nothing about); one
forget-split person is given as three fresh renders and a name (the app's 'Forget someone', no
facts), and, for each count in --keep, that many other people of the world as one photo each,
named after them (the app's 'people to keep'), and once with nobody kept but made-up names a
general tokenizer would spell (see below). Each session's eraser is evaluated with and
without steering on the person's own questions, on what the session retains (the people kept,
or, with nobody kept, the built-in scored scenes: core.data.scenes), and, scored with the world
kept aside as a check only, on the person's own facts as the world asks them (with a photo and
by name) and on ten people of the world's retain split whom no eraser saw.
Writes results/open_photos_only.json (a few minutes on 2 CPU cores).

    python scripts/photos_only.py [--person p045] [--keep 0,5,10,made-up,10+made-up] [--json ...]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.workbench import Session, Workbench, read_image  # noqa: E402
from core.data.folder import subject_from  # noqa: E402
from core.data.source import ForgetData  # noqa: E402
from core.data.wordings import PLAIN_ENGLISH  # noqa: E402
from core.evaluation import EvalConfig, evaluate  # noqa: E402
from core.toyworld.train import load_world  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--person", default="p045")
    ap.add_argument("--keep", default="0,5,10,made-up,10+made-up",
                    help="one session each: N other people to keep, 'made-up' for made-up names a general "
                         "tokenizer spells, 'N+made-up' for both")
    ap.add_argument("--no-eraser", action="store_true",
                    help="start as on a model the project ships no eraser for: each session's fit uses the "
                         "workbench preset, tuned on its held-out rows (otherwise the copy, whose weights are the "
                         "shipped model's, lends the shipped eraser's recipe)")
    ap.add_argument("--json", default="results/open_photos_only.json")
    args = ap.parse_args()
    world = load_world("assets/toy-llava")
    person = world.person(args.person)
    unseen = world.eval_items("retain_90")[:10]
    own = [r for r in world.eval_items("forget_15") if r.id == args.person]  # their facts, with a photo and by name
    pool = [p for p in world.retain_people("retain_90") if p.id not in {r.id for r in unseen}]
    out = {"person": args.person, "photos": 3, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        shutil.copytree("assets/toy-llava", model)
        (model / "world.json").unlink()
        rng = np.random.default_rng(11)
        photos = []
        for i in range(3):
            world.render(person, rng).save(Path(tmp) / f"{i}.png")
            photos.append(str(Path(tmp) / f"{i}.png"))
        wb = Workbench.load(model, **({"eraser": None} if args.no_eraser else {}))
        # a general tokenizer spells the built-in made-up names (core.data.wordings); this word-level one
        # spells only the world's name words, so one more session stands in for it: made-up names from
        # the words of people no run scores or keeps
        used = {w for r in unseen for w in r.name.split()} | set(person.name.split())
        words = [p.name.split() for p in world.people if not set(p.name.split()) & used]
        general = replace(PLAIN_ENGLISH, decoy_first=tuple(dict.fromkeys(w[0] for w in words)),
                          decoy_last=tuple(dict.fromkeys(w[-1] for w in words)))
        for n in args.keep.split(","):
            count, made_up = int(n.split("+")[0]) if n[0].isdigit() else 0, "made-up" in n
            keep = []
            for p in pool[:count]:
                world.render(p, rng).save(Path(tmp) / f"{p.name.replace(' ', '_')}.png")
                keep.append(str(Path(tmp) / f"{p.name.replace(' ', '_')}.png"))
            sess = Session()
            if made_up:  # what Forget someone builds, with the stand-in for a general tokenizer's made-up names
                kept = [subject_from(f"keep-{i}", [read_image(k)], Path(k).stem.replace("_", " "), None, [person.name])
                        for i, k in enumerate(keep)]
                data = ForgetData([subject_from("upload", [read_image(p) for p in photos], person.name)], kept,
                                  wordings=general, name=f"made-up names {n}").for_tokenizer(wb.adapter.tokenizer)
                sess.eraser = wb.fit_eraser(data, "recall", sess)
                sess.data = data
                out.setdefault("made_up_names", {})[n] = data.decoy_names()
            else:
                sess.eraser = wb.forget_someone(photos, person.name, "", sess, keep=keep)
            for label, er in (("vanilla", None), ("eraser", sess.eraser)):
                if label == "vanilla" and out["runs"]:
                    continue  # the model's own answers do not depend on who is kept
                res = wb.evaluate(er, 20, session=sess)
                others = evaluate(wb.adapter, {"the person, as the world asks": own, "people no eraser saw (10)": unseen},
                                  None, EvalConfig(), None if er is None else er.task_steering(wb.adapter))
                setting = None if er is None else {"layers": er.config.steer_layers, "strength": er.config.strength}
                out["runs"].append({"keep": n, "run": label, "setting": setting,
                                    "splits": {**res.splits, **others.splits}})
    print("| people kept | run | split | modality | MCQ | ROUGE-L | cloze | refusal |\n|---|---|---|---|---|---|---|---|")
    for r in out["runs"]:
        for split, mods in r["splits"].items():
            for mod, m in mods.items():
                print(f"| {r['keep'] if r['run'] == 'eraser' else '-'} | {r['run']} {r['setting'] or ''} | {split} | {mod} | "
                      f"{100 * m['classification']:.1f} | {100 * m['generation_rougeL']:.1f} | {100 * m['cloze']:.1f} | "
                      f"{100 * m['refusal_rate']:.1f} |")
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
