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


def test_every_command_line_in_the_readme_parses(tmp_path):
    """Each `python -m core ...` line of the README (code blocks and the command table) is accepted
    by the CLI's own parser as written: every subcommand and flag exists (nothing is run)."""
    import shlex

    from core.__main__ import build_parser
    text = (ROOT / "README.md").read_text()
    lines = re.findall(r"^(python -m core [^\n`]+)$", text, re.M)  # the code blocks
    lines += [c.replace("\\|", "|") for c in re.findall(r"\| `(python -m core [^`]+)` \|", text)]  # the table
    assert len(lines) >= 12
    parser = build_parser()
    for line in lines:
        args = shlex.split(line)[3:]
        args = [a.split("|")[0].strip("[]") for a in args]  # "[--preset workbench|paper]" -> one choice
        args = [a for a in args if a and a != "COMMAND" and not a.endswith("...")]
        assert parser.parse_args(args).command == args[0], line
