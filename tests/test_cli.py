"""The command line: help for every command, and `models`."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import random_image
from core.__main__ import build_parser, main
from core.models.tiny import save_tiny


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return list(sub.choices)


def test_every_command_has_help(capsys):
    """The real entry point once in a subprocess (a clean environment), every command in-process
    (each subprocess pays about 1.5 s of imports)."""
    out = subprocess.run([sys.executable, "-m", "core", "fit", "--help"], capture_output=True, text=True,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and "usage: python -m core fit" in out.stdout, out.stderr
    for cmd in _commands():
        with pytest.raises(SystemExit) as done:
            main([cmd, "--help"])
        assert done.value.code == 0
        assert "usage: python -m core " + cmd in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--limit", "-1"], "argument --limit: must be at least 1, got -1"),
    (["evaluate", "--limit", "0"], "argument --limit: must be at least 1, got 0"),
    (["evaluate", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
    (["attack", "--eraser", "E", "--people", "0"], "argument --people: must be at least 1"),
    (["sweep", "--people", "ten"], "argument --people: expected a whole number, got 'ten'"),
    (["fit", "--out", "E", "--adversarial-rounds", "-2"], "argument --adversarial-rounds: must be at least 0"),
    (["bench", "--shape", "llava-1.5-7b", "--layers", "0"], "argument --layers: must be at least 1"),
    # numpy's "expected non-negative integer" came after the model (and unlearn's training) had started
    (["unlearn", "--method", "idk", "--seed", "-2", "--out", "U"], "argument --seed: must be at least 0, got -2"),
    (["world", "--seed", "-5"], "argument --seed: must be at least 0, got -5"),
    # a negative number of training steps saved an untrained model as "vanilla"
    (["train-toy", "--out", "T", "--steps", "-5"], "argument --steps: must be at least 0, got -5"),
    (["pretrain-text", "--out", "T", "--steps", "-1"], "argument --steps: must be at least 1, got -1"),
    (["attack", "--eraser", "E", "--steps", "0"], "argument --steps: must be at least 1, got 0"),
])
def test_counts_that_would_score_nothing_or_slice_rows_away_are_refused_before_any_work(argv, message, capsys):
    """`--limit -1` used to evaluate every split but its last row and write the JSON as a result."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_an_output_path_of_the_wrong_kind_is_refused_before_any_work(tmp_path, capsys):
    """A fit used to run to its end and then fail with a FileExistsError traceback."""
    (tmp_path / "taken").write_text("notes")
    for argv, message in ((["fit", "--forget", "forget_10", "--out", str(tmp_path / "taken")], "is a file; this command "
                           "writes a folder there"),
                          (["world", "--export", str(tmp_path / "taken")], "--export"),
                          (["evaluate", "--json", str(tmp_path)], "is a folder; this command writes a file there")):
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "notes" and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_settings_no_run_can_use_are_refused_before_any_work(tmp_path, capsys):
    """Each of these ran (minutes, some of them) and then failed, wrote what nothing could read, or
    did something else than asked without a word."""
    (tmp_path / "afile").write_text("notes")
    (tmp_path / "seq.json").write_text(json.dumps({"config": {"group": 2}, "results": {"npo": {}}}))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    (tmp_path / "old" / "p001").mkdir(parents=True)  # a photo folder of the user's (an export's layout, without its mark)
    random_image(0).save(tmp_path / "old" / "p001" / "1.png")
    cases = [
        (["evaluate", "--json", str(tmp_path / "afile" / "e.json")], "afile is a file, not a folder"),
        (["world", "--grid", str(tmp_path / "afile" / "g.png")], "afile is a file, not a folder"),
        (["attack", "--out", str(tmp_path / "a.json")], "writes a markdown report there and its JSON beside it"),
        (["sweep", "--out", str(tmp_path / "s.png")], "pass a .md path"),
        (["evaluate", "--strength", "5", "--layers", "99"], "--strength, --layers set how an eraser steers"),
        (["fit", "--out", str(tmp_path / "f"), "--adversarial-rounds", "21"], "--adversarial-rounds is at most 20"),
        (["sequential", "--gate-layer", "3", "--joint-gate", "0,1"], "give --gate-layer (one layer) or --joint-gate"),
        (["sequential", "--methods", "vanilla", "--limit", "1", "--merge", "--json", str(tmp_path / "seq.json")],
         "--merge: "),
        (["sequential", "--methods", "eraser", "--forget", "p002,p009", "--json", str(tmp_path / "q.json")],
         "--withdraw 3: the eraser's run withdraws"),
        (["train-toy", "--out", str(tmp_path / "t"), "--text-heads", "7"], "7 attention heads must divide its width"),
        (["train-toy", "--out", str(tmp_path / "t"), "--retain-only-out", str(tmp_path / "r"), "--forget",
          "forget_7"], "no forget split of 7%"),
        (["world", "--export-folder", str(tmp_path / "p"), "--renders", "11"], "--renders is at most 10"),
        (["world", "--forget", "foo"], "--forget names a forget split such as forget_10"),
        (["world", "--export-folder", str(tmp_path / "mine")], "was not written by --export-folder"),
        # a user's own photo folder has an export's layout: it was deleted and replaced by the toy world's people
        (["world", "--export-folder", str(tmp_path / "old")], "was not written by --export-folder"),
        (["evaluate", "--device-map", "{oops"], "--device-map is not valid JSON"),
        (["fit", "--out", str(tmp_path / "f"), "--ratio", "0.3", "--threshold", "0.01"], "give one"),
        (["pretrain-text", "--out", str(tmp_path / "pt"), "--heads", "3", "--steps", "1"], "3 attention heads"),
        # an unknown split is found before an earlier export is cleared (it was deleted, then refused)
        (["world", "--people", "20", "--forget", "forget_7", "--export-folder", str(tmp_path / "old")],
         "no forget split of 7%"),
        (["fit", "--out", str(tmp_path / "f"), "--min-retain", "1.5"], "--min-retain is a share of answers"),
        (["unlearn", "--method", "idk", "--out", str(tmp_path / "u"), "--reference", "assets/toy-llava"],
         "--reference is NPO's reference model"),
        # an output inside what the command reads: the report's JSON replaced the eraser's config
        (["attack", "--out", "assets/toy-llava-eraser/eraser_config.md"], "which this command reads"),
        (["evaluate", "--eraser", "assets/toy-llava-eraser", "--json", "assets/toy-llava-eraser/eraser_config.json"],
         "would write into --eraser"),
        (["train-toy", "--out", str(tmp_path / "t"), "--retain-only-out", str(tmp_path / "t")], "name the same place"),
        # an eraser saved inside the photo folder it was fitted on is one more "person" of that folder next time
        (["fit", "--forget-dir", "assets/forget-example", "--out", "assets/forget-example/my-eraser"],
         "would write into --forget-dir assets/forget-example"),
        # a misspelt method failed after the methods before it had run
        (["sequential", "--methods", "vanilla,idkk", "--json", str(tmp_path / "seq.json")], "unknown method(s) idkk"),
        # read before the fit: it failed after minutes of activations with "could not convert string to float"
        (["fit", "--out", str(tmp_path / "f"), "--tune-strengths", "abc"], "--tune-strengths expects comma-separated"),
        (["fit", "--out", str(tmp_path / "f"), "--tune-strengths", "1,nan"], "--tune-strengths are steering strengths"),
        (["fit", "--out", str(tmp_path / "f"), "--no-tune", "--layers", "1", "--steer-layers", "2"],
         "are not among the fitted layers"),
        (["attack", "--steps", "5000", "--out", str(tmp_path / "a.md")], "--steps is at most 2000"),
        (["bench", "--layers", "3"], "--layers sets the depth of a --shape model"),
        (["evaluate", "--model", "README.md"], "README.md is a file: pass the model's folder"),
        (["evaluate", "--eraser", "assets/toy-llava-eraser", "--task-strength", "cloze=nan"], "--task-strength expects"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert json.loads((tmp_path / "seq.json").read_text())["results"] == {"npo": {}}  # the earlier run, untouched
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "old" / "p001" / "1.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mine", "old", "seq.json"]  # nothing written


def test_an_earlier_photo_export_is_replaced_not_merged(tmp_path, capsys):
    """A second `world --export-folder` into the same folder left the first one's people beside the
    new ones (one forget set of both)."""
    out = tmp_path / "photos"
    assert main(["world", "--people", "20", "--export-folder", str(out), "--folder-people", "2", "--renders", "2",
                 "--no-facts"]) == 0
    first = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert main(["world", "--people", "20", "--seed", "1", "--export-folder", str(out), "--folder-people", "1",
                 "--renders", "1", "--no-facts"]) == 0
    again = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(first) == 2 and len(again) == 1 and len(list((out / again[0]).glob("*.png"))) == 1
    # a failing export leaves the earlier one whole (it was deleted before the grid failed)
    assert main(["world", "--people", "20", "--export-folder", str(out), "--folder-people", "2", "--renders", "1",
                 "--no-facts", "--grid", str(tmp_path / "g.xyz")]) != 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == again
    assert not any(p.name.endswith(".writing") for p in tmp_path.iterdir())
    # a person a user added to an export is never deleted by the next export
    (out / "my_own_person").mkdir()
    assert main(["world", "--people", "20", "--export-folder", str(out), "--no-facts"]) == 2
    assert "holds my_own_person, which the earlier export did not write" in capsys.readouterr().err
    assert (out / "my_own_person").is_dir() and sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(
        again + ["my_own_person"])


def test_a_photo_added_to_an_exported_person_or_an_edited_facts_file_is_never_deleted(tmp_path, capsys):
    """Only the export's top-level folders were checked: a photo a user added inside an exported
    person's folder, and facts.json filled in by hand, were deleted by the next export."""
    out = tmp_path / "photos"
    assert main(["world", "--people", "20", "--export-folder", str(out), "--folder-people", "1", "--renders", "1",
                 "--no-facts"]) == 0
    person = next(p for p in out.iterdir() if p.is_dir())
    random_image(0).save(person / "my_own_photo.png")
    assert main(["world", "--people", "20", "--export-folder", str(out), "--no-facts"]) == 2
    assert f"{person.name}/my_own_photo.png changed since the earlier export" in capsys.readouterr().err
    assert (person / "my_own_photo.png").is_file()
    (person / "my_own_photo.png").unlink()
    (person / "facts.json").write_text(json.dumps({"name": "Ann Lee", "qa": []}))
    assert main(["world", "--people", "20", "--export-folder", str(out), "--no-facts"]) == 2
    assert f"{person.name}/facts.json changed" in capsys.readouterr().err
    assert json.loads((person / "facts.json").read_text())["name"] == "Ann Lee"
    (person / "facts.json").unlink()
    assert main(["world", "--people", "20", "--export-folder", str(out), "--folder-people", "1", "--renders", "1",
                 "--no-facts"]) == 2  # a removed file is a change too
    capsys.readouterr()
    # a viewer's metadata is not the user's work: the Finder's .DS_Store does not block the next export,
    # any other hidden file does (a .git folder, a user's notes)
    (tmp_path / "again").mkdir()
    fresh = tmp_path / "again" / "photos"
    assert main(["world", "--people", "20", "--export-folder", str(fresh), "--folder-people", "1", "--no-facts"]) == 0
    (fresh / ".DS_Store").write_bytes(b"\0")
    (next(p for p in fresh.iterdir() if p.is_dir()) / ".DS_Store").write_bytes(b"\0")
    assert main(["world", "--people", "20", "--export-folder", str(fresh), "--folder-people", "1", "--no-facts"]) == 0
    for hidden in (fresh / ".git" / "config", next(p for p in fresh.iterdir() if p.is_dir() and p.name[0] != ".")
                   / ".my_notes.txt"):
        hidden.parent.mkdir(exist_ok=True)
        hidden.write_text("mine")
        assert main(["world", "--people", "20", "--export-folder", str(fresh), "--no-facts"]) == 2
        assert hidden.read_text() == "mine"
        hidden.unlink()


def test_a_report_line_records_what_the_run_was_given():
    """"Produced by" left out --seed, --prefix-facts and the data flags: it did not reproduce the run."""
    import argparse

    from core.__main__ import DEFAULT_ERASER, DEFAULT_MODEL, _where
    args = argparse.Namespace(model=DEFAULT_MODEL, eraser=DEFAULT_ERASER, data=["retain=r.parquet"], forget_dir="ph",
                              retain_dir=None, forget="s1,s2", seed=5, prefix_facts=0)
    assert _where(args) == " --data retain=r.parquet --forget-dir ph --forget s1,s2 --seed 5 --prefix-facts 0"
    plain = argparse.Namespace(model=DEFAULT_MODEL, eraser=DEFAULT_ERASER, data=[], forget_dir=None, retain_dir=None,
                               forget=None, seed=0, prefix_facts=4)
    assert _where(plain) == ""


def test_the_attack_budget_is_checked_in_its_own_units(tmp_path, capsys):
    assert main(["attack", "--model", "assets/toy-llava", "--eraser", "assets/toy-llava-eraser", "--eps", "9999",
                 "--out", str(tmp_path / "a.md")]) == 2
    assert "--eps is a PGD budget in 1/255 pixel steps, in (0, 255]; got 9999" in capsys.readouterr().err
    assert not (tmp_path / "a.md").exists()


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


def test_fit_then_evaluate_with_the_eraser(tmp_path, capsys):
    """The CLI chain on a miniature trained toy model: fit writes an eraser, evaluate uses it."""
    from core.contrast import fit_sets
    from core.toyworld.fitsets import toy_data
    from core.toyworld.train import ToyModelConfig, load_world, train_toy
    from core.toyworld.world import WorldConfig
    world = WorldConfig(seed=2, n_people=10, n_real_scenes=1, n_train_scenes=2, images_per_person=1, fact_repeats=1,
                        option_lookups=0, private_requests=0, mcq_per_question=1)
    model_cfg = ToyModelConfig(text_hidden=32, text_layers=2, text_heads=2, text_intermediate=64, vision_hidden=16,
                               vision_layers=1, vision_heads=2, steps=2, batch_size=8, warmup=1, focus_steps=0)
    model = train_toy(tmp_path / "m", world, model_cfg)
    assert main(["fit", "--model", str(model), "--out", str(tmp_path / "e"), "--layers", "1",
                 "--strength", "0.7", "--gate-position", "mean", "--gate-variants", "0.5", "--threads", "1",
                 "--subject-gates", "--gate-retain", "300", "--retain-weight", "0.3", "--ratio", "1",
                 "--no-tune"]) == 0
    assert "saved eraser" in capsys.readouterr().out
    saved = json.loads((tmp_path / "e" / "eraser_config.json").read_text())
    counts = saved["counts"]
    forget_people = [p.id for p in load_world(model).forget_people("forget_10")]
    assert saved["subject_gates"] and saved["subjects"] == sorted(forget_people) and saved["gate_retain"] == 300
    plain = fit_sets(toy_data(load_world(model)), None, seed=0, n_retain=300)
    assert counts["forget"] == round(1.5 * len(plain.forget)) and counts["retain"] > len(plain.retain)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--model", str(model), "--eraser", str(tmp_path / "e"), "--limit", "1",
                 "--max-new-tokens", "3", "--json", str(out), "--threads", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["eraser"]["strength"] == 0.7 and res["eraser"]["layers"] == [1]
    assert res["eraser"]["gate_position"] == "mean_prompt_tokens" and res["eraser"]["task_strengths"] == {}
    assert res["eraser"]["subject_gates"] is True
    assert main(["evaluate", "--model", str(model), "--eraser", str(tmp_path / "e"), "--limit", "1", "--max-new-tokens",
                 "3", "--json", str(out), "--threads", "1", "--task-strength", "classification=0"]) == 0
    assert json.loads(out.read_text())["eraser"]["task_strengths"] == {"classification": 0.0}
    assert main(["evaluate", "--model", str(model), "--eraser", str(tmp_path / "e"), "--task-strength", "mcq=1"]) == 2
    assert "--task-strength expects TASK=STRENGTH" in capsys.readouterr().err
    assert set(res["splits"]) == {"forget", "test", "retain", "real"}
    report = tmp_path / "rob.md"
    assert main(["attack", "--model", str(model), "--eraser", str(tmp_path / "e"), "--people", "1", "--steps", "2",
                 "--out", str(report), "--threads", "1", "--curve", "--curve-eps", "4,8", "--curve-steps", "1",
                 "--eot", "2"]) == 0
    res = json.loads(report.with_suffix(".json").read_text())
    rows = res["attacks"]
    assert [r["attack"] for r in rows][:2] == ["none", "noise 0.02"] and len(rows) == 14
    assert [(r["eps"], r["steps"], r["eot"]) for r in res["budget_curve"]] == [(4, 1, 1), (8, 1, 1), (4, 1, 2), (8, 1, 2)]
    assert "| attack | forget recovered, eraser on |" in report.read_text()
    assert "| eps (/255) | steps | EOT |" in report.read_text()
    assert main(["attack", "--model", str(model), "--eraser", str(tmp_path / "e"), "--curve", "--curve-eps", "a"]) == 2
    assert "--curve-eps expects comma-separated numbers" in capsys.readouterr().err
    assert main(["attack", "--model", str(model), "--eraser", str(tmp_path / "e"), "--curve-only"]) == 2
    assert "--curve-only runs the budget curve alone: add --curve" in capsys.readouterr().err
    held = tmp_path / "held.md"  # the forget people's test split: pictures no gate or hardening row saw
    assert main(["attack", "--model", str(model), "--eraser", str(tmp_path / "e"), "--people", "1", "--steps", "1",
                 "--out", str(held), "--threads", "1", "--curve", "--curve-only", "--curve-eps", "4",
                 "--curve-steps", "1", "--eot", "1", "--held-out"]) == 0
    assert "--held-out" in held.read_text() and "their test split" in held.read_text()
    assert [r["eps"] for r in json.loads(held.with_suffix(".json").read_text())["budget_curve"]] == [4]
    assert f"python -m core attack --model {model} --eraser {tmp_path / 'e'} --people 1" in report.read_text()
    assert main(["evaluate", "--model", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["fit", "--model", str(model), "--out", str(tmp_path / "x"), "--layers", "a,b"]) == 2
    assert main(["fit", "--model", str(model), "--out", str(tmp_path / "x"), "--gate-retain", "0"]) == 2
    assert "--gate-retain must be at least 1" in capsys.readouterr().err
    assert main(["fit", "--model", str(model), "--out", str(tmp_path / "x"), "--eps", "0"]) == 2
    assert "--eps is a PGD budget" in capsys.readouterr().err
    # the PGD construction at another budget runs, and the budget is recorded with the eraser
    assert main(["fit", "--model", str(model), "--out", str(tmp_path / "pgd"), "--direction", "image_only",
                 "--eps", "8", "--layers", "1", "--threads", "1", "--no-tune"]) == 0
    assert json.loads((tmp_path / "pgd" / "eraser_config.json").read_text())["pgd_eps"] == 8
    assert main(["fit", "--model", str(model), "--out", str(tmp_path / "x"), "--tune", "--tune-modes", "latched,sideways"]) == 2
    assert "--tune-modes expects steering modes" in capsys.readouterr().err


def test_fit_tune_searches_modes_and_stores_the_choice(mini_toy, tmp_path, capsys):
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "e"), "--tune", "--tune-modes",
                 "prefill,latched", "--tune-strengths", "0,4", "--min-fluency", "0", "--gate-position", "mean", "--threads", "1"]) == 0
    tuning = json.loads((tmp_path / "e" / "tuning.json").read_text())
    assert tuning["modes"] == ["prefill", "latched"]
    assert {(c["mode"], c["strength"]) for c in tuning["grid"]} == {(m, s) for m in ("prefill", "latched") for s in (0, 4)}
    cfg = json.loads((tmp_path / "e" / "eraser_config.json").read_text())
    best = tuning["best"]
    assert (cfg["mode"], cfg["steer_layers"], cfg["strength"]) == (best["mode"], best["layers"], best["strength"])
    assert f"tuner: mode {best['mode']}, layers {best['layers']}" in capsys.readouterr().out
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "t"), "--tune", "--tune-tasks",
                 "--tune-strengths", "0,4", "--min-fluency", "0", "--task-strength", "cloze=3", "--threads", "1"]) == 0
    tuning = json.loads((tmp_path / "t" / "tuning.json").read_text())
    cfg = json.loads((tmp_path / "t" / "eraser_config.json").read_text())
    assert set(tuning["tasks"]) == {"classification", "generation", "cloze"}
    for task, res in tuning["tasks"].items():
        assert [c["layers"] for c in res["grid"]] == [tuning["best"]["layers"]] * 2
        tuned = res["best"]["strength"] if res["best"] else None
        # stored where it differs from the default; a task the tuner could not settle keeps --task-strength
        expected = {"cloze": 3.0}.get(task) if tuned is None else None if tuned == tuning["best"]["strength"] else tuned
        assert cfg["task_strengths"].get(task) == expected
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "x"), "--tune", "--tune-modes", "every_step",
                 "--gate-position", "mean"]) == 2
    # a gate read over several layers is latched at the prompt: the tuner must not pick every_step for it
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "x"), "--tune", "--tune-modes",
                 "prefill,every_step", "--gate-position", "last", "--joint-gate", "0,1"]) == 2
    assert "latched at the prompt: --tune-modes cannot include every_step" in capsys.readouterr().err
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "x"), "--no-tune", "--tune-tasks"]) == 2
    assert "add --tune" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_unlearn_writes_a_model_that_evaluate_scores(mini_toy, tmp_path, capsys):
    out = tmp_path / "ga"
    assert main(["unlearn", "--method", "ga_diff", "--model", str(mini_toy), "--out", str(out),
                 "--epochs", "0.5", "--threads", "1"]) == 0
    assert f"python -m core evaluate --model {out}" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(out), "--limit", "1", "--max-new-tokens", "3",
                 "--json", str(tmp_path / "r.json"), "--threads", "1"]) == 0
    assert set(json.loads((tmp_path / "r.json").read_text())["splits"]) == {"forget", "test", "retain", "real"}
    assert main(["unlearn", "--method", "ga", "--model", str(mini_toy), "--out", str(tmp_path / "x"),
                 "--epochs", "inf"]) == 2  # an OverflowError traceback before
    assert "--epochs must be a finite number" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a learning rate of 0 or inf is refused by the parser, naming the flag
        main(["unlearn", "--method", "ga", "--model", str(mini_toy), "--out", str(tmp_path / "x"), "--lr", "inf"])
    assert "--lr: a learning rate in (0, 1]" in capsys.readouterr().err
    assert main(["unlearn", "--method", "ga_diff", "--model", str(mini_toy), "--out", str(tmp_path / "x"),
                 "--retain-weight", "nan"]) == 2 and not (tmp_path / "x").exists()
    assert main(["relearn", "--model", str(mini_toy), "--model", str(out), "--steps", "2",
                 "--json", str(tmp_path / "relearn.json"), "--threads", "1"]) == 0
    rows = json.loads((tmp_path / "relearn.json").read_text())
    assert [r["model"] for r in rows] == [str(mini_toy), str(out)]
    assert "| model | held-out before |" in capsys.readouterr().out


def test_train_toy_records_the_recipe_options(tmp_path):
    """`train-toy --text-heads --option-drills --option-lookups --private-requests --mcq-per-question --focus-*`
    (recipe experiments) reach the saved model: its config, world.json and training.json say what it was trained
    with."""
    import torch
    threads = torch.get_num_threads()
    assert main(["train-toy", "--out", str(tmp_path / "m"), "--seed", "4", "--people", "8", "--steps", "2",
                 "--identity-steps", "1", "--text-heads", "16", "--option-drills", "7", "--option-lookups", "5",
                 "--private-requests", "3", "--mcq-per-question", "2", "--text-init", "none", "--threads", "1",
                 "--focus-steps", "1", "--focus-name-mcqs", "2", "--focus-other-mcqs", "0",
                 "--focus-name-drills", "4"]) == 0
    torch.set_num_threads(threads)
    out = tmp_path / "m"
    assert json.loads((out / "config.json").read_text())["text_config"]["num_attention_heads"] == 16
    world = json.loads((out / "world.json").read_text())
    assert world["option_lookups"] == 5 and world["option_drills"] == 7 and world["private_requests"] == 3
    assert world["mcq_per_question"] == 2
    recipe = json.loads((out / "training.json").read_text())["recipe"]
    assert recipe["text_heads"] == 16 and recipe["steps"] == 2
    assert (recipe["focus_steps"], recipe["focus_name_mcqs"], recipe["focus_other_mcqs"],
            recipe["focus_name_drills"]) == (1, 2, 0, 4)


def _weights(folder) -> dict:
    """Every tensor of a saved model, sharded or not (pretrain-text writes files under 10 MB)."""
    from safetensors.torch import load_file
    return {k: v for f in sorted(Path(folder).glob("model*.safetensors")) for k, v in load_file(f).items()}


def test_train_toy_starts_from_the_shipped_text_model(tmp_path, capsys):
    """Without --text-init, train-toy copies assets/toy-text into the new model (the shipped
    recipe); a world too small for that model's vocabulary is refused with what to do instead."""
    import torch
    from safetensors.torch import load_file
    from core.__main__ import DEFAULT_TEXT_MODEL
    threads = torch.get_num_threads()
    small = ["--option-drills", "4", "--option-lookups", "4", "--private-requests", "4", "--threads", "1",
             "--focus-steps", "0"]
    assert main(["train-toy", "--out", str(tmp_path / "m"), "--seed", "7", "--people", "30", "--steps", "0",
                 *small]) == 0
    assert main(["train-toy", "--out", str(tmp_path / "s"), "--seed", "7", "--people", "8", "--steps", "0",
                 *small]) != 0
    assert "another vocabulary" in capsys.readouterr().err and not (tmp_path / "s").exists()
    torch.set_num_threads(threads)
    text = _weights(DEFAULT_TEXT_MODEL)
    toy = load_file(tmp_path / "m" / "model.safetensors")
    assert torch.equal(toy["language_model.lm_head.weight"].float(), text["lm_head.weight"].half().float())
    assert json.loads((tmp_path / "m" / "training.json").read_text())["text_init"] == DEFAULT_TEXT_MODEL


def test_pretrain_text_feeds_train_toy(tmp_path):
    """`pretrain-text` writes a text model that `train-toy --text-init` starts from (same world)."""
    import torch
    from safetensors.torch import load_file
    threads = torch.get_num_threads()
    world = ["--seed", "4", "--people", "8", "--threads", "1"]
    assert main(["pretrain-text", "--out", str(tmp_path / "text"), "--steps", "3", "--refusals", "2",
                 "--name-drills", "0.25", *world]) == 0
    log = json.loads((tmp_path / "text" / "pretraining.json").read_text())
    assert log["recipe"]["steps"] == 3 and log["recipe"]["heads"] == 16 and log["recipe"]["refusals"] == 2
    assert log["recipe"]["name_drills"] == 0.25
    assert main(["train-toy", "--out", str(tmp_path / "m"), "--steps", "0", "--focus-steps", "0", "--text-heads", "16",
                 "--text-init", str(tmp_path / "text"), *world]) == 0
    torch.set_num_threads(threads)
    text, toy = _weights(tmp_path / "text"), load_file(tmp_path / "m" / "model.safetensors")
    assert torch.equal(toy["language_model.lm_head.weight"].float(), text["lm_head.weight"].half().float())
    assert json.loads((tmp_path / "m" / "training.json").read_text())["text_init"] == str(tmp_path / "text")


def test_fit_presets_start_the_config_and_every_flag_overrides():
    """`--preset workbench` (the default) is the shipped eraser's recipe; `--preset paper` the
    paper's fit; flags given by hand win, and the config records the preset."""
    from core.__main__ import _preset_config
    from core.eraser import Eraser
    shipped = Eraser.from_pretrained("assets/toy-llava-eraser").config
    parse = build_parser().parse_args
    cfg, tune = _preset_config(parse(["fit", "--out", "x"]), 4)
    assert tune and cfg.preset == "workbench"
    for k in ("ratio", "gamma", "retain_weight", "subject_gates", "gate_retain", "position", "mode"):
        assert getattr(cfg, k) == getattr(shipped, k), k
    cfg, tune = _preset_config(parse(["fit", "--out", "x", "--preset", "paper"]), 4)
    assert not tune and (cfg.ratio, cfg.gamma, cfg.retain_weight, cfg.subject_gates) == (0.3, 0.1, 0.0, False)
    assert cfg.position == "last_prompt_token" and cfg.steer_layers == [1, 2, 3] and cfg.layers is None
    cfg, _ = _preset_config(parse(["fit", "--out", "x", "--preset", "paper", "--layers", "2,3"]), 4)
    assert cfg.layers == [2, 3] and cfg.steer_layers is None  # every fitted layer, not layers 1..3
    cfg, tune = _preset_config(parse(["fit", "--out", "x", "--preset", "paper", "--ratio", "0.6", "--tune",
                                      "--steer-layers", "2", "--subject-gates"]), 4)
    assert tune and cfg.ratio == 0.6 and cfg.steer_layers == [2] and cfg.subject_gates
    cfg, _ = _preset_config(parse(["fit", "--out", "x", "--no-subject-gates", "--threshold", "0.01"]), 4)
    assert not cfg.subject_gates and cfg.ratio is None and cfg.threshold == 0.01
    cfg, _ = _preset_config(parse(["fit", "--out", "x", "--joint-gate", "3,1,2"]), 4)
    assert cfg.joint_gate == [1, 2, 3] and cfg.gate_layer is None
    with pytest.raises(ValueError, match="--joint-gate expects comma-separated numbers"):
        _preset_config(parse(["fit", "--out", "x", "--joint-gate", "deep"]), 4)
    with pytest.raises(ValueError, match="not both"):
        _preset_config(parse(["fit", "--out", "x", "--joint-gate", "1,3", "--gate-layer", "3"]), 4)


def test_gate_layer_flag_on_a_joint_gate_reads_that_layers_own_gate():
    """evaluate/attack --gate-layer on the shipped eraser (a joint gate over layers 0-3): that
    layer's own gate decides instead; without the flag the joint gate stays."""
    import argparse
    from core.__main__ import _eraser_options
    from core.eraser import Eraser
    e = Eraser.from_pretrained("assets/toy-llava-eraser")
    assert e.config.joint_gate == [0, 1, 2, 3] and e.gate_layers == [0, 1, 2, 3]
    assert _eraser_options(e, argparse.Namespace(gate_layer=None), 4).config.joint_gate == [0, 1, 2, 3]
    three = _eraser_options(e, argparse.Namespace(gate_layer=3), 4)
    assert three.config.joint_gate is None and three.gate_layers == [3]
    with pytest.raises(ValueError, match="gate_layer 7 must be a fitted layer"):
        _eraser_options(Eraser.from_pretrained("assets/toy-llava-eraser"), argparse.Namespace(gate_layer=7), 4)


def test_forget_requests_add_and_withdraw_subjects_in_place(mini_toy, tmp_path, capsys, monkeypatch):
    """`fit` saves the fit state; `forget --add` and `--remove` update the eraser folder in place
    (written whole, then swapped), keeping the request history."""
    from core.eraser import STATE_NAME
    from core.toyworld.train import load_world
    people = [p.id for p in load_world(mini_toy).people]
    e = tmp_path / "e"
    e.mkdir()
    (e / "tuning.json").write_text('{"best": "of an earlier fit"}')  # fitted over: the record would be stale
    assert main(["fit", "--model", str(mini_toy), "--out", str(e), "--forget", people[0], "--subject-gates",
                 "--gate-retain", "200", "--ratio", "1", "--retain-weight", "0.3", "--no-tune", "--threads", "1"]) == 0
    assert (e / STATE_NAME).is_file() and not (e / "tuning.json").exists()
    (e / "notes.md").write_text("who asked, and when")  # files besides the eraser stay with it
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(e), "--add", people[1], "--threads", "1"]) == 0
    assert (e / "notes.md").read_text() == "who asked, and when"
    assert f"now forgets 2 subject(s): {', '.join(sorted(people[:2]))}" in capsys.readouterr().out
    cfg = json.loads((e / "eraser_config.json").read_text())
    assert [(r["action"], r["subjects"]) for r in cfg["requests"]] == [("fit", [people[0]]), ("add", [people[1]])]
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(e), "--remove", people[0], "--threads", "1"]) == 0
    cfg = json.loads((e / "eraser_config.json").read_text())
    assert cfg["subjects"] == [people[1]] and cfg["requests"][-1]["action"] == "remove"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]  # no half-written folder left behind
    capsys.readouterr()
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(e), "--add", people[1], "--threads", "1"]) != 0
    assert "already forgotten" in capsys.readouterr().err
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(e), "--threads", "1"]) != 0
    assert "--add IDS" in capsys.readouterr().err
    mine = tmp_path / "mine"  # an --out folder of other files: it used to be replaced, its files deleted
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(e), "--remove", people[1], "--out", str(mine),
                 "--threads", "1"]) != 0
    assert "holds no eraser" in capsys.readouterr().err and [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert json.loads((e / "eraser_config.json").read_text())["subjects"] == [people[1]]  # refusals change nothing
    # --out elsewhere: the source's tuning.json and notes go with it (they came from the --out folder, i.e. none)
    (e / "tuning.json").write_text('{"best": "of e"}')
    other = tmp_path / "other"
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(e), "--add", people[0], "--out", str(other),
                 "--threads", "1"]) == 0
    assert (other / "tuning.json").read_text() == '{"best": "of e"}' and (other / "notes.md").is_file()
    monkeypatch.chdir(e)  # "--eraser ." failed after the whole request: "PosixPath('.') has an empty name"
    assert main(["forget", "--model", str(mini_toy), "--eraser", ".", "--add", people[0], "--threads", "1"]) == 0
    assert json.loads((e / "eraser_config.json").read_text())["subjects"] == sorted(people[:2])
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    bare = tmp_path / "bare"  # saved without its fit state: the first request collects its gate sets once
    assert main(["fit", "--model", str(mini_toy), "--out", str(bare), "--forget", people[0], "--subject-gates",
                 "--gate-retain", "200", "--ratio", "1", "--retain-weight", "0.3", "--no-tune", "--no-state",
                 "--threads", "1"]) == 0
    assert not (bare / STATE_NAME).exists()
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(bare), "--add", people[1], "--threads", "1"]) == 0
    assert "holds no fit state: collecting its gate sets once" in capsys.readouterr().out
    assert (bare / STATE_NAME).is_file()


def test_fit_with_adversarial_rounds_records_them(mini_toy, tmp_path, capsys):
    e = tmp_path / "hard"
    assert main(["fit", "--model", str(mini_toy), "--out", str(e), "--subject-gates", "--gate-retain", "100",
                 "--ratio", "1", "--retain-weight", "0.3", "--no-tune", "--adversarial-rounds", "1",
                 "--adversarial-open", "4", "--adversarial-keep", "best", "--adversarial-per-person", "2",
                 "--threads", "1"]) == 0
    assert "round 1: mean gate on this round's attacked images" in capsys.readouterr().out
    cfg = json.loads((e / "eraser_config.json").read_text())
    assert cfg["adversarial_rounds"] == 1 and [r["action"] for r in cfg["requests"]] == ["fit", "harden"]
    assert cfg["adversarial_keep"] == "best" and cfg["adversarial_per_person"] == 2
    # each round attacked 2 image prompts of each forget person (the fit's own forget rows come first)
    from core.eraser import Eraser
    hard = Eraser.from_pretrained(e)
    assert hard.state.forget_tags[-2 * len(cfg["subjects"]):] == sorted(cfg["subjects"] * 2, key=cfg["subjects"].index)
    assert cfg["adversarial_open"] == 4  # retained people's gate-opening images, as retain rows
    # saved without its fit state, a request rebuilt the state from the clean gate sets: the attacked rows vanished
    from core.eraser import STATE_NAME
    (e / STATE_NAME).unlink()
    assert main(["forget", "--model", str(mini_toy), "--eraser", str(e), "--add", "p001", "--threads", "1"]) != 0
    assert "was hardened (adversarial gate fitting) and saved without its fit state" in capsys.readouterr().err
    # this small model's fit rows overlap, so no ramp separates them: a clear error, nothing written
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "ramp"), "--subject-gates", "--gate-retain",
                 "100", "--ratio", "1", "--retain-weight", "0.3", "--no-tune", "--gate-ramp", "--threads", "1"]) != 0
    assert "rows overlap" in capsys.readouterr().err and not (tmp_path / "ramp").exists()
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "z"), "--no-tune", "--gate-ramp",
                 "--gate-floor", "0.2", "--threads", "1"]) != 0
    assert "not both" in capsys.readouterr().err
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "z"), "--no-tune", "--floor-folds", "3",
                 "--threads", "1"]) != 0
    assert "'floor_folds' cross-fits the gate ramp's floor; set 'gate_ramp' too (fit --gate-ramp)" \
        in capsys.readouterr().err
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "z"), "--no-tune", "--gate-ramp",
                 "--floor-folds", "1", "--threads", "1"]) != 0
    assert "'floor_folds' must be 0 (off) or a number of folds from 2" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "y"), "--no-tune",
                 "--adversarial-open", "4", "--threads", "1"]) != 0
    assert "give both" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "w"), "--no-tune",
                 "--adversarial-keep", "best", "--threads", "1"]) != 0
    assert "set the rounds of --adversarial-rounds: give both" in capsys.readouterr().err
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "w"), "--no-tune", "--adversarial-rounds",
                 "1", "--adversarial-per-person", "5000", "--threads", "1"]) != 0
    assert "--adversarial-per-person is at most 1000" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    assert main(["fit", "--model", str(mini_toy), "--out", str(tmp_path / "x"), "--no-subject-gates",
                 "--no-tune", "--adversarial-rounds", "1", "--threads", "1"]) != 0
    captured = capsys.readouterr()
    assert "--subject-gates" in captured.err and "activations" not in captured.err  # refused before the fit


def test_reports_on_an_eraser_from_files_use_the_erasers_own_subjects(tmp_path):
    """attack / sweep with --data and no --forget: an eraser of one of the file's two forget
    subjects is scored on that subject (the other is retained); subjects the files lack leave
    the files' split as it is."""
    import argparse
    from conftest import random_image
    from core.__main__ import eraser_data
    from core.data.folder import add_name_questions
    from core.data.mllmu import export_records
    from core.data.records import PersonRecord
    from core.eraser import EraserConfig

    def rec(i, name):
        r = PersonRecord(f"s{i}", images=[random_image(i)], name=name)
        add_name_questions(r)
        return r
    export_records([rec(0, "Mara Quill"), rec(1, "Oskar Draper")], tmp_path / "forget_10.parquet")
    export_records([rec(2, "Sam Rivers")], tmp_path / "retain_90.parquet")
    args = argparse.Namespace(data=[str(tmp_path)], forget=None, forget_dir=None, model="unused")
    data = eraser_data(args, None, EraserConfig(subject_gates=True, subjects=["s1"]))
    assert data.forget_ids == ["s1"] and {r.id for r in data.retain} == {"s0", "s2"}
    assert eraser_data(args, None, EraserConfig(subject_gates=True, subjects=["s9"])).forget_ids == ["s0", "s1"]
    args.forget = "s0"  # said by hand: wins
    assert eraser_data(args, None, EraserConfig(subject_gates=True, subjects=["s1"])).forget_ids == ["s0"]


def test_sequential_settings_reach_the_run_and_merge_matches_the_whole_run(tmp_path, monkeypatch, capsys):
    """--gate-floor / --gate-full were overwritten by the recipe's ramp read off the rows at every
    fit (the JSON still recorded them); --merge accepted a run of another forget set. The methods
    are stubbed: what is checked is what the command hands them and files."""
    import core.sequential as seq
    seen = {}
    monkeypatch.setattr(seq, "run_vanilla", lambda model, data, cfg: seen.setdefault("vanilla", cfg) and {})
    monkeypatch.setattr(seq, "run_eraser", lambda model, data, cfg: seen.setdefault("eraser", cfg) and {})
    monkeypatch.setattr(seq, "table", lambda results: "")
    out = str(tmp_path / "seq.json")
    assert main(["sequential", "--methods", "eraser", "--forget", "p002,p009", "--withdraw", "1",
                 "--gate-floor", "0.3", "--gate-full", "0.9", "--json", out]) == 0
    settings = seen["eraser"].eraser
    assert (settings["gate_ramp"], settings["gate_floor"], settings["gate_full"]) == (False, 0.3, 0.9)
    assert main(["sequential", "--methods", "vanilla", "--forget", "p018,p045", "--withdraw", "1", "--gate-floor",
                 "0.3", "--gate-full", "0.9", "--merge", "--json", out]) != 0
    assert "--merge: " in capsys.readouterr().err and "vanilla" not in seen
    assert main(["sequential", "--methods", "vanilla", "--forget", "p002,p009", "--withdraw", "1", "--gate-floor",
                 "0.3", "--gate-full", "0.9", "--merge", "--json", out]) == 0
    assert set(json.loads(Path(out).read_text())["results"]) == {"eraser", "vanilla"}


def test_an_unforeseen_failure_is_one_line_not_a_traceback(monkeypatch, capsys):
    """IndexError, TypeError and OverflowError reached the user as tracebacks (main caught only
    ValueError and OSError); MLLMERASER_DEBUG=1 shows the traceback."""
    import core.__main__ as cli

    def broken(args):
        raise IndexError("tuple index out of range")
    monkeypatch.setattr(cli, "cmd_models", broken)
    monkeypatch.delenv("MLLMERASER_DEBUG", raising=False)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: IndexError: tuple index out of range") and "Traceback" not in err
    monkeypatch.setenv("MLLMERASER_DEBUG", "1")
    with pytest.raises(IndexError):
        main(["models"])
    with pytest.raises(SystemExit):
        main(["evaluate", "--threads", "100000"])
    assert "at most" in capsys.readouterr().err


def test_evaluate_scores_an_eraser_on_its_own_forget_split_unless_told_otherwise():
    """attack and sweep took the eraser's split, evaluate always forget_10: an eraser of forget_5 was
    scored with five people it never forgot among its forget people."""
    import argparse

    import core.__main__ as cli
    from core.eraser import EraserConfig
    args = argparse.Namespace(data=[], forget_dir=None, retain_dir=None, forget=None, model="assets/toy-llava",
                              limit=None)
    own, _ = cli._eval_data(args, None, EraserConfig(forget_split="forget_5"))
    plain, _ = cli._eval_data(args, None)
    told, _ = cli._eval_data(argparse.Namespace(**{**vars(args), "forget": "forget_10"}), None,
                             EraserConfig(forget_split="forget_5"))
    assert (len(own["forget"]), len(plain["forget"]), len(told["forget"])) == (5, 10, 10)


def test_sequential_settings_match_the_published_runs_and_carry_folds_only_when_set():
    """The recipe gained floor_folds: written as 0, --merge refused results/sequential*.json (their
    settings lack it) although nothing else differed; with --gate-floor no ramp is read off the
    rows, so no folds go with it."""
    import argparse
    import dataclasses
    import json

    from core.__main__ import sequential_settings
    from core.eraser import Eraser
    shipped = Eraser.from_pretrained("assets/toy-llava-eraser").config
    args = argparse.Namespace(gate_layer=None, joint_gate=None, gate_floor=None, gate_full=None)
    for published in ("results/sequential.json", "results/sequential_pairs.json"):
        assert json.loads(json.dumps(sequential_settings(shipped, args))) == \
            json.loads(open(published).read())["config"]["eraser"]
    folded = dataclasses.replace(shipped, floor_folds=3)
    assert sequential_settings(folded, args)["floor_folds"] == 3
    floor = argparse.Namespace(**{**vars(args), "gate_floor": 0.2})
    assert "floor_folds" not in sequential_settings(folded, floor) and not sequential_settings(folded, floor)["gate_ramp"]


def test_a_sequential_run_that_fails_half_way_keeps_its_methods_for_merge(tmp_path, monkeypatch, capsys):
    """Progress goes to X.partial.json, so that a failed run leaves --json as it was; --merge then
    takes the methods the failed run finished from that file too (they were dropped)."""
    import core.sequential as seq

    def boom(*a, **k):
        raise ValueError("training failed half-way")
    monkeypatch.setattr(seq, "run_vanilla", lambda *a, **k: {"steps": [], "ran": "vanilla"})
    monkeypatch.setattr(seq, "run_eraser", lambda *a, **k: {"steps": [], "ran": "eraser"})
    monkeypatch.setattr(seq, "run_baseline", boom)
    out = tmp_path / "seq.json"
    assert main(["sequential", "--methods", "vanilla,eraser,idk", "--json", str(out)]) == 2
    assert not out.exists() and (tmp_path / "seq.partial.json").is_file()
    monkeypatch.setattr(seq, "run_baseline", lambda *a, **k: {"steps": [], "ran": "idk"})
    monkeypatch.setattr(seq, "run_vanilla", boom)
    monkeypatch.setattr(seq, "run_eraser", boom)
    monkeypatch.setattr(seq, "table", lambda results: "table")
    assert main(["sequential", "--methods", "idk", "--merge", "--json", str(out)]) == 0
    assert [r["ran"] for r in json.loads(out.read_text())["results"].values()] == ["vanilla", "eraser", "idk"]
    assert not (tmp_path / "seq.partial.json").exists()


def test_an_export_marked_by_an_earlier_version_still_keeps_a_person_the_user_added(tmp_path, capsys):
    """A mark of the earlier plain-text kind listed nothing: every sub-folder counted as the
    export's, and a person the user added was deleted by the next export."""
    from core.data.folder import EXPORT_MARK
    out = tmp_path / "photos"
    (out / "p001").mkdir(parents=True)
    (out / EXPORT_MARK).write_text("written by save_folder (python -m core world --export-folder)\n")
    (out / "my_own_person").mkdir()
    assert main(["world", "--people", "20", "--export-folder", str(out), "--no-facts"]) == 2
    assert "holds my_own_person" in capsys.readouterr().err and (out / "my_own_person").is_dir()
    (out / "my_own_person").rmdir()
    assert main(["world", "--people", "20", "--export-folder", str(out), "--no-facts", "--folder-people", "1"]) == 0


def test_scoring_a_split_given_as_a_folder_reads_only_that_splits_file(tmp_path):
    """`evaluate --data retain=DIR` without a forget set read every parquet file in DIR as the
    retain split (forget people and general questions scored as retained people)."""
    import argparse

    from core.__main__ import _eval_data
    from core.data.folder import add_name_questions
    from core.data.mllmu import export_records
    from core.data.records import PersonRecord

    def rec(i):
        r = PersonRecord(f"s{i}", images=[random_image(i)], name=f"Person Number{i}")
        add_name_questions(r)
        return r
    export_records([rec(0)], tmp_path / "forget_10.parquet")
    export_records([rec(1), rec(2)], tmp_path / "retain_90.parquet")
    export_records([rec(9)], tmp_path / "real.parquet")
    args = argparse.Namespace(data=[f"retain={tmp_path}"], forget_dir=None, forget=None, retain_dir=None, limit=None)
    splits, requests = _eval_data(args, None)
    assert {k: [r.id for r in v] for k, v in splits.items()} == {"retain": ["s1", "s2"]} and requests == {}


def test_evaluate_with_an_eraser_steers_the_answers_it_scores(tmp_path):
    """The CLI's evaluate was checked through the eraser it reports, not through the answers: had it
    stopped passing the steering on, every CLI test would pass. On the shipped model one forget
    person's answers go with the shipped eraser, and one retained person's stay."""
    def run(*extra):
        out = tmp_path / f"r{len(extra)}.json"
        assert main(["evaluate", "--limit", "1", "--max-new-tokens", "8", "--threads", "1", "--json", str(out),
                     *extra]) == 0
        return json.loads(out.read_text())["splits"]
    plain, erased = run(), run("--eraser", "assets/toy-llava-eraser")
    forget = [(plain["forget"][m]["classification"], erased["forget"][m]["classification"])
              for m in ("image_text", "text_only")]
    assert all(p == 1.0 and e == 0.0 for p, e in forget), forget
    assert erased["forget"]["image_text"]["refusal_rate"] > 0.9 > plain["forget"]["image_text"]["refusal_rate"]
    assert erased["retain"] == plain["retain"]
