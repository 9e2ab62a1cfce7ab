"""App handlers, called directly: input validation and the original-vs-steered comparison."""
import io
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from app.limits import IMAGE_PIXELS as MAX_PIXELS
from app.workbench import UserError, Workbench, check_question, check_strength, read_image
from conftest import random_image, tiny_adapter
from core.eraser import Eraser, EraserConfig
from core.steering import hook_count


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_read_image_accepts_images_and_refuses_bad_files(tmp_path):
    ok = read_image(_png(random_image(0)))
    assert ok.mode == "RGB" and ok.size == (48, 48)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a readable image"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(UserError, match="not a readable image"):
        read_image(_png(random_image(0))[:60])  # truncated PNG
    with pytest.raises(UserError, match="No image"):
        read_image(None)
    big = Image.new("L", (4097, 4097))
    with pytest.raises(UserError, match="megapixels"):
        read_image(big)
    assert 4097 * 4097 > MAX_PIXELS


def test_question_and_strength_validation():
    assert check_question("  who?  ") == "who?"
    with pytest.raises(UserError, match="empty"):
        check_question("   ")
    with pytest.raises(UserError, match="characters"):
        check_question("x" * 5000)
    # "<image>" typed in the box became an image token deep inside: a plain message before anything runs
    with pytest.raises(UserError, match=r"^The text 'who is <image> here' holds '<image>', a special token"):
        check_question("who is <image> here", tiny_adapter("llava"))
    assert check_strength("0.5") == 0.5
    for bad in ("abc", None, 1e9, float("nan")):
        with pytest.raises(UserError):
            check_strength(bad)


def _workbench():
    a = tiny_adapter("llava")
    g = torch.Generator().manual_seed(0)
    L, d = a.num_layers, a.hidden_size
    eraser = Eraser(torch.randn(L, d, generator=g, dtype=torch.float64) * 3,
                    torch.randn(L, d, generator=g, dtype=torch.float64), EraserConfig(strength=1.0))
    return Workbench(a, eraser)


def test_compare_strength_zero_equals_original_and_leaves_no_hooks():
    wb = _workbench()
    res = wb.compare(random_image(0), "what is this ?", 0.0, None)
    assert res.original == res.steered
    assert sorted(res.gates) == [0, 1]
    moved = wb.compare(random_image(0), "what is this ?", 3.0, [0, 1])
    assert moved.original == res.original
    assert hook_count(wb.adapter) == 0


def test_compare_reads_the_gate_where_asked():
    wb = _workbench()
    own = wb.compare(random_image(0), "what is this ?", 1.0, [0])
    deep = wb.compare(random_image(0), "what is this ?", 1.0, [0], gate_layer=1)
    unsteered = wb.compare(random_image(0), "what is this ?", 0.0, [0])
    assert deep.gates[0] == pytest.approx(unsteered.gates[1], abs=1e-4)  # layer 1's gate, before any steering
    assert deep.gates[0] != pytest.approx(own.gates[0], abs=1e-3)
    with pytest.raises(UserError, match="latched at the prompt"):
        wb.compare(random_image(0), "what is this ?", 1.0, [0], mode="every_step", gate_layer=1)
    with pytest.raises(UserError, match="no fitted gate"):
        wb.compare(random_image(0), "what is this ?", 1.0, [0], gate_layer=7)
    assert hook_count(wb.adapter) == 0


def test_compare_with_a_gate_floor_above_the_gate_answers_as_the_model_does():
    """The playground's gate floor: above this input's gates nothing is steered (the steered
    answer is the original); at 0 it steers as before; out of range it is a clear error."""
    wb = _workbench()
    img, q = random_image(0), "what is this ?"
    first = list(wb.compare(img, q, 3.0, [0, 1]).gates.values()) + list(wb.compare(img, q, 0.0, [0, 1]).gates.values())
    c = 0.3 / max(abs(g) for g in first)
    wb.eraser.gate *= c  # gates of at most 0.3 on this input, the same steering (g r unchanged)
    wb.eraser.direction /= c
    moved = wb.compare(img, q, 3.0, [0, 1])
    assert moved.steered != moved.original
    unsteered = wb.compare(img, q, 0.0, [0, 1]).gates
    top = max(unsteered.values())
    assert top <= 0.31
    held = wb.compare(img, q, 3.0, [0, 1], floor=top + 0.05)  # every gate under it: nothing steers
    assert held.steered == held.original and held.gates == pytest.approx(unsteered, abs=1e-5)
    assert wb.compare(img, q, 3.0, [0, 1], floor=0.0).steered == moved.steered
    for bad in (1.0, -0.2, "high"):
        with pytest.raises(UserError, match="Gate floor"):
            wb.compare(img, q, 3.0, [0, 1], floor=bad)
    with pytest.raises(UserError, match="Gate full value 1.5 is outside"):
        wb.compare(img, q, 3.0, [0, 1], full=1.5)
    with pytest.raises(UserError, match="must stay under the gate full value 0.3: lower the floor"):
        wb.compare(img, q, 3.0, [0, 1], floor=0.5, full=0.3)
    ramp = wb.compare(img, q, 3.0, [0, 1], floor=0.0, full=top / 2)  # every gate above full: the whole push
    assert ramp.steered != moved.original
    assert hook_count(wb.adapter) == 0


def test_compare_reports_bad_input_without_breaking():
    wb = _workbench()
    with pytest.raises(UserError, match="empty"):
        wb.compare(random_image(0), "", 1.0, None)
    with pytest.raises(UserError, match="outside"):
        wb.compare(random_image(0), "what ?", 99, None)
    assert isinstance(wb.compare(random_image(0), "what ?", 0.5, [1]).original, str)  # still works
    no_eraser = Workbench(wb.adapter, None)
    with pytest.raises(UserError, match="No eraser"):
        no_eraser.compare(random_image(0), "what ?", 0.5, None)


def test_concurrent_users_get_answers_for_their_own_strength():
    from concurrent.futures import ThreadPoolExecutor
    wb = _workbench()
    img = random_image(3)
    strengths = [0.0, 1.0, 2.5, -2.0, 4.0, 0.5]
    expected = {s: wb.compare(img, "what is this ?", s, [0, 1]).steered for s in strengths}
    assert len(set(expected.values())) > 1  # the strengths really give different answers
    with ThreadPoolExecutor(max_workers=6) as pool:
        jobs = [(s, pool.submit(wb.compare, img, "what is this ?", s, [0, 1])) for s in strengths * 3]
        for s, job in jobs:
            assert job.result().steered == expected[s], s
    assert hook_count(wb.adapter) == 0


# ---------------------------------------------------------------- the views, on a mini toy model
@pytest.fixture(scope="module")
def toy(mini_toy):
    wb = Workbench.load(mini_toy, eraser=None)
    eraser = wb.fit_eraser("forget_15", "recall", recipe=EraserConfig())  # one gate: the refit tests move from it
    return wb, eraser


def test_fit_eraser_for_a_split_or_hand_picked_people_and_stop(toy):
    from app.workbench import Session
    wb, eraser = toy
    assert eraser.config.forget_split == "forget_15" and eraser.config.direction_kind == "recall"
    ids = [p.id for p in wb.world.people[:2]]
    picked = wb.fit_eraser(ids, "text_only")
    assert picked.config.forget_split == ",".join(ids)
    rows = wb.people_rows(Session(eraser=picked))
    assert [r[1] for r in rows].count("FORGET") == 2 and {r[-1] for r in rows if r[1] == "FORGET"} == set(ids)
    with pytest.raises(UserError, match="at least one"):
        wb.fit_eraser([], "recall")
    with pytest.raises(UserError, match="unknown"):
        wb.fit_eraser(["nobody"], "recall")
    with pytest.raises(UserError, match="keep at least one"):
        wb.fit_eraser([p.id for p in wb.world.people], "recall")
    with pytest.raises(InterruptedError):
        wb.fit_eraser("forget_15", should_stop=lambda: True)
    more = wb.fit_eraser("forget_15", "recall", gate_variants=0.5)
    assert more.config.gate_variants == 0.5 and eraser.config.gate_variants == 0.0
    assert more.config.counts["forget"] == round(1.5 * eraser.config.counts["forget"])
    assert more.config.counts["retain"] > eraser.config.counts["retain"]


def test_session_eraser_and_kept_pgd_images_stay_in_their_session(toy):
    from app.workbench import Session
    wb, eraser = toy
    mine, other = Session(eraser=eraser), Session()
    with pytest.raises(UserError, match="No eraser"):
        wb.eraser_for(other)  # the shared workbench has no default eraser here
    assert wb.eraser_for(mine) is eraser and mine.id != other.id
    img = wb.world.canonical_image(wb.world.people[0])
    mine.recall_images.append((img, "What is this person's home address?"))
    with_pgd = wb.fit_eraser("forget_15", "recall", session=mine)
    assert with_pgd.config.counts["recall"] == eraser.config.counts["recall"] + 1
    assert not torch.allclose(with_pgd.direction, eraser.direction)
    # a fit in the app keeps the session eraser's settings, where the gate is read included
    from core.eraser import Eraser, EraserConfig
    mean_deep = Eraser(eraser.direction, eraser.gate, EraserConfig(**{**eraser.config.__dict__, "gate_layer": 1,
                                                                     "position": "mean_prompt_tokens"}))
    again = wb.fit_eraser("forget_15", "recall", session=Session(eraser=mean_deep))
    assert again.config.position == "mean_prompt_tokens" and again.config.gate_layer == 1


def test_pgd_frames_stream_every_step_and_validate_settings(toy):
    wb, _ = toy
    img = wb.world.canonical_image(wb.world.people[0])
    frames = list(wb.pgd_frames(img, "Who is this person?", wb.world.people[1].name, 16, 4, 6))
    assert [f.step for f in frames] == list(range(7)) and len(frames[-1].losses) == 7
    assert frames[-1].losses[-1] < frames[0].losses[0]  # moving toward the target
    assert frames[-1].image.size == img.size and frames[-1].perturbation.size == img.size
    stopped = list(wb.pgd_frames(img, "Who is this person?", "Mara", 16, 4, 50, should_stop=lambda: True))
    assert len(stopped) == 1
    for bad, msg in (((0, 1, 5), "eps"), ((16, 32, 5), "step size"), ((16, 1, 0), "Steps"), (("x", 1, 5), "numbers")):
        with pytest.raises(UserError, match=msg):
            next(wb.pgd_frames(img, "Who?", "Mara", *bad))
    with pytest.raises(UserError, match="target is empty"):
        next(wb.pgd_frames(img, "Who?", "  ", 16, 1, 5))


def test_activation_map_pca_and_current_input(toy):
    wb, eraser = toy
    img = wb.world.canonical_image(wb.world.people[0])
    fig = wb.activation_map(eraser, 1, "PCA", img, "Who is this person?")
    names = [t.name for t in fig.data]
    assert names == ["forget", "retain", "recall", "erase", "current input"]
    sets = wb.activation_sets(eraser)
    assert len(fig.data[0].x) == len(sets.forget) and len(fig.data[1].x) == len(sets.retain)
    # points are coloured by the gate value h . u of this layer
    assert fig.data[0].marker.color[0] == pytest.approx(float(sets.H_forget[0, 1].double() @ eraser.gate[1]))
    assert fig.layout.annotations[0].text == "d_erase"
    assert wb.activation_sets(eraser) is sets  # cached
    with pytest.raises(UserError, match="not fitted"):
        wb.activation_map(eraser, 7)


def test_the_map_draws_the_erasers_own_contrast_where_it_needs_no_pgd(toy):
    """A text-only eraser's recall / erase clouds were the picture construction's; a PGD-built
    direction is drawn over the recall clouds (a drawing runs no attack) and the title says so."""
    from dataclasses import replace
    wb, eraser = toy
    recall = wb.activation_sets(eraser)
    text = Eraser(eraser.direction, eraser.gate, replace(eraser.config, direction_kind="text_only"),
                  eraser.diagnostics)
    sets = wb.activation_sets(text)
    assert all(p.image is None for p in sets.recall) and any(p.image is not None for p in recall.recall)
    assert "recall construction" not in wb.activation_map(text, 1, "PCA").layout.title.text
    pgd = Eraser(eraser.direction, eraser.gate, replace(eraser.config, direction_kind="refusal"), eraser.diagnostics)
    assert wb.activation_sets(pgd).recall == recall.recall
    assert "d_erase: its own refusal one" in wb.activation_map(pgd, 1, "PCA").layout.title.text


def test_activation_map_umap(toy):
    wb, eraser = toy
    fig = wb.activation_map(eraser, 1, "UMAP")
    assert [t.name for t in fig.data] == ["forget", "retain", "recall", "erase"]
    assert fig.layout.xaxis.title.text == "UMAP 1" and not fig.layout.annotations
    # the fitted map is kept: a redraw with an input star places it without refitting
    again = wb.activation_map(eraser, 1, "UMAP", random_image(0), "who is this ?")
    assert [t.name for t in again.data][-1] == "current input" and again.data[0].x == fig.data[0].x


def test_umap_fits_a_proportional_seeded_sample_of_large_sets():
    from app.workbench import _sample_sets
    keep = _sample_sets({"forget": 1000, "retain": 6400, "recall": 40, "erase": 40}, 2000, seed=3)
    assert 1990 <= sum(len(v) for v in keep.values()) <= 2010
    assert len(keep["retain"]) == round(6400 * 2000 / 7480) and len(keep["recall"]) == round(40 * 2000 / 7480)
    assert all(torch.equal(v, v.sort().values) and len(set(v.tolist())) == len(v) for v in keep.values())
    assert all(torch.equal(keep[k], v) for k, v in _sample_sets(
        {"forget": 1000, "retain": 6400, "recall": 40, "erase": 40}, 2000, seed=3).items())  # seeded
    small = _sample_sets({"forget": 10, "retain": 20}, 2000, seed=0)
    assert small["retain"].tolist() == list(range(20))  # small sets are shown whole


def test_refit_at_the_same_settings_reproduces_the_gate_and_other_settings_change_k(toy):
    wb, eraser = toy
    same = wb.refit(eraser, eraser.config.ratio, eraser.config.gamma)
    assert torch.allclose(same.gate, eraser.gate, atol=1e-8) and torch.equal(same.direction, eraser.direction)
    wider = wb.refit(eraser, 0.9, 0.5)
    assert int(wider.diagnostics["k"][1]) > int(eraser.diagnostics["k"][1]) and wider.config.gamma == 0.5
    assert eraser.config.gamma != 0.5  # the original is untouched
    spec, hist, decision, rows = wb.nullspace_view(wider, 1)
    assert rows[1][1] == int(wider.diagnostics["k"][1]) and spec.layout.yaxis.type == "log"
    fg, rg = wider.diagnostics["forget_gates"][1], wider.diagnostics["retain_gates"][1]
    pairs = (fg[:, None] > rg[None, :]).double().mean() + 0.5 * (fg[:, None] == rg[None, :]).double().mean()
    assert rows[1][-1] == round(float(pairs), 3) and rows[1][-1] > 0.8  # AUC = P(forget gate > retain gate)
    for bad in ((0, 0.1), (1.5, 0.1), (0.3, -1), ("a", 0.1), (0.3, 0.1, -1), (0.3, 0.1, "x")):
        with pytest.raises(UserError):
            wb.refit(eraser, *bad)


def test_the_deciding_gate_is_drawn_with_the_ramp_asked_for(toy):
    """The Null space view's third plot: the gate that decides the steering on the fit rows, with
    the ramp's two lines (the eraser's, or the playground's floor / full value); a floor at or
    above the full value, or an eraser without diagnostics, is a clear error."""
    wb, eraser = toy
    fig = wb.nullspace_view(eraser, 1)[2]
    f, r = eraser.row_gates()
    assert list(fig.data[0].x) == f.tolist() and list(fig.data[1].x) == r.tolist()
    assert [s.x0 for s in fig.layout.shapes] == [eraser.config.gate_floor, eraser.config.gate_full]
    moved = wb.decision_view(eraser, 0.2, 0.7)
    over = 100 * float((r > 0.2).double().mean())
    assert [s.x0 for s in moved.layout.shapes] == [0.2, 0.7]
    assert moved.layout.annotations[0].text == f"floor 0.200: {over:.1f}% of retain rows over it"
    assert f"layer{'s' if len(eraser.gate_layers) > 1 else ''} " in moved.layout.title.text
    for floor, full in ((0.7, 0.7), (0.8, 0.3), (-1, 0.5), ("x", 0.5)):
        with pytest.raises(UserError):
            wb.decision_view(eraser, floor, full)
    bare = Eraser(eraser.direction, eraser.gate, eraser.config, {})
    with pytest.raises(UserError, match="without diagnostics"):
        wb.decision_view(bare)


def test_refit_with_retain_rows_quiets_the_gate_on_retain_prompts(toy):
    wb, eraser = toy
    plain = wb.refit(eraser, 1.0, eraser.config.gamma, 0.0)
    rows = wb.refit(eraser, 1.0, eraser.config.gamma, 1.0)
    assert rows.config.retain_weight == 1.0 and eraser.config.retain_weight == 0.0
    for l in rows.fitted_layers:
        assert rows.diagnostics["retain_gates"][l].abs().mean() < plain.diagnostics["retain_gates"][l].abs().mean()


def test_refit_one_gate_per_forget_person_and_back(toy):
    wb, eraser = toy
    per = wb.refit(eraser, 1.0, eraser.config.gamma, 0.3, True)
    people = sorted(p.id for p in wb.world.forget_people("forget_15"))
    assert per.config.subject_gates and per.config.subjects == people
    assert per.gate.shape == (eraser.num_layers, len(people), eraser.hidden_size)
    sets = wb.activation_sets(per)
    l = per.fitted_layers[-1]
    want = (sets.H_forget[:, l].double() @ per.gate[l].T).max(1).values  # the largest subject gate
    assert torch.allclose(per.diagnostics["forget_gates"][l], want)
    wb.activation_map(per, l)  # the map colours points by the per-person gate without error
    one = wb.refit(per, 1.0, eraser.config.gamma, 0.3, False)
    assert one.gate.shape == eraser.gate.shape and one.config.subjects == [] and not one.config.subject_gates
    assert torch.allclose(one.gate, wb.refit(eraser, 1.0, eraser.config.gamma, 0.3).gate)


def test_refit_with_a_floor_cross_fitted_over_the_retained_people(toy, monkeypatch):
    """The Null space view's folds: the refit reads its ramp (turned on) with the floor
    cross-fitted over the eraser's retained people, on the rows the eraser was fitted on (the
    miniature model's rows overlap, so the ramp itself stays: the folds are checked through
    what they were read off)."""
    wb, eraser = toy
    calls = []
    crossfit = Eraser.crossfit_retain_gates

    def spy(self, H_forget, H_retain, tags):
        calls.append((len(H_retain), list(tags), list(self.config.floor_subjects), self.config.floor_folds))
        return crossfit(self, H_forget, H_retain, tags)
    monkeypatch.setattr(Eraser, "crossfit_retain_gates", spy)
    folded = wb.refit(eraser, 1.0, eraser.config.gamma, 0.3, True, floor_folds=2)
    kept = [p.id for p in wb.world.people if p.id not in {q.id for q in wb.world.forget_people("forget_15")}]
    assert (folded.config.floor_folds, folded.config.gate_ramp, folded.config.floor_subjects) == (2, True, kept)
    sets = wb.activation_sets(eraser)
    assert calls and calls[0] == (len(sets.H_retain), [p.tag for p in sets.retain], kept, 2)
    assert wb.refit(folded, 1.0, eraser.config.gamma, 0.3, True, floor_folds=0).config.floor_folds == 0
    for bad, message in ((1, "0 \\(off\\) or 2-20"), (2.5, "0 \\(off\\) or 2-20"), (-2, "0 \\(off\\) or 2-20"),
                         ("x", "whole number")):
        with pytest.raises(UserError, match=message):
            wb.refit(eraser, 1.0, eraser.config.gamma, 0.3, True, floor_folds=bad)
    with pytest.raises(UserError, match="one gate per forget person: tick that box too"):
        wb.refit(eraser, 1.0, eraser.config.gamma, 0.3, False, floor_folds=2)


def test_refit_to_one_gate_over_several_layers_and_back(toy):
    """The Null space view's joint-gate choice: one gate over the chosen layers (the dropdown gives
    strings), separating forget from retain rows; empty goes back to each steered layer's own gate;
    a single layer, a layer the eraser did not fit or a word is refused before anything is fitted."""
    wb, eraser = toy
    assert eraser.config.joint_gate is None
    layers = eraser.fitted_layers
    joint = wb.refit(eraser, eraser.config.ratio, eraser.config.gamma, joint_layers=[str(l) for l in layers])
    assert joint.config.joint_gate == layers and joint.gate_layers == layers and eraser.config.joint_gate is None
    sets = wb.activation_sets(eraser)  # the gate is read over the layers side by side
    part = lambda i: joint.joint[i].double().reshape(-1, joint.joint.shape[-1]).T  # noqa: E731  (d, K): a gate per subject or one
    read = sum(sets.H_forget[:, l].double() @ part(i) for i, l in enumerate(layers))
    assert torch.allclose(read.reshape(len(sets.forget), -1).max(1).values,
                          joint.diagnostics["joint_forget_gates"].double(), atol=1e-6)
    back = wb.refit(joint, eraser.config.ratio, eraser.config.gamma, joint_layers=[])
    assert back.config.joint_gate is None and back.joint is None
    assert torch.allclose(back.gate, wb.refit(eraser, eraser.config.ratio, eraser.config.gamma).gate)
    for bad, msg in ((["1"], "at least two"), (["0", "99"], "at least two"), (["x"], "layer numbers")):
        with pytest.raises(UserError, match=msg):
            wb.refit(eraser, eraser.config.ratio, eraser.config.gamma, joint_layers=bad)


def test_selectivity_and_heatmap(toy):
    wb, eraser = toy
    rows = wb.selectivity(eraser, 0.0, None)
    assert {r[0].split(":")[0] for r in rows} == {"forget", "retain"}
    assert all(r[2] == r[3] for r in rows)  # strength 0 changes nothing
    rnd = _workbench()  # a random eraser on a tiny random model: big, visible effects
    img = random_image(5)
    seen = []
    layers, strengths, grid = rnd.heatmap(rnd.eraser, img, "what is this ?", [0.0, 3.0], max_new_tokens=8,
                                          progress=lambda stage, done, total: seen.append((done, total)))
    assert layers == rnd.eraser.fitted_layers and strengths == [0.0, 3.0]
    cells = 2 * len(layers)
    assert seen == [(i, cells) for i in range(1, cells + 1)]  # one step per answer
    calls = []
    with pytest.raises(InterruptedError):  # Stop (or the job's time limit) ends it between two answers
        rnd.heatmap(rnd.eraser, img, "what is this ?", [0.0, 3.0], max_new_tokens=8,
                    should_stop=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3 and hook_count(rnd.adapter) == 0
    original = rnd.adapter.ask("what is this ?", img, max_new_tokens=8)
    assert all(row[0] == original for row in grid)  # strength 0 is the original at every layer
    assert any(row[1] != original for row in grid)  # a strong push changes the answer somewhere
    # at the playground's gate floor, above every gate of the input, the heat-map answers as the model does
    # (it took strength, layers and mode only: the comparison and the heat-map disagreed)
    gates = [abs(g) for s in (0.0, 3.0) for g in rnd.compare(img, "what is this ?", s, [0, 1]).gates.values()]
    c = 0.3 / max(gates)
    rnd.eraser.gate *= c  # gates of at most 0.3 on this input, the same steering (g r unchanged)
    rnd.eraser.direction /= c
    steered = rnd.heatmap(rnd.eraser, img, "what is this ?", [3.0], max_new_tokens=8)[2]
    held = rnd.heatmap(rnd.eraser, img, "what is this ?", [3.0], max_new_tokens=8, floor=0.35)[2]
    assert any(row[0] != original for row in steered) and all(row[0] == original for row in held)
    # the examples steer at the playground's whole setting too (the answers of this miniature model do not
    # move at any strength, so what reaches the eraser is checked)
    import copy
    seen, probe = [], copy.copy(eraser)
    probe.apply = lambda *args, **kw: seen.append((kw["gate_layer"], kw["floor"], kw["full"])) or eraser.apply(*args, **kw)
    wb.selectivity(probe, 1.0, None, gate_layer=None, floor=0.35, full=0.9)
    assert seen and set(seen) == {(None, 0.35, 0.9)}


def test_attack_report_progress_stop_and_bad_parameters(toy):
    wb, eraser = toy
    seen = []
    rows = wb.attack(eraser, 1, 2, progress=lambda name, done, total: seen.append((name, done, total)), eps=8)
    assert len(rows) == 14 and [s[1] for s in seen] == list(range(14)) and seen[0][2] == 14
    assert rows[0]["attack"] == "none" and rows[-1]["attack"] == "adaptive PGD on the gate (eps 8/255, 2 steps)"
    assert all(math.isfinite(r["forget_gate"]) and math.isfinite(r["retain_gate"]) for r in rows)
    assert all(0 <= r[k] <= 1 for r in rows for k in ("forget_erased", "retain_erased"))
    with pytest.raises(InterruptedError):
        wb.attack(eraser, 1, 2, should_stop=lambda: True)
    for people, steps, msg in ((0, 2, "People"), (1, 0, "PGD steps"), (21, 2, "People")):
        with pytest.raises(UserError, match=msg):
            wb.attack(eraser, people, steps)
    for eps in (0, 65, -3):  # checked before any attack runs
        with pytest.raises(UserError, match="PGD budget must be between 1/255 and 64/255"):
            wb.attack(eraser, 1, 2, eps=eps)


def test_evaluate_with_eraser_and_save_load_roundtrip(toy, tmp_path, monkeypatch):
    from app.workbench import eraser_zip
    wb, eraser = toy
    res = wb.evaluate(eraser, 1)
    assert set(res.splits) == {"forget", "test", "retain", "real"} and res.eraser["forget"] == "forget_15"
    assert 0 <= res.splits["forget"]["image_text"]["classification"] <= 1
    z = eraser_zip(eraser, tmp_path)
    back = wb.load_eraser_zip(z)
    assert torch.equal(back.gate, eraser.gate.float().double()) and back.config.forget_split == "forget_15"
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a zip"):
        wb.load_eraser_zip(tmp_path / "junk.zip")
    other = Workbench(tiny_adapter("llava"), None)
    with pytest.raises(UserError, match="another model"):
        other.load_eraser_zip(z)
    with pytest.raises(UserError, match="Rows per split"):
        wb.evaluate(eraser, 0)
    # a stored per-task strength is used: MCQs at strength 0 are answered as without the eraser
    from dataclasses import replace
    per_task = Eraser(eraser.direction, eraser.gate, replace(eraser.config, strength=3.0,
                                                             task_strengths={"classification": 0.0}))
    strengths, real_apply = [], Eraser.apply

    def spy(self, adapter, strength=None, *args, **kw):  # this miniature model's answers barely move: check the
        strengths.append(strength)                       # strengths each task is steered with as well
        return real_apply(self, adapter, strength, *args, **kw)
    monkeypatch.setattr(Eraser, "apply", spy)
    res = wb.evaluate(per_task, 1)
    monkeypatch.undo()
    plain = wb.evaluate(None, 1)
    assert res.eraser["task_strengths"] == {"classification": 0.0} and set(strengths) == {0.0, 3.0}
    assert all(res.splits[s][m]["classification"] == plain.splits[s][m]["classification"]
               for s in res.splits for m in ("image_text", "text_only"))


def test_missing_model_and_worldless_model_give_clear_errors(tmp_path):
    with pytest.raises(UserError, match="Could not load the model"):
        Workbench.load(tmp_path / "nowhere", eraser=None)
    from core.models.tiny import save_tiny
    cut = save_tiny("llava", tmp_path / "cut")
    (cut / "model.safetensors").write_bytes((cut / "model.safetensors").read_bytes()[:4096])
    with pytest.raises(UserError, match=r"Could not load the model .*download or copy the weights again"):
        Workbench.shared(cut)
    wb = _workbench()
    with pytest.raises(UserError, match="no toy world"):
        wb.people_rows()


def test_forget_someone_fits_for_a_name_and_photos_and_the_views_follow_the_session(toy, tmp_path):
    """Photos + a name (no facts) on a toy model: the retained set is every other person of the
    world; the session's selectivity examples, evaluation and activation sets use this forget set,
    another session keeps the model's own."""
    from app.workbench import Session
    wb, default = toy
    person = wb.world.people[0]
    paths = []
    for i in range(2):
        wb.world.render(person).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    sess, other = Session(eraser=default), Session(eraser=default)
    stages = []
    eraser = wb.forget_someone(paths, person.name, "", sess, progress=lambda s, d, t: stages.append(s))
    sess.eraser = eraser
    assert {"forget", "retain", "recall", "erase"} <= set(stages)
    assert sess.data is not None and sess.data.forget[0].name == person.name and len(sess.data.forget[0].images) == 2
    assert person.id not in {r.id for r in sess.data.retain} and len(sess.data.retain) == len(wb.world.people) - 1
    assert eraser.config.forget_split == sess.data.forget_ids[0] and eraser.config.data_source.startswith("upload")
    # the people table and the gallery marked the world's forget_10 FORGET for an eraser of an uploaded person
    assert [r[1] for r in wb.people_rows(sess)].count("FORGET") == 0
    labels = [label for label, _ in wb.examples(eraser, session=sess)]
    assert labels[0] == f"forget: {person.name}" and all(not l.startswith(f"retain: {person.name}") for l in labels)
    again = []
    sets = wb.activation_sets(eraser, progress=lambda *x: again.append(x), session=sess)
    assert again == []  # the fit's own activations, kept: nothing is collected twice
    assert {p.tag for p in sets.forget} == {sess.data.forget_ids[0]} and len(sets.H_forget) == len(sets.forget)
    res = wb.evaluate(eraser, 1, session=sess)
    assert set(res.splits) == {"forget", "retain", "real"} and set(res.refusal_prompts) == {"forget", "retain"}
    assert wb.data_for(default, other).builder is not None  # the other session: the toy world's own split
    rows = wb.nullspace_view(eraser, eraser.fitted_layers[-1])[3]
    assert rows[-1][4] == round(float(eraser.diagnostics["forget_gates"][eraser.fitted_layers[-1]].mean()), 3)
    for bad, message in (([], "between 1 and 10"), (paths * 6, "between 1 and 10")):
        with pytest.raises(UserError, match=message):
            wb.forget_someone(bad, person.name, "", Session())
    with pytest.raises(UserError, match="Type the person's name"):
        wb.forget_someone(paths, "  ", "", Session())
    with pytest.raises(UserError, match="not valid JSON"):
        wb.forget_someone(paths, person.name, "{oops", Session())
    with pytest.raises(UserError, match="over 1 MB of text"):
        wb.forget_someone(paths, person.name, "[" * (2**20 + 1), Session())
    with pytest.raises(UserError, match="not valid JSON"):  # nested past Python's recursion limit, under the cap
        wb.forget_someone(paths, person.name, "[" * 200_000, Session())
    # an eraser uploaded into this session: the session's forget set stays only when it holds the
    # eraser's people (the views scored the toy eraser on the uploaded person before)
    mine = Session(eraser=eraser, data=sess.data)
    assert "keep your forget set" in wb.adopt_eraser(mine, eraser) and mine.data is sess.data
    assert "back on the model's own data" in wb.adopt_eraser(mine, default) and mine.data is None
    assert mine.eraser is default and wb.data_for(default, mine).builder is not None
    with pytest.raises(UserError, match="'qa' must be a list of objects"):
        wb.forget_someone(paths, person.name, '{"qa": "Where was she born? Oslo."}', Session())
    with pytest.raises(UserError, match="cannot spell the name 'Zorblax"):
        wb.forget_someone(paths, "Zorblax Quux", "", Session())
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(UserError, match="not a readable image"):
        wb.forget_someone([str(tmp_path / "bad.png")], person.name, "", Session())


def test_a_model_without_a_world_starts_with_no_mismatched_eraser_and_says_what_to_add(tmp_path):
    from app.workbench import DEFAULT_ERASER, Session
    from core.models.tiny import save_tiny
    folder = save_tiny("qwen2_5_vl", tmp_path / "q")
    wb = Workbench.load(folder, DEFAULT_ERASER)  # the shipped eraser belongs to another model
    assert wb.eraser is None and "does not fit this model" in wb.note
    with pytest.raises(UserError, match="Forget someone"):
        wb.eraser_for(Session())
    with pytest.raises(UserError, match="No forget set yet"):
        wb.data_for(None, Session())


def test_mllmu_files_uploaded_in_the_app_become_the_sessions_forget_set(toy, tmp_path):
    """The toy world exported as MLLMU parquet, uploaded: the session fits on the files' forget
    split (or picked ids) and Evaluate can score the session's data or the toy world's split."""
    from app.workbench import Session
    from core.toyworld.mllmu import export_parquet
    wb, default = toy
    files = [export_parquet(wb.world, s, tmp_path / f"{s}.parquet") for s in ("forget_15", "retain_85", "real")]
    sess = Session(eraser=default)
    sess.eraser = wb.use_mllmu_files([str(f) for f in files], "", sess)
    forget_ids = [p.id for p in wb.world.forget_people("forget_15")]
    assert sess.data.forget_ids == forget_ids and sess.data.name == "uploaded MLLMU files"
    assert sess.eraser.config.forget_split == ",".join(forget_ids)
    picked = wb.use_mllmu_files([str(f) for f in files], forget_ids[0], Session())
    assert picked.config.forget_split == forget_ids[0]
    res = wb.evaluate(sess.eraser, 1, session=sess)
    assert set(res.splits) == {"forget", "retain", "real"}
    toy_res = wb.evaluate(sess.eraser, 1, session=sess, source="toy world")
    assert set(toy_res.splits) == {"forget", "test", "retain", "real"}
    (tmp_path / "notes.parquet").write_bytes(b"PAR1")
    broken, unreadable = tmp_path / "broken", tmp_path / "unreadable"
    broken.mkdir(), unreadable.mkdir()
    (broken / "forget_15.parquet").write_bytes(b"PAR1 cut short PAR1")
    pq.write_table(pa.Table.from_pylist([{"ID": "p1", "image": {"bytes": b"not a picture", "path": None}}]),
                   unreadable / "forget_15.parquet")
    for bad, message in (([], "Upload MLLMU-Bench parquet files"),
                         ([str(tmp_path / "notes.parquet")], "name each file after its split"),
                         ([str(files[1])], "Upload the forget split too"),
                         ([str(broken / "forget_15.parquet"), str(files[1])], "forget_15.parquet is not a readable parquet"),
                         ([str(unreadable / "forget_15.parquet"), str(files[1])],
                          r"forget_15.parquet, row 0 \(ID p1\): the image cannot be read")):
        with pytest.raises(UserError, match=message):
            wb.use_mllmu_files(bad, "", Session())
    with pytest.raises(UserError, match="unknown subject id"):
        wb.use_mllmu_files([str(f) for f in files], "nobody", Session())


def test_an_upload_is_read_from_a_gradio_file_a_path_bytes_or_a_picture(tmp_path):
    """`.name` was read off anything: a pathlib path gave its bare file name (opening nothing), and
    a PIL picture or bytes from Python callers raised AttributeError."""
    from types import SimpleNamespace

    from app.workbench import read_image, upload_path
    pic = random_image(0)
    pic.save(tmp_path / "a.png")
    raw = (tmp_path / "a.png").read_bytes()
    for given in (tmp_path / "a.png", str(tmp_path / "a.png"), raw, pic, SimpleNamespace(name=str(tmp_path / "a.png"))):
        assert read_image(upload_path(given)).size == pic.size


def test_an_mllmu_upload_keeps_the_forget_peoples_test_rows_and_one_file_per_split(toy, tmp_path, monkeypatch):
    """The upload scored the whole test file as the forget set's (MLLMU-Bench's test file is shared
    by forget_5/10/15, and `load_data` filters it), kept only the last of two files of one split,
    and opened nothing when given pathlib paths (their `.name` is the bare file name)."""
    from app.workbench import Session
    from core.toyworld.mllmu import export_parquet
    wb, _ = toy
    files = {s: export_parquet(wb.world, s, tmp_path / f"{s}.parquet") for s in ("forget_5", "test_15", "retain_95")}
    monkeypatch.setattr(wb, "fit_eraser", lambda data, *args, **kw: data)  # the data the fit would get
    data = wb.use_mllmu_files(list(files.values()), "", Session())  # Path objects
    five = [p.id for p in wb.world.forget_people("forget_5")]
    assert data.forget_ids == five and sorted(r.id for r in data.test) == sorted(five)
    # a person picked from the retain file keeps their rows of the shared test file
    from core.data.folder import add_name_questions
    from core.data.mllmu import export_records
    from core.data.records import PersonRecord

    def rec(i):  # named as the miniature world's people: its word-level tokenizer spells only those
        r = PersonRecord(f"s{i}", images=[random_image(i)], name=wb.world.people[i].name)
        add_name_questions(r)
        return r
    (tmp_path / "shared").mkdir()
    shared = [export_records([rec(0)], tmp_path / "shared" / "forget_5.parquet"),
              export_records([rec(1), rec(2)], tmp_path / "shared" / "retain_95.parquet"),
              export_records([rec(0), rec(1)], tmp_path / "shared" / "test_15.parquet", test=True)]
    assert [r.id for r in wb.use_mllmu_files(shared, "", Session()).test] == ["s0"]
    assert [r.id for r in wb.use_mllmu_files(shared, "s0,s1", Session()).test] == ["s0", "s1"]
    assert data.retain and not {r.id for r in data.retain} & set(five)
    (tmp_path / "more").mkdir()
    second = export_parquet(wb.world, "retain_95", tmp_path / "more" / "retain_part2.parquet")
    with pytest.raises(UserError, match="retain_95.parquet and retain_part2.parquet are both the retain split"):
        wb.use_mllmu_files([*files.values(), second], "", Session())


def test_an_upload_named_as_the_mllmu_bench_download_names_it_is_told_how_to_rename_it(toy, tmp_path, monkeypatch):
    """The download names every split's shard train-00000-of-00001.parquet (refused with the
    export's names only), and its Retain_Set (real celebrities) was read as a second retain split."""
    from app.workbench import Session, upload_split
    from core.toyworld.mllmu import export_parquet
    names = ("forget_10.parquet", "Retain_Set.parquet", "Test_Set.parquet", "retain_90.parquet", "real.parquet",
             "train-00000-of-00001.parquet", "forget_10.csv", "notes.parquet", "Retain_Set (1).parquet",
             "retain_90 (2).parquet")
    assert [upload_split(n) for n in names] == ["forget", "real", "test", "retain", "real", None, None, None, "real",
                                                "retain"]
    wb, _ = toy
    (tmp_path / "train-00000-of-00001.parquet").write_bytes(b"PAR1")
    with pytest.raises(UserError, match="the MLLMU-Bench download names every split's file so, in a folder named after "
                                        "the split: rename each file after its folder.*Files over 200 MB are "
                                        "refused here.*python -m core fit --data DOWNLOAD_FOLDER"):
        wb.use_mllmu_files([str(tmp_path / "train-00000-of-00001.parquet")], "", Session())
    files = [export_parquet(wb.world, "forget_5", tmp_path / "forget_5.parquet"),
             export_parquet(wb.world, "retain_95", tmp_path / "retain_95.parquet"),
             export_parquet(wb.world, "real", tmp_path / "Retain_Set.parquet")]
    monkeypatch.setattr(wb, "fit_eraser", lambda data, *args, **kw: data)  # the data the fit would get
    data = wb.use_mllmu_files(files, "", Session())
    assert data.real and {r.id for r in data.real}.isdisjoint(r.id for r in data.retain)
    assert len(data.retain) == len(wb.world.people) - len(data.forget)


def test_a_recipe_with_a_cross_fitted_floor_folds_the_new_forget_sets_retained_people(toy):
    """floor_folds travels with a recipe (RECIPE_FIELDS); the people it folds are the new fit's
    retained ones, not the ones of the eraser the recipe came from."""
    from core.eraser import recipe_of
    wb, eraser = toy
    recipe = EraserConfig(**{**recipe_of(eraser.config), "subject_gates": True, "gate_ramp": True, "floor_folds": 2})
    fitted = wb.fit_eraser("forget_5", "recall", recipe=recipe)
    kept = [p.id for p in wb.world.people if p.id not in {q.id for q in wb.world.forget_people("forget_5")}]
    assert fitted.config.floor_folds == 2 and fitted.config.floor_subjects == kept
    assert "floor_folds" in recipe_of(fitted.config)


def test_every_step_mode_with_a_prompt_mean_gate_is_explained_not_a_bare_error(toy):
    from app.workbench import DEFAULT_ERASER
    from core.eraser import Eraser
    shipped = Eraser.from_pretrained(DEFAULT_ERASER)
    wb = _workbench()
    wb.eraser = Eraser(wb.eraser.direction, wb.eraser.gate,
                       EraserConfig(strength=1.0, position=shipped.config.position))
    with pytest.raises(UserError, match="choose 'prefill' or 'latched'"):
        wb.compare(random_image(0), "who is it ?", 1.0, None, mode="every_step")
    with pytest.raises(UserError, match="choose 'prefill' or 'latched'"):
        wb.heatmap(wb.eraser, random_image(0), "who is it ?", [1.0], mode="every_step")
    assert wb.compare(random_image(0), "who is it ?", 1.0, None, mode="latched").original
    # a last-token gate read over layers 0-1 (an uploaded eraser can be one): the examples and the
    # heat-map said "Something went wrong on the server" where the playground explained it
    wb.eraser = Eraser(wb.eraser.direction, wb.eraser.gate, EraserConfig(strength=1.0, joint_gate=[0, 1]),
                       joint=wb.eraser.gate[:2].clone())
    for view in (lambda: wb.selectivity(wb.eraser, 1.0, None, mode="every_step"),
                 lambda: wb.heatmap(wb.eraser, random_image(0), "who is it ?", [1.0], mode="every_step")):
        with pytest.raises(UserError, match="latched at the prompt, so it cannot be recomputed"):
            view()
    assert wb.compare(random_image(0), "who is it ?", 1.0, None, mode="every_step", gate_layer=None).original


def test_zip_bomb_and_long_pgd_target_are_refused_quickly(tmp_path):
    """1 GiB of zeros compresses to about 1 MB: refused from the zip's directory, before anything is
    unpacked (it took 12 s, +2 GB RSS and 1 GiB in /tmp before). A PGD target of 18,000 characters
    cost 5 s and +539 MB per step: refused before any step (issue 22)."""
    import resource
    import time
    import zipfile
    from app.limits import TARGET_CHARS as MAX_TARGET_CHARS
    from app.workbench import CONFIG_NAME as CFG
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open(CFG, "w", force_zip64=True) as f:
            chunk = b"\0" * 2**20
            for _ in range(1024):
                f.write(chunk)
    assert bomb.stat().st_size < 3 * 2**20
    wb = _workbench()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.time()
    with pytest.raises(UserError, match="unpacks to more than an eraser"):
        wb.load_eraser_zip(bomb)
    assert time.time() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 * 1024  # KiB: under 200 MB more
    start = time.time()
    with pytest.raises(UserError, match=f"keep it under {MAX_TARGET_CHARS}"):
        next(wb.pgd_frames(random_image(0), "who is it ?", "x" * 18_000, 16, 2, 5))
    assert time.time() - start < 2.0  # before any PGD step (one cost 5 s and +539 MB); generous for a loaded box


# ---------------------------------------------------------------- caps and concurrency (issue 22)
def _rss_kib() -> int:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_a_thin_strip_and_a_huge_canvas_are_refused_from_the_header(tmp_path):
    """A 239-byte 1 x 40000 PNG cost 4 s and +770 MB; a 97 KB 10000 x 10000 PNG decodes to
    +476 MB. Both are refused before any pixel is decoded, in well under the 4 s a decode took (the bound is generous for a loaded machine)."""
    import time
    strip, canvas = tmp_path / "strip.png", tmp_path / "canvas.png"
    Image.new("L", (1, 40000)).save(strip)
    Image.new("1", (9000, 9000)).save(canvas)
    assert strip.stat().st_size < 2000 and canvas.stat().st_size < 200_000
    before, t = _rss_kib(), time.perf_counter()
    with pytest.raises(UserError, match="a strip rather than a picture"):
        read_image(strip)
    with pytest.raises(UserError, match="9000x9000 pixels; the limit is 16 megapixels"):
        read_image(canvas)
    assert time.perf_counter() - t < 2.0 and _rss_kib() - before < 50 * 1024  # decoding the strip took 4 s
    wide = Image.new("RGB", (400, 40))  # 10:1 is a (panoramic) picture: accepted
    assert read_image(_png(wide)).size == (400, 40)


def test_an_oversized_image_file_is_refused_before_it_is_read(tmp_path):
    from app import limits
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(limits.IMAGE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(UserError, match="over 20 MB"):
        read_image(big)


def test_questions_and_targets_must_fit_the_models_context():
    """Characters are capped first (cheap), then tokens against the model's own context with
    the image tokens and the answer included."""
    wb = _workbench()
    room = wb.adapter.context_length - wb.adapter.num_image_tokens() - 40 - 32
    with pytest.raises(UserError, match=f"room for {room}"):
        wb.compare(random_image(0), "a " * 900, 1.0, None)
    with pytest.raises(UserError, match="tokens long; keep it under 64"):
        next(wb.pgd_frames(random_image(0), "who is it ?", "a " * 100, 16, 2, 5))
    assert wb.compare(random_image(0), "what is this ?", 1.0, None).original  # a normal question runs


def test_capture_steering_and_pgd_from_many_threads_equal_their_serial_runs():
    """Concurrent users on one shared model: activations collected, steered answers and PGD
    streams in six threads at once are each exactly what the same call gives alone."""
    from concurrent.futures import ThreadPoolExecutor
    wb = _workbench()
    img = random_image(5)

    def capture():
        return wb.input_activation(img, "who is the person in this picture ?")

    def steer(s):
        return wb.compare(img, "what is this ?", s, [0, 1]).steered

    def attack():
        return [f.losses[-1] for f in wb.pgd_frames(img, "what is this ?", "red", 16, 4, 3)]

    serial = {"capture": capture(), "steer0": steer(0.0), "steer3": steer(3.0), "pgd": attack()}
    calls = {"capture": capture, "steer0": lambda: steer(0.0), "steer3": lambda: steer(3.0), "pgd": attack}
    with ThreadPoolExecutor(max_workers=6) as pool:
        jobs = [(name, pool.submit(fn)) for name, fn in list(calls.items()) * 3]
        for name, job in jobs:
            got = job.result()
            if name == "capture":
                assert torch.equal(got, serial[name]), name
            else:
                assert got == serial[name], name
    assert hook_count(wb.adapter) == 0


def test_activation_collection_holds_no_lock_other_users_wait_on(toy):
    """A first collection takes ~24 s on the shipped model: it runs outside the workbench's lock,
    so another user's cached view is served meanwhile; Stop ends it between batches."""
    import threading
    wb, eraser = toy
    other = wb.fit_eraser("forget_5", "recall")
    wb._acts.clear()
    inside, release = threading.Event(), threading.Event()

    def should_stop():
        inside.set()
        release.wait(30)
        return True

    errors = []

    def first_user():
        try:
            wb.activation_sets(other, should_stop=should_stop)
        except InterruptedError as exc:
            errors.append(exc)

    t = threading.Thread(target=first_user)
    t.start()
    assert inside.wait(60)
    assert wb._acts_lock.acquire(timeout=1)  # free while the first user is collecting
    wb._acts_lock.release()
    release.set()
    t.join(60)
    assert errors and not t.is_alive()
    assert not wb._acts  # nothing half-collected was cached


def test_loaded_models_are_shared_between_sessions(mini_toy):
    from app import workbench as w
    w._LOADED.clear()
    a = Workbench.shared(mini_toy)
    b = Workbench.shared(str(mini_toy) + "/")
    assert a is b and len(w._LOADED) == 1
    default = Workbench.load(mini_toy, eraser=None)
    assert Workbench.shared(mini_toy, default) is default  # the default model is never loaded twice
    with pytest.raises(UserError, match="does not exist"):
        Workbench.shared("/nowhere/model")
    w._LOADED.clear()


def test_forget_requests_in_a_session_withdraw_and_add_people(toy, tmp_path):
    """The Model & data view's list of who the eraser forgets, an added upload and a withdrawal,
    on the session's eraser only (the shared default is untouched)."""
    from app.workbench import Session
    wb, eraser = toy
    sess = Session(eraser=eraser)
    with pytest.raises(UserError, match="one gate for its whole forget set"):
        wb.withdraw("anyone", sess)
    per_person = wb.refit(eraser, 1.0, 10.0, 0.3, per_person=True, session=sess)
    sess.eraser = per_person
    rows = wb.forgotten(sess)
    assert [r[0] for r in rows] == per_person.config.subjects and rows[0][1] == wb.world.person(rows[0][0]).name
    first = rows[0][0]
    with pytest.raises(UserError, match="withdraw every subject"):
        wb.withdraw(first, sess)
    person = next(p for p in wb.world.people if p.id not in per_person.config.subjects)
    paths = []
    for i in range(2):
        wb.world.render(person).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    added = wb.forget_someone(paths, person.name, "", sess, add=True)
    subject = "upload-" + "-".join(person.name.lower().split())
    assert sess.eraser is added and subject in added.config.subjects and per_person.state is None
    # they were retained as a world record: those rows left the retain side (they stayed, before)
    assert person.id not in added.state.retain_tags and subject not in added.state.retain_tags
    assert wb.forgotten(sess)[-1][:2] == [subject, person.name] and wb.forgotten(sess)[-1][2].startswith("add, ")
    # the name typed is this session's: another session given the same eraser sees the id only
    assert wb.forgotten(Session(eraser=added))[-1][:2] == [subject, subject]
    assert wb.people_rows(sess)  # the people table still draws with an uploaded person in the eraser
    new = wb.withdraw(first, sess)
    assert sess.eraser is new and new.config.subjects == [subject]
    assert [r[0] for r in wb.forgotten(sess)] == [subject] and new.config.requests[-1]["action"] == "remove"
    with pytest.raises(UserError, match="not forgotten by this eraser"):
        wb.withdraw(first, sess)
    assert eraser.config.subjects == per_person.config.subjects or not eraser.config.subject_gates  # untouched
    from app.workbench import eraser_zip
    back = wb.load_eraser_zip(eraser_zip(new, tmp_path / "dl"))  # downloaded with its fit state, uploaded again
    assert back.state is not None and back.state.forget_tags == new.state.forget_tags
    assert [r["action"] for r in back.config.requests] == [r["action"] for r in new.config.requests]


def test_hardening_in_a_session_adds_attacked_rows_and_raises_the_gate_on_them(toy):
    """The Null space view's Harden button: rounds of PGD that closes the gate on the forget people's
    pictures, added as their forget rows, on this session's eraser only; bad settings, an eraser
    with one gate for all and a stop change nothing."""
    import re

    from app.workbench import Session
    from core.hardening import hardening_rows
    wb, eraser = toy
    sess = Session(eraser=eraser)
    with pytest.raises(UserError, match="one gate for its whole forget set"):
        wb.harden(sess, 1, 2)
    per_person = wb.refit(eraser, 1.0, 10.0, 0.3, per_person=True, session=sess)
    sess.eraser = per_person
    for bad in ((0, 2), (4, 2), (1, 0), (1, 41), ("x", 2)):
        with pytest.raises(UserError):
            wb.harden(sess, *bad)
    assert sess.eraser is per_person
    with pytest.raises(InterruptedError):
        wb.harden(sess, 1, 3, should_stop=lambda: True)
    assert torch.equal(sess.eraser.gate, per_person.gate) and not sess.eraser.config.adversarial_rounds
    forget = wb.activation_sets(per_person, session=sess).forget
    steps = []
    hardened, lines = wb.harden(sess, 2, 3, progress=lambda *x: steps.append(x))
    assert sess.eraser is hardened and hardened.config.adversarial_rounds == 2 and len(lines) == 2
    assert ("hardening round", 2, 2) in steps
    assert len(hardened.state.H_forget) == len(forget) + 2 * len(hardening_rows(forget))
    assert [r["action"] for r in hardened.config.requests][-2:] == ["harden", "harden"]
    for line in lines:  # the refit gate fires more on the round's own attacked pictures
        before, after = map(float, re.search(r"images (\S+) -> (\S+) after", line).groups())
        assert after > before, line
    assert not per_person.config.adversarial_rounds and per_person.state is None  # the session's old eraser: untouched
    # its split is now named person by person: the same people, so the views reuse the collected sets
    assert hardened.config.forget_split != per_person.config.forget_split
    assert wb.activation_sets(hardened, session=sess) is wb.activation_sets(per_person, session=sess)
    # "Refit the gate" on the hardened eraser refits on its own rows: it rebuilt the gate from the data's
    # gate sets, which dropped the attacked rows while the config still said hardened
    again = wb.refit(hardened, 1.0, 10.0, None, per_person=True, session=sess)
    assert again.state is hardened.state and again.config.adversarial_rounds == 2
    assert torch.allclose(again.gate, hardened.gate, atol=1e-6) and not torch.allclose(again.gate, per_person.gate)


def test_people_added_by_upload_get_ids_that_keep_long_names_apart():
    from app.workbench import subject_id
    assert subject_id("upload", "  Oskar   Draper ") == "upload-oskar-draper"
    a = subject_id("upload", "Freya Galloway Lindqvist Tennant Fairbank Okafor")
    b = subject_id("upload", "Freya Galloway Lindqvist Tennant Fairbank Yardley")
    assert a != b and a.startswith("upload-freya-galloway-lindqvist-tennant") and len(a) == len(b) <= 47


def test_a_model_folder_with_a_damaged_world_loads_without_it_and_says_why(tmp_path):
    from core.models.tiny import save_tiny
    folder = save_tiny("llava", tmp_path / "m")
    (folder / "world.json").write_text('{"people": 5}')
    wb = Workbench.load(folder, eraser=None)
    assert wb.world is None and "toy world was not loaded" in wb.note and "world.json" in wb.note
    with pytest.raises(UserError, match="no toy world"):
        wb.people_rows()


def test_a_model_dropped_to_make_room_is_loaded_again_not_kept_by_its_sessions(tmp_path, monkeypatch):
    """Sessions hold the model they loaded: with more models asked for than LOADED_MODELS, a session
    coming back gets its model loaded again (and another dropped), so at most LOADED_MODELS stay
    in memory (every session kept its own copy alive before)."""
    import gc
    import weakref

    import app.workbench as W
    from core.models.tiny import save_tiny
    monkeypatch.setattr(W.limits, "LOADED_MODELS", 1)
    monkeypatch.setattr(W, "_LOADED", W.OrderedDict())
    folders = [save_tiny("llava", tmp_path / f"m{i}") for i in range(2)]
    first = Workbench.shared(folders[0])
    alive = weakref.ref(first.adapter.model)
    second = Workbench.shared(folders[1])  # drops the first
    assert list(W._LOADED) == [second.key]
    again = Workbench.current(first, None)  # the session of the first model comes back
    assert again is not first and again.key == first.key and list(W._LOADED) == [first.key]
    assert Workbench.current(again, None) is again
    del first
    gc.collect()
    assert alive() is None  # nothing holds the dropped copy


def test_a_computation_without_a_stop_hook_still_stops_at_once():
    """UMAP's fit has no stop hook: it runs in the background, and Stop ends the visitor's job at once."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from app.workbench import _await
    release = threading.Event()
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(InterruptedError):
            _await(pool.submit(release.wait, 30), lambda: time.perf_counter() - start > 0.3)
        assert time.perf_counter() - start < 2
        release.set()
        assert _await(pool.submit(lambda: 42), lambda: False) == 42 and _await(pool.submit(lambda: 7), None) == 7
        with pytest.raises(ZeroDivisionError):
            _await(pool.submit(lambda: 1 / 0), lambda: False)


def test_a_stopped_umap_fit_lands_in_the_cache_and_is_never_fitted_twice(monkeypatch):
    """Draw (UMAP), Stop, Draw again: the first fit goes on in the background and the second request
    waits on it; no second fit starts and no thread piles up (it used to start one per Draw)."""
    import threading

    import app.workbench as W
    import core.projection
    calls, release = [], threading.Event()

    def slow_umap(X, seed=0):
        calls.append(seed)
        release.wait(30)
        return ("reducer", seed)
    monkeypatch.setattr(core.projection, "umap_model", slow_umap)
    wb = Workbench(None, None)  # the cache of fits needs no model
    X = torch.zeros(3, 2)
    with pytest.raises(InterruptedError):
        W._await(wb._umap_fit(("k",), X, 1), lambda: True)  # the visitor stops at once
    again = wb._umap_fit(("k",), X, 1)  # Draw again while the first fit runs: the same fit
    assert again is wb._umap_fits[("k",)]
    release.set()
    assert W._await(again, lambda: False) == ("reducer", 1)
    assert calls == [1] and wb._umaps[("k",)] == ("reducer", 1) and not wb._umap_fits
    assert W._await(wb._umap_fit(("k",), X, 1), None) == ("reducer", 1) and calls == [1]  # from the cache


def test_forget_someone_on_a_model_without_a_world_runs_every_view(tmp_path):
    """The open world in the app: a model folder with no world.json (a tiny Qwen2.5-VL) and photos
    and a name. The retained set is then only the built-in scene questions and private-data
    requests; the session's playground, examples, evaluation, null space, activation map and a
    hardening round all work on that person, and a second session still has no forget set."""
    from app.workbench import Session
    from core.models.tiny import plain_english_words, save_tiny
    folder = save_tiny("qwen2_5_vl", tmp_path / "q", words=plain_english_words())  # spells the name like a real tokenizer
    assert not (folder / "world.json").exists()
    wb = Workbench.load(folder, eraser=None)
    assert wb.world is None and wb.eraser is None
    paths = []
    for i in range(2):
        random_image(40 + i).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    sess, other = Session(), Session()
    stages = []
    eraser = wb.forget_someone(paths, "Sam Rivers", "", sess, progress=lambda s, d, t: stages.append(s))
    sess.eraser = eraser
    assert {"forget", "retain", "tuning"} <= set(stages)  # a first fit on a model with no eraser is tuned, as `fit`
    assert sess.data.forget[0].name == "Sam Rivers" and sess.data.retain == []
    assert eraser.config.data_source == "upload: Sam Rivers"
    assert eraser.config.preset == "workbench" and eraser.config.subject_gates  # the measured recipe, not bare defaults
    cmp = wb.compare(paths[0], "Who is this person?", 1.0, None, session=sess)
    assert set(cmp.gates) == set(eraser.fitted_layers) and all(0.0 <= g <= 1.0 for g in cmp.gates.values())
    assert [label for label, _ in wb.examples(eraser, session=sess)] == ["forget: Sam Rivers"]
    res, plain = wb.evaluate(eraser, 2, session=sess), wb.evaluate(None, 2, session=sess)
    # nothing retained was brought: the built-in scored scenes show what the eraser costs
    assert set(res.splits) == {"forget", "scenes"} and set(res.refusal_prompts) == {"forget"}
    assert res.splits["scenes"]["image_text"]["n"] == plain.splits["scenes"]["image_text"]["n"] == 2 * 9
    layer = eraser.fitted_layers[-1]
    rows = wb.nullspace_view(eraser, layer)[3]
    assert rows[-1][4] == round(float(eraser.diagnostics["forget_gates"][layer].mean()), 3)
    hardened, lines = wb.harden(sess, 1, 1)
    assert len(lines) == 1 and sess.eraser is hardened and hardened.config.adversarial_rounds == 1
    sets = wb.activation_sets(hardened, session=sess)
    assert {p.tag for p in sets.forget} == {sess.data.forget_ids[0]} and len(sets.retain) > 0
    with pytest.raises(UserError, match="Forget someone"):
        wb.eraser_for(other)
    # photos of people to keep, each file named after the person: they become the retained set
    keep = []
    for i, file in enumerate(("Alex_Morgan.png", "Alex_Morgan_2.png", "jordan-lee.png")):
        random_image(50 + i).save(tmp_path / file)
        keep.append(str(tmp_path / file))
    kept = Session()
    kept.eraser = wb.forget_someone(paths, "Sam Rivers", "", kept, keep=keep)
    assert {r.name: len(r.images) for r in kept.data.retain} == {"Alex Morgan": 2, "Jordan Lee": 1}
    assert kept.eraser.config.counts["retain"] > eraser.config.counts["retain"]
    assert set(wb.evaluate(kept.eraser, 1, session=kept).splits) == {"forget", "retain"}  # no scenes needed
    (tmp_path / "2.png").write_bytes((tmp_path / "0.png").read_bytes())
    for bad, kwargs, message in (([str(tmp_path / "2.png")], {}, "name each photo after the person"),
                                 (keep, {"add": True}, "People to keep join a new fit"),
                                 ([str(tmp_path / "Sam_Rivers.png")], {}, "both the person to forget and one of"),
                                 # a copy of the file, with the name spaced and cased otherwise: still that person
                                 ([str(tmp_path / "sam_RIVERS (1).png")], {}, "both the person to forget and one of")):
        if not Path(bad[0]).exists():
            random_image(9).save(bad[0])
        with pytest.raises(UserError, match=message):
            wb.forget_someone(paths, "Sam Rivers", "", Session(eraser=kept.eraser), keep=bad, **kwargs)


def test_an_encrypted_or_damaged_eraser_zip_is_a_sentence_not_a_server_error(tmp_path):
    """An encrypted zip raised RuntimeError, damaged deflate data zlib.error: "Something went wrong
    on the server" with no word on the file."""
    import zipfile

    from app.workbench import CONFIG_NAME as CFG
    wb = _workbench()
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(CFG, "{" + '"x": 1, ' * 2000 + "}")
    raw = bytearray(damaged.read_bytes())
    start = raw.index(b"PK\x03\x04") + 30 + len(CFG)  # the compressed data of the first entry
    raw[start + 5:start + 40] = b"\xff" * 35
    damaged.write_bytes(bytes(raw))
    encrypted = tmp_path / "encrypted.zip"
    with zipfile.ZipFile(encrypted, "w") as z:
        z.writestr(CFG, "{}")
    raw = bytearray(encrypted.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" bit in the local and central headers
        at = raw.index(sig) + (6 if sig == b"PK\x03\x04" else 8)
        raw[at] |= 1
    encrypted.write_bytes(bytes(raw))
    for bad in (damaged, encrypted):
        with pytest.raises(UserError, match="cannot be read|not a zip|Could not read"):
            wb.load_eraser_zip(bad)


def test_a_public_download_names_the_model_by_its_folder_only(tmp_path, monkeypatch):
    """The zip's config carried the server's absolute model path in public mode."""
    import json
    import zipfile

    from app.workbench import eraser_zip
    import copy
    eraser = copy.copy(_workbench().eraser)
    eraser.config = copy.deepcopy(eraser.config)
    eraser.config.model = {"name_or_path": "/srv/private/models/toy-llava", "fingerprint": "w1-0123abcd"}
    monkeypatch.setenv("MLLMERASER_PUBLIC", "1")
    with zipfile.ZipFile(eraser_zip(eraser, tmp_path)) as z:
        cfg = json.loads(z.read("eraser_config.json"))
    assert cfg["model"] == {"name_or_path": "toy-llava", "fingerprint": "w1-0123abcd"}
    assert eraser.config.model["name_or_path"] == "/srv/private/models/toy-llava"  # the session's eraser untouched


def test_the_attacks_say_what_is_missing_when_the_people_have_no_picture_cloze(toy):
    """A forget set without fill-in-the-blank questions asked with a picture (Forget someone with
    qa-only facts, MLLMU files without Mask_Task) ended in "no questions to score" as a server error."""
    import dataclasses

    from app.workbench import Session
    wb, eraser = toy
    data = wb.data_for(eraser, None)
    bare = [dataclasses.replace(r, mask=[]) for r in data.forget]
    sess = Session(eraser=eraser, data=dataclasses.replace(data, forget=bare))
    with pytest.raises(UserError, match="fill-in-the-blank questions asked with a picture"):
        wb.attack(eraser, 1, 2, session=sess)
