"""Public-deployment mode: what changes when the app is exposed to anonymous visitors.

Set `MLLMERASER_PUBLIC=1` (a Hugging Face Space does, in its settings) and:
- "Load model" loads only the folders of the allow-list `MLLMERASER_MODELS` (comma-separated
  folders; the shipped toy model when unset), asked for by folder name: the box is no longer a
  way to probe the server's disk or its Hugging Face cache;
- messages and model descriptions show folder names, never server paths;
- no hub download is attempted (HF_HUB_OFFLINE stays set whatever the environment says).
Off (the default, a researcher's own machine), any local folder or cached hub id loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PUBLIC_ENV = "MLLMERASER_PUBLIC"
MODELS_ENV = "MLLMERASER_MODELS"

# an absolute or home-relative path of at least two parts; "1/255" and "a/b" (hub ids) are left alone
_PATH = re.compile(r"(?<![\w.~/-])(?:~|(?:/[\w.@+-]+)+)(?:/[\w.@+-]+)*/?")


def public() -> bool:
    """Whether the app runs in public-deployment mode (read at every call: tests flip it)."""
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def allowed_models(default: Path) -> dict[str, Path]:
    """Folder name -> folder of the models a public app may load: the allow-list, and always the
    model the app started with (the Load-model box shows it; a visitor who switched could not
    come back to it)."""
    raw = [p.strip() for p in os.environ.get(MODELS_ENV, "").split(",") if p.strip()]
    folders = [Path(p).expanduser().resolve() for p in raw] + [Path(default).resolve()]
    out: dict[str, Path] = {}
    for f in folders:
        out.setdefault(f.name, f)
    return out


def scrub(text: str) -> str:
    """The text with every server path replaced by its last part (in public mode only)."""
    if not public():
        return text
    return _PATH.sub(lambda m: Path(m.group(0).rstrip("/")).name or "<path>", text)
