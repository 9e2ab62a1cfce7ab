"""Result files are written whole or not at all."""
import pytest

from core.files import write_atomic


def test_a_write_replaces_the_file_whole_and_a_failed_one_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    assert write_atomic(target, '{"a": 1}') == target and target.read_text() == '{"a": 1}'
    import core.files

    def broken(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(core.files.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, '{"a": 2}')
    assert target.read_text() == '{"a": 1}' and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_write_makes_the_folder_it_writes_into(tmp_path):
    """Every caller made the folder first; the writer does it once for all."""
    target = tmp_path / "runs" / "deep" / "r.json"
    assert write_atomic(target, "{}").read_text() == "{}" and [p.name for p in target.parent.iterdir()] == ["r.json"]
