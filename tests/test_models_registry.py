"""The local model list: supported folders are listed with their family, anything else is named
unsupported, never a crash."""
from core.models.registry import find_local_models


def test_folders_with_unreadable_or_foreign_configs_are_listed_as_unsupported(tmp_path):
    """A config.json that is valid JSON but not an object crashed the model list (AttributeError)."""
    for name, text in (("listed", "[1, 2]"), ("broken", "{oops"), ("text", '{"model_type": "bert"}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(text)
    found = find_local_models([str(tmp_path / n) for n in ("listed", "broken", "text")] + ["assets/toy-llava"])
    mine = [m for m in found if m["source"] == "path"]
    assert [m["family"] for m in mine] == ["unsupported"] * 3 + ["llava"]
    assert mine[-1]["toy_world"] is True
