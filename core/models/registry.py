"""What families are supported, and which supported models exist on this machine."""

from __future__ import annotations

import json
from pathlib import Path

from core.models.load import EXAMPLE_IDS, FAMILIES

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def supported_families() -> list[dict]:
    return [{"model_type": t, "family": fam, "class": cls, "example": EXAMPLE_IDS[fam]}
            for t, (fam, cls, _) in FAMILIES.items()]


def _family_of(folder: Path) -> str | None:
    cfg = folder / "config.json"
    if not cfg.is_file():
        return None
    try:
        raw = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return None
    model_type = raw.get("model_type") if isinstance(raw, dict) else None  # a list there crashed the model list
    return FAMILIES[model_type][0] if model_type in FAMILIES else None


def find_local_models(extra: list[str] | None = None) -> list[dict]:
    """Supported models in assets/, the Hugging Face cache, and the `extra` folders."""
    found = []
    candidates: list[tuple[str, Path]] = [("path", Path(p)) for p in (extra or [])]
    if ASSETS.is_dir():
        candidates += [("assets", p) for p in sorted(ASSETS.iterdir()) if p.is_dir()]
    try:
        from huggingface_hub import scan_cache_dir
        for repo in scan_cache_dir().repos:
            for rev in repo.revisions:
                candidates.append(("hf-cache", Path(rev.snapshot_path)))
    except Exception:  # no cache yet, or an unreadable one: nothing to list
        pass
    for source, path in candidates:
        fam = _family_of(path)
        if fam is not None:
            found.append({"family": fam, "source": source, "path": str(path),
                          "toy_world": (path / "world.json").is_file()})
        elif source == "path":
            found.append({"family": "unsupported", "source": source, "path": f"{path} (no supported config.json)"})
    return found
