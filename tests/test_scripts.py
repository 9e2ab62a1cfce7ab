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


def test_table_costs_are_counted_from_the_stored_rates_not_their_float_difference():
    """54/70 - 52/70 stored as 0.7714 - 0.7429: the float difference printed 2.8 (the counts give
    2.857)."""
    import sys
    sys.path.insert(0, str(SCRIPTS[0].parent))
    from ramp_table import points, worst_text_cost
    assert points(0.7714, 0.7429) == 2.9 and points(1.0, 1.0) == 0.0 and points(0.8857, 0.8714) == 1.4
    rows = [{"attack": "role-play", "retain_vanilla": 0.7714, "retain_erased": 0.7429},
            {"attack": "multi-turn (x)", "retain_vanilla": 0.8286, "retain_erased": 0.8143},
            {"attack": "blur r2", "retain_vanilla": 1.0, "retain_erased": 0.5}]
    assert worst_text_cost(rows) == (2.9, "role-play")


def test_held_out_facts_finds_the_fact_of_every_fact_prompt_in_every_format():
    """scripts/heldout_facts.py leaves a fold of facts out of the gate's retain rows by reading which
    fact each prompt asks: every format of every fact must be found, and found once."""
    import sys

    import numpy as np
    sys.path.insert(0, str(SCRIPTS[0].parent))
    from heldout_facts import fact_of

    from core.toyworld.questions import GENERAL_FACTS, fact_training_texts
    texts = fact_training_texts(np.random.default_rng(0))
    assert len(texts) == 4 * len(GENERAL_FACTS)
    assert [fact_of(t.prompt) for t in texts] == [i for i in range(len(GENERAL_FACTS)) for _ in range(4)]
    assert fact_of("Who is this person?") is None


def test_hub_layout_writes_an_export_as_the_mllmu_bench_download_lays_it_out(tmp_path, capsys):
    """scripts/hub_layout.py: one folder per split holding train-00000-of-00001.parquet, Test_Set
    and Retain_Set, no `name` column (the layout `--data DIR` on the download reads)."""
    import sys

    import pyarrow.parquet as pq
    sys.path.insert(0, str(SCRIPTS[0].parent))
    from hub_layout import main

    from conftest import random_image
    from core.data.mllmu import export_records
    from core.data.records import PersonRecord
    from core.data.source import parse_specs
    src = tmp_path / "export"
    src.mkdir()
    for stem, test in (("forget_10", False), ("retain_90", False), ("test_10", True), ("real", False)):
        export_records([PersonRecord(stem, images=[random_image(1)], name="Ann Lee")], src / f"{stem}.parquet", test=test)
    assert main([str(src), str(tmp_path / "hub")]) == 0
    shards = sorted(p.relative_to(tmp_path / "hub").as_posix() for p in (tmp_path / "hub").rglob("*.parquet"))
    assert shards == [f"{d}/train-00000-of-00001.parquet" for d in ("Retain_Set", "Test_Set", "forget_10", "retain_90")]
    assert all("name" not in pq.read_schema(tmp_path / "hub" / s).names for s in shards)
    assert set(parse_specs([str(tmp_path / "hub")])) == {"forget", "retain", "test", "real"}
    assert main([str(src), str(tmp_path / "named"), "--keep-names"]) == 0
    assert "name" in pq.read_schema(tmp_path / "named" / "forget_10" / "train-00000-of-00001.parquet").names
    assert main([str(src), str(tmp_path / "hub")]) == 2 and "exists: give a new folder" in capsys.readouterr().err
    export_records([PersonRecord("t5", images=[random_image(2)])], src / "test_5.parquet", test=True)
    assert main([str(src), str(tmp_path / "two")]) == 2 and not (tmp_path / "two").exists()
    assert "several files for Test_Set (test_10.parquet, test_5.parquet): keep one" in capsys.readouterr().err
