"""The README's Python API block runs as written (from the repository root) and does what its
comments say."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.S)


def test_python_api_block_runs_as_written(tmp_path, monkeypatch):
    blocks = _python_blocks("Python API")
    assert len(blocks) == 1
    monkeypatch.chdir(ROOT)
    code = blocks[0].replace('"my-eraser"', repr(str(tmp_path / "my-eraser")))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own code
    assert scope["original"] == scope["data"].forget[0].name  # the toy model knows this face
    assert scope["steered"].startswith("I am sorry")
    assert scope["gates"][1].item() > 0.5  # the gate fires on this photo at the steered layer
    assert (tmp_path / "my-eraser" / "eraser.safetensors").is_file()
