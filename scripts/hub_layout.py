"""Lay out an export of `python -m core world --export DIR` as MLLMU-Bench's download is laid out.

    python scripts/hub_layout.py runs/mllmu runs/hub

The download (`huggingface-cli download MLLMMU/MLLMU-Bench --repo-type dataset`) has one folder
per split, each holding its shards (`train-00000-of-00001.parquet`); the test split is `Test_Set`, the real
celebrities `Retain_Set`, and no file has a `name` column. This writes that layout from an export
(forget_10.parquet -> forget_10/, test_10.parquet -> Test_Set/, real.parquet -> Retain_Set/, the
`name` column dropped), so that the path a user of the real benchmark takes (`--data DIR` on the
download, a forget set without names) can be run and measured here. `--keep-names` keeps the
column, to measure what the names add.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.data.source import HUB_FOLDERS  # noqa: E402

SHARD = "train-00000-of-00001.parquet"


def folder_for(stem: str) -> str | None:
    """The download's folder for an exported file's stem (None: not a split it has)."""
    if stem.startswith(("forget_", "retain_")):
        return stem
    if stem.startswith("test_"):
        return HUB_FOLDERS["test"]
    return HUB_FOLDERS["real"] if stem == "real" else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", help="a folder written by `python -m core world --export`")
    ap.add_argument("out", help="the folder to write the download's layout into (must not exist)")
    ap.add_argument("--keep-names", action="store_true", help="keep the `name` column the download lacks")
    args = ap.parse_args(argv)
    src, out = Path(args.export), Path(args.out)
    if out.exists():
        print(f"{out} exists: give a new folder", file=sys.stderr)
        return 2
    files = sorted(f for f in src.glob("*.parquet") if folder_for(f.stem))
    if not files:
        print(f"{src} holds no exported split (forget_*.parquet...): run `python -m core world --export {src}`",
              file=sys.stderr)
        return 2
    folders = [folder_for(f.stem) for f in files]
    twice = sorted({d for d in folders if folders.count(d) > 1})
    if twice:  # test_5 and test_10 both go to Test_Set: the second replaced the first
        print(f"{src} holds several files for {', '.join(map(str, twice))} "
              f"({', '.join(f.name for f, d in zip(files, folders) if d in twice)}): keep one", file=sys.stderr)
        return 2
    for f in files:
        table = pq.read_table(f)
        if not args.keep_names and "name" in table.column_names:
            table = table.drop_columns(["name"])
        target = out / str(folder_for(f.stem)) / SHARD
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target)
        print(f"{f.name} -> {target.relative_to(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
