"""The open-world tables of docs/open-world.md, from the JSON that scripts/reproduce.sh (toy path) and
scripts/open_world.sh (open path) wrote: `python scripts/open_world_table.py`."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (("forget", "image_text", "classification"), ("forget", "text_only", "classification"),
           ("test", "image_text", "classification"), ("forget", "image_text", "cloze"),
           ("forget", "text_only", "cloze"))
NAMES = {"image_text": "image+text", "text_only": "text-only", "classification": "MCQ",
         "generation_rougeL": "ROUGE-L", "cloze": "cloze"}
KEEP = [(s, m, k) for s in ("retain", "real") for m in ("image_text", "text_only")
        for k in ("classification", "generation_rougeL", "cloze")]


def _load(name: str) -> dict:
    return json.loads((ROOT / "results" / f"{name}.json").read_text())["splits"]


def _get(res: dict, split: str, mod: str, key: str) -> float | None:
    return res.get(split, {}).get(mod, {}).get(key)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def row(label: str, res: dict, vanilla: dict) -> str:
    ratio, (split, mod, key) = min((_get(res, *c) / _get(vanilla, *c), c) for c in KEEP if _get(vanilla, *c))
    fluency = min(m["fluency"] for s in res.values() for m in s.values())
    cells = [_pct(_get(res, *c)) for c in COLUMNS] + [f"{100 * ratio:.1f} ({split} {NAMES[mod]} {NAMES[key]})",
                                                      _pct(fluency)]
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    head = ("| run | forget image MCQ | forget text MCQ | test image MCQ | forget image cloze | forget text cloze "
            "| worst retain/real metric, % of vanilla | fluency |")
    print(head)
    print("|---" * 8 + "|")
    toy_v, open_v = _load("vanilla"), _load("open_vanilla")
    print(row("toy path: vanilla", toy_v, toy_v))
    print(row("toy path: retain-only twin", _load("retain_only"), toy_v))
    print(row("toy path: eraser (shipped)", _load("eraser"), toy_v))
    print(row("open path: vanilla", open_v, open_v))
    print(row("open path: retain-only twin", _load("open_retain_only"), open_v))
    print(row("open path: eraser (`fit --data`)", _load("open_eraser"), open_v))
    print(row("open path: eraser (`fit --data --joint-gate 0,1,2,3`)", _load("open_eraser_joint"), open_v))
    print(row("open path, as downloaded (no names): eraser (`fit --data DOWNLOAD`)", _load("open_hub_eraser"), open_v))
    pv = _load("open_photos_vanilla")
    print()
    print(head)
    print("|---" * 8 + "|")
    print(row("3 photo-folder people: vanilla", pv, pv))
    print(row("3 photo-folder people: eraser (`fit --forget-dir`)", _load("open_photos_eraser"), pv))
    print(row("3 photo-folder people: eraser (`fit --forget-dir --joint-gate 0,1,2,3`)",
              _load("open_photos_eraser_joint"), pv))


if __name__ == "__main__":
    main()
