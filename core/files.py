"""Result files written whole or not at all.

Why: a run killed while it wrote its JSON (a long evaluation stopped with Ctrl-C, a full disk)
left a cut-off file where the last good result was, and a later `--merge` or table script then
failed on it. Text goes to a hidden file beside the target, then replaces it in one step.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` (its folder made if missing) through a temporary file in the same
    folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.writing")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
