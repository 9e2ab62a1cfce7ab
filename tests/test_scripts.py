"""The research scripts (scripts/*.py) stay runnable: every name they import from the project
exists. A rename in core once left scripts/adversarial_gate.py failing at its first line, and with
it the reproduction of docs/robustness_hardening*.md."""
import ast
import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_every_project_name_a_script_imports_exists(script):
    missing = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("core", "app"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{node.module}.{alias.name}")
    assert not missing, f"{script.name} imports names that do not exist: {missing}"
    assert SCRIPTS and len(SCRIPTS) > 10
