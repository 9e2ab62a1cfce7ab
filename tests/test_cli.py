"""The command line: help for every command, and `models`."""
import json
import subprocess
import sys

from core.__main__ import build_parser, main
from core.models.tiny import save_tiny


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_every_command_has_help():
    for cmd in _commands():
        out = subprocess.run([sys.executable, "-m", "core", cmd, "--help"], capture_output=True, text=True,
                             env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        assert "usage: python -m core " + cmd in out.stdout


def test_models_lists_families_and_a_local_folder(tmp_path, capsys):
    folder = save_tiny("qwen2_5_vl", tmp_path / "q")
    assert main(["models", "--json", "--path", str(folder), "--path", str(tmp_path)]) == 0
    data = json.loads(capsys.readouterr().out)
    types = {f["model_type"] for f in data["families"]}
    assert {"llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "paligemma"} <= types
    local = {m["path"]: m["family"] for m in data["local"]}
    assert local[str(folder)] == "qwen2_5_vl"
    assert any(f == "unsupported" for f in local.values())
    assert main(["models"]) == 0
    assert "Supported families" in capsys.readouterr().out
