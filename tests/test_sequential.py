"""The sequential-requests protocol on the miniature toy model: its mechanics and its report
(the shipped model's figures come from `python -m core sequential`)."""
import pytest

from core.sequential import SequentialConfig, figure, final_table, requests_of, run_baseline, run_eraser, run_vanilla, table


def test_requests_are_consecutive_groups():
    assert requests_of(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]


@pytest.fixture(scope="module")
def mini_runs(mini_toy):
    from core.toyworld.fitsets import toy_data
    from core.toyworld.train import load_world
    world = load_world(mini_toy)
    data = toy_data(world, [p.id for p in world.people[:2]])
    cfg = SequentialConfig(limit=1, withdraw=1, max_new_tokens=4,
                           eraser=dict(ratio=1.0, gamma=10.0, retain_weight=0.3, subject_gates=True, gate_retain=100,
                                       position="mean_prompt_tokens", steer_layers=[1], strength=2.0))
    logs = []
    return data, {"vanilla": run_vanilla(mini_toy, data, cfg, logs.append),
                  "eraser": run_eraser(mini_toy, data, cfg, logs.append),
                  "idk": run_baseline("idk", mini_toy, data, cfg, logs.append)}, logs


def test_every_request_is_evaluated_and_the_eraser_withdraws(mini_runs):
    data, results, logs = mini_runs
    ids = data.forget_ids
    for name, res in results.items():
        assert [s["people"] for s in res["steps"]] == [1, 2]
        assert "pending classification" in res["steps"][0] and "pending classification" not in res["steps"][1]
        assert all(0 <= s["retain cloze"] <= 1 and (s["update_s"] > 0) == (name != "vanilla") for s in res["steps"])
    eraser = results["eraser"]
    assert [r["action"] for r in eraser["requests"]] == ["fit", "add", "remove"]
    assert eraser["withdrawal"]["withdrawn"] == ids[1:] and 0 <= eraser["withdrawal"]["withdrawn_equal_to_vanilla"] <= 1
    assert len(eraser["direction_cosine_first_vs_all"]) == 2
    # after the last request: the batch fit of the same prompts (gates, direction)
    assert eraser["final_vs_batch"]["gate"] < 1e-5 and eraser["final_vs_batch"]["direction"] < 1e-5
    assert any(line.startswith("idk, request 2") for line in logs)


def test_after_the_last_request_every_method_gets_the_batch_evaluation(mini_runs, mini_toy):
    """`final`: the full evaluation of the last state (every split, both modalities), the same
    numbers `evaluate` gives; the table states each method's lowest utility share of vanilla."""
    from core.evaluation import EvalConfig, evaluate
    from core.models.load import load_adapter
    data, results, _ = mini_runs
    for res in results.values():
        f = res["final"]
        assert set(f) == set(data.splits()) and all(f[s]["image_text"]["n"] > 0 for s in f)
    plain = evaluate(load_adapter(mini_toy), data.splits(), {}, EvalConfig()).to_json()["splits"]
    assert results["vanilla"]["final"] == plain
    text = final_table(results)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()[2:]}
    assert set(rows) == {"vanilla", "eraser", "idk"} and rows["vanilla"].endswith("| - |")
    f, v = results["eraser"]["final"], plain
    share = min(f[s][m][k] / v[s][m][k] for s in ("retain", "real") for m in ("image_text", "text_only")
                for k in ("classification", "cloze", "generation_rougeL") if v.get(s, {}).get(m, {}).get(k))
    assert f"| {100 * share:.1f} (" in rows["eraser"]


def test_report_table_and_figure(mini_runs, tmp_path):
    _, results, _ = mini_runs
    text = table(results)
    assert "| eraser | 1 (1 people)" in text and "| idk | 2 (2 people)" in text
    png = figure(results, tmp_path / "seq.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_a_baseline_request_does_not_retain_the_people_forgotten_before(mini_toy, monkeypatch):
    """Each request fine-tunes on its people with everyone else as retain targets, except the people
    of earlier requests: the retain loss taught them again (IdkNLL's forgotten MCQ rose to 42.9% over
    ten requests with it)."""
    import shutil

    import core.baselines
    from core.toyworld.fitsets import toy_data
    from core.toyworld.train import load_world
    world = load_world(mini_toy)
    data = toy_data(world, [p.id for p in world.people[:3]])
    seen = []

    def fake_unlearn(model_dir, out, picked, cfg):  # records what each request trains on; the model is copied
        seen.append((picked.forget_ids, cfg.not_retained))
        shutil.copytree(model_dir, out)
        return out
    monkeypatch.setattr(core.baselines, "unlearn", fake_unlearn)
    run_baseline("ga_diff", mini_toy, data, SequentialConfig(limit=1, max_new_tokens=2, final=False), lambda _: None)
    ids = data.forget_ids
    assert seen == [([ids[0]], ()), ([ids[1]], (ids[0],)), ([ids[2]], (ids[0], ids[1]))]


@pytest.mark.parametrize("kw", [dict(withdraw=-1), dict(limit=-1), dict(limit=0), dict(group=0), dict(max_new_tokens=0)])
def test_a_sequential_config_that_would_slice_silently_is_refused(kw):
    """withdraw -1 withdrew everyone but the first person (done[1:]), limit -1 dropped the last row."""
    with pytest.raises(ValueError, match=f"SequentialConfig.{next(iter(kw))} must be at least"):
        SequentialConfig(**kw)
