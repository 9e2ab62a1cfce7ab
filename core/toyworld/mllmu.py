"""The toy world as MLLMU-Bench parquet files (the format and the loader live in core.data.mllmu)."""

from __future__ import annotations

from pathlib import Path

from core.data.mllmu import export_records

from .world import World


def export_parquet(world: World, split: str, path: str | Path) -> Path:
    """Export a world split ('forget_10', 'retain_90', 'test_10', 'real', ...) to `path`."""
    return export_records(world.eval_items(split), path, test=split.startswith("test"))
