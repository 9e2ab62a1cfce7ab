"""The CLI on models that carry no toy world: MLLMU parquet files and photo folders, for the
miniature trained toy model copied WITHOUT its world.json and for a tiny random instance of
every supported family."""
import json
import shutil

import pytest

from core.__main__ import main
from core.models.tiny import TINY_FAMILIES, plain_english_words, save_tiny
from conftest import random_image

NAMES = ("Alex Morgan", "Sam Rivers", "Jordan Lee", "Taylor Brooks", "Robin Hale", "Casey North")


def _fixture_files(root, n_forget=2, n_retain=3):
    """MLLMU parquet files and a photo folder about subjects known by photos and a name."""
    from core.data.folder import add_name_questions, save_folder
    from core.data.mllmu import export_records
    from core.data.records import IMAGE_TEXTUAL, PURE_TEXT, GenerationItem, MaskItem, PersonRecord
    recs = []
    for i, name in enumerate(NAMES[: n_forget + n_retain]):
        r = PersonRecord(f"s{i}", images=[random_image(10 * i + k) for k in range(2)], name=name)
        add_name_questions(r, NAMES)
        r.generation.append(GenerationItem(f"Who is {name}?", f"{name} is a person.", PURE_TEXT))
        r.mask.append(MaskItem("This person's name is __.", name, IMAGE_TEXTUAL))
        recs.append(r)
    export_records(recs[:n_forget], root / "mllmu" / "forget_10.parquet")
    export_records(recs[n_forget:], root / "mllmu" / "retain_90.parquet")
    export_records(recs[:n_forget], root / "mllmu" / "test_10.parquet", test=True)
    save_folder(recs[:n_forget], root / "photos", facts=False)
    save_folder(recs[n_forget:], root / "keep", facts=False)  # people to keep, known by photos and a name
    return root / "mllmu", root / "photos"


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_every_family_fits_evaluates_and_attacks_from_files_and_photos(family, tmp_path):
    words = plain_english_words(tuple(w for n in NAMES for w in n.split()) + ("person", "is", "a", "Who"))
    model = save_tiny(family, tmp_path / "model", words=words)
    mllmu, photos = _fixture_files(tmp_path)
    base = ["--model", str(model), "--threads", "1"]
    fit = ["--no-tune", "--gate-retain", "40", "--layers", "1", "--strength", "0.5"]
    assert main(["fit", *base, "--data", str(mllmu), "--out", str(tmp_path / "e"), *fit]) == 0
    cfg = json.loads((tmp_path / "e" / "eraser_config.json").read_text())
    assert cfg["forget_split"] == "s0,s1" and cfg["preset"] == "workbench"
    assert f"forget={mllmu / 'forget_10.parquet'}" in cfg["data_source"]
    assert cfg["subjects"] == ["s0", "s1"] and cfg["counts"]["retain"] > 40
    out = tmp_path / "r.json"
    assert main(["evaluate", *base, "--data", str(mllmu), "--eraser", str(tmp_path / "e"), "--max-new-tokens", "3",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["splits"]) == {"forget", "test", "retain"}
    assert set(res["refusal_prompts"]) == {"forget", "retain"}  # built-in private-data requests
    assert main(["fit", *base, "--forget-dir", str(photos), "--data", f"retain={mllmu / 'retain_90.parquet'}",
                 "--out", str(tmp_path / "p"), *fit]) == 0
    assert json.loads((tmp_path / "p" / "eraser_config.json").read_text())["forget_split"] == "s0,s1"
    report = tmp_path / "a.md"
    assert main(["attack", *base, "--eraser", str(tmp_path / "p"), "--forget-dir", str(photos), "--data",
                 f"retain={mllmu / 'retain_90.parquet'}", "--people", "1", "--steps", "1", "--out", str(report)]) == 0
    rows = json.loads(report.with_suffix(".json").read_text())
    assert len(rows) == (12 if family == "paligemma" else 13)  # no chat template: no multi-turn attack
    # no real split, and the tiny word-level vocabularies spell none of the built-in facts: no benign-prefix row
    assert not any(r["attack"].startswith("benign prefix") for r in rows)
    assert all(0 <= r[k] <= 1 for r in rows for k in ("forget_erased", "forget_vanilla", "retain_erased"))


def test_photos_of_people_to_keep_join_the_retained_set(tmp_path, capsys):
    """--retain-dir: a photo folder of people to keep. Without it a photos-only forget set has no
    retained people (the CLI warns) and an evaluation scores built-in scenes as what is kept;
    with it the kept people are the retain split and the gate's retain rows."""
    words = plain_english_words(tuple(w for n in NAMES for w in n.split()) + ("person", "is", "a", "Who"))
    model = save_tiny("llava", tmp_path / "model", words=words)
    _, photos = _fixture_files(tmp_path)
    base = ["--model", str(model), "--threads", "1"]
    fit = ["--no-tune", "--gate-retain", "400", "--layers", "1", "--strength", "0.5"]
    assert main(["fit", *base, "--forget-dir", str(photos), "--out", str(tmp_path / "alone"), *fit]) == 0
    assert "warning: no retained subjects" in capsys.readouterr().err
    assert main(["fit", *base, "--forget-dir", str(photos), "--retain-dir", str(tmp_path / "keep"),
                 "--out", str(tmp_path / "kept"), *fit]) == 0
    assert "warning" not in capsys.readouterr().err
    alone, kept = (json.loads((tmp_path / d / "eraser_config.json").read_text()) for d in ("alone", "kept"))
    assert f"retain-dir={tmp_path / 'keep'}" in kept["data_source"]
    assert kept["counts"]["retain"] > alone["counts"]["retain"]  # the kept people's questions and requests
    for folder, splits in (("alone", {"forget", "scenes"}), ("kept", {"forget", "retain"})):
        extra = ["--retain-dir", str(tmp_path / "keep")] if folder == "kept" else []
        assert main(["evaluate", *base, "--forget-dir", str(photos), *extra, "--eraser", str(tmp_path / folder),
                     "--limit", "2", "--max-new-tokens", "3", "--json", str(tmp_path / f"{folder}.json")]) == 0
        assert set(json.loads((tmp_path / f"{folder}.json").read_text())["splits"]) == splits


def test_the_toy_model_without_its_world_is_an_open_world_model(mini_toy, tmp_path, capsys):
    """Copy the miniature toy model without world.json: every command asks for data by name,
    then works from the toy world exported as MLLMU files and as a photo folder."""
    model = tmp_path / "foreign"
    shutil.copytree(mini_toy, model, ignore=shutil.ignore_patterns("world.json"))
    base = ["--model", str(model), "--threads", "1"]
    for cmd in (["fit", "--out", str(tmp_path / "x")], ["evaluate"], ["unlearn", "--method", "ga", "--out",
                                                                       str(tmp_path / "u")],
                ["relearn"]):
        assert main([cmd[0], *base, *cmd[1:]]) == 2
        assert "carries no toy world (world.json): pass your forget set with --data" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "u").exists()
    # the world of the miniature model, exported: forget_10 holds one person of six
    from core.toyworld.train import load_world_config
    cfg = load_world_config(mini_toy)
    assert main(["world", "--seed", str(cfg.seed), "--people", str(cfg.n_people), "--export", str(tmp_path / "d"),
                 "--export-folder", str(tmp_path / "f"), "--renders", "2", "--no-facts"]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "forget_10.parquet", "real.parquet", "retain_90.parquet", "test_10.parquet"]
    capsys.readouterr()
    assert main(["fit", *base, "--data", str(tmp_path / "d"), "--out", str(tmp_path / "e"), "--gate-retain", "100",
                 "--tune-strengths", "0,1", "--min-fluency", "0"]) == 0
    out = capsys.readouterr().out
    assert "fitting on" in out and "tuner: mode prefill" in out
    assert (tmp_path / "e" / "tuning.json").is_file()
    assert main(["evaluate", *base, "--data", str(tmp_path / "d"), "--eraser", str(tmp_path / "e"), "--limit", "1",
                 "--max-new-tokens", "3", "--json", str(tmp_path / "r.json")]) == 0
    assert set(json.loads((tmp_path / "r.json").read_text())["splits"]) == {"forget", "test", "retain", "real"}
    assert main(["fit", *base, "--forget-dir", str(tmp_path / "f"), "--data", f"retain={tmp_path / 'd' / 'retain_90.parquet'}",
                 "--out", str(tmp_path / "p"), "--no-tune", "--gate-retain", "100"]) == 0
    assert main(["unlearn", *base, "--method", "ga_diff", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "u"),
                 "--epochs", "0.2"]) == 0
    assert json.loads((tmp_path / "u" / "unlearning.json").read_text())["forget"] == [
        r for r in json.loads((tmp_path / "e" / "eraser_config.json").read_text())["forget_split"].split(",")]
    assert main(["relearn", *base, "--data", str(tmp_path / "d"), "--steps", "1", "--json",
                 str(tmp_path / "rl.json")]) == 0
    assert main(["sweep", *base, "--eraser", str(tmp_path / "e"), "--data", str(tmp_path / "d"), "--people", "1",
                 "--out", str(tmp_path / "sweep.md")]) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert {r["experiment"] for r in rows} >= {"baseline", "strength", "direction", "PGD eps"}
    assert json.loads((tmp_path / "rl.json").read_text())[0]["before"]["held_out"] >= 0


def test_wrong_combinations_are_one_line_errors(mini_toy, tmp_path, capsys):
    _fixture_files(tmp_path)
    base = ["fit", "--model", str(mini_toy), "--out", str(tmp_path / "x"), "--threads", "1", "--no-tune"]
    cases = [
        (["--data", str(tmp_path / "mllmu"), "--forget", "forget_10"], "names a toy-world split"),
        (["--data", str(tmp_path / "mllmu"), "--forget", "s9"], "unknown subject id"),
        (["--data", str(tmp_path / "mllmu"), "--forget-dir", str(tmp_path / "photos")], "not both"),
        (["--data", f"retain={tmp_path / 'mllmu' / 'retain_90.parquet'}"], "no forget set"),
        (["--forget-dir", str(tmp_path / "nowhere")], "is not a folder"),
        (["--data", str(tmp_path / "mllmu"), "--layers", "7"], "out of range: the model has 2 decoder layers"),
        (["--forget-dir", str(tmp_path / "photos")], "cannot spell the name"),  # the toy tokenizer knows no such name
        (["--retain-dir", str(tmp_path / "keep")], "pass it with --forget-dir FOLDER or --data forget=PATH"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "x").exists()
    from core.data.mllmu import export_records  # noqa: F401 - a parquet without an image column:
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"ID": ["a"], "name": ["x"]}), tmp_path / "noimg.parquet")
    assert main([*base, "--data", f"forget={tmp_path / 'noimg.parquet'}"]) == 2
    assert "missing required image column" in capsys.readouterr().err
