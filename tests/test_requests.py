"""Forget requests on a live eraser: add and withdraw subjects, equal to a fit from scratch."""
from dataclasses import replace

import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt
from core.eraser import Eraser, EraserConfig, STATE_NAME, fit_gates
from core.requests import RequestError, add_subjects, remove_subjects


def _person(tag: str, seed: int, n: int = 4) -> list[Prompt]:
    qs = ["who is the person in this picture ?", "what is this ?", "describe the image please", "who is this ?"]
    return [Prompt(qs[i % len(qs)], random_image(seed * 10 + i), tag) for i in range(n)]


def _retain() -> list[Prompt]:
    return [p for s in range(6) for p in _person(f"r{s}", 100 + s, 3)] + \
        [Prompt("what colour is the shape ?", random_image(900 + i)) for i in range(6)]


def _contrast():
    return ([Prompt("tell me the name of this person please", random_image(200 + i)) for i in range(4)],
            [Prompt("sorry cannot share the name", random_image(300 + i)) for i in range(4)])


CFG = dict(ratio=1.0, gamma=1e-3, retain_weight=0.5, subject_gates=True, seed=3)


@pytest.fixture(scope="module")
def live():
    a = tiny_adapter("llava")
    recall, erase = _contrast()
    first = Eraser.fit(a, _person("p0", 1), _retain(), recall, erase, EraserConfig(**CFG))
    return a, first


def test_adding_a_subject_equals_a_fit_from_scratch_and_keeps_the_history(live):
    a, first = live
    grown = add_subjects(first, a, _person("p1", 2) + _person("r2", 102, 3))  # r2 was retained until now
    assert grown.config.subjects == ["p0", "p1", "r2"] and first.config.subjects == ["p0"]  # first untouched
    recall, erase = _contrast()
    retain = [p for p in _retain() if p.tag != "r2"]
    scratch = Eraser.fit(a, _person("p0", 1) + _person("p1", 2) + _person("r2", 102, 3), retain, recall, erase,
                         EraserConfig(**CFG))
    rel = (grown.gate - scratch.gate).norm() / scratch.gate.norm()
    assert rel < 1e-6  # the same fit; float32 activations collected in other batches
    assert torch.equal(grown.direction, first.direction)  # the direction is the first fit's
    assert [r["action"] for r in grown.config.requests] == ["fit", "add"]
    assert grown.config.requests[1]["subjects"] == ["p1", "r2"] and grown.config.requests[1]["data_hash"]
    assert "r2" not in grown.state.retain_tags and grown.state.H_retain.shape[0] == len(retain)
    # the same person added from photos under a new id: their retained rows under the old one go too
    again = add_subjects(first, a, _person("upload-r3", 103, 3), same_as=["r3"])
    assert "r3" in first.state.retain_tags and "r3" not in again.state.retain_tags
    assert again.config.subjects == ["p0", "upload-r3"]


def test_a_joint_gate_grows_and_shrinks_like_a_fit_from_scratch():
    """The joint gate (layers 0 and 1 together) is solved again on every request: adding a person
    gives the from-scratch fit of the grown set, and a withdrawal solves the joint gate again on
    what is left (their questions retained)."""
    a = tiny_adapter("llava")
    recall, erase = _contrast()
    cfg = EraserConfig(**CFG, joint_gate=[0, 1], steer_layers=[0], position="mean_prompt_tokens")
    first = Eraser.fit(a, _person("p0", 1), _retain(), recall, erase, cfg)
    grown = add_subjects(first, a, _person("p1", 2))
    scratch = Eraser.fit(a, _person("p0", 1) + _person("p1", 2), _retain(), recall, erase,
                         EraserConfig(**CFG, joint_gate=[0, 1], steer_layers=[0], position="mean_prompt_tokens"))
    assert grown.config.joint_gate == [0, 1]
    assert ((grown.joint - scratch.joint).norm() / scratch.joint.norm()) < 1e-6
    assert ((grown.gate - scratch.gate).norm() / scratch.gate.norm()) < 1e-6
    back = remove_subjects(grown, ["p1"])
    assert back.config.subjects == ["p0"] and back.config.joint_gate == [0, 1]
    _, _, again = fit_gates(back.state.H_forget.double(), back.state.H_retain.double(), back.config,
                            torch.zeros(len(back.state.H_forget), dtype=torch.int64))
    assert torch.allclose(back.joint, again) and not torch.allclose(back.joint, first.joint, atol=1e-3)


def _contrast_of(tag, seed):
    return ([Prompt("tell me the name of this person please", random_image(seed * 10 + i), tag) for i in range(3)],
            [Prompt("sorry cannot share the name", random_image(seed * 10 + 5 + i), tag) for i in range(3)])


def test_a_ramp_read_off_the_rows_follows_them_when_subjects_are_added():
    """gate_ramp: the fit reads the floor and full value off its rows, and each added subject reads
    them again off the grown rows, equal to a fit from scratch of the same set; a withdrawal keeps
    them (it must not move anyone else)."""
    a = tiny_adapter("llava")
    recall, erase = _contrast()
    cfg = dict(CFG, gamma=1e-6, retain_weight=5.0, gate_ramp=True)
    first = Eraser.fit(a, _person("p0", 1), _retain(), recall, erase, EraserConfig(**cfg))
    assert (first.config.gate_floor, first.config.gate_full) == first.ramp_from_rows()
    grown = add_subjects(first, a, _person("p1", 2))
    assert (grown.config.gate_floor, grown.config.gate_full) == grown.ramp_from_rows()
    scratch = Eraser.fit(a, _person("p0", 1) + _person("p1", 2), _retain(), recall, erase, EraserConfig(**cfg))
    assert grown.config.gate_floor == pytest.approx(scratch.config.gate_floor, abs=2e-3)
    assert grown.config.gate_full == pytest.approx(scratch.config.gate_full, abs=2e-3)
    assert (first.config.gate_floor, first.config.gate_full) != (grown.config.gate_floor, grown.config.gate_full)
    shrunk = remove_subjects(grown, ["p1"])  # a withdrawal keeps the ramp: nobody else's answers may move
    assert (shrunk.config.gate_floor, shrunk.config.gate_full) == (grown.config.gate_floor, grown.config.gate_full)


def test_a_request_with_contrast_prompts_builds_the_direction_from_everyone_forgotten(tmp_path):
    """With the new subject's recall / erase prompts the direction is the mean difference over
    everyone forgotten (a fit from scratch on the same prompts, direction and gates); the fit state
    keeps them through save / load; a withdrawal drops their rows and leaves the direction."""
    a = tiny_adapter("llava")
    r0, e0 = _contrast_of("p0", 40)
    r1, e1 = _contrast_of("p1", 50)
    cfg = dict(**CFG, position="mean_prompt_tokens")
    first = Eraser.fit(a, _person("p0", 1), _retain() + _person("p1", 2), r0, e0, EraserConfig(**cfg))
    assert first.state.has_contrast and first.state.recall_tags == ["p0"] * 3
    first.save_pretrained(tmp_path, state=True)
    first = Eraser.from_pretrained(tmp_path, adapter=a)
    grown = add_subjects(first, a, _person("p1", 2), contrast=(r1, e1))
    scratch = Eraser.fit(a, _person("p0", 1) + _person("p1", 2), _retain(), r0 + r1, e0 + e1, EraserConfig(**cfg))
    assert ((grown.direction - scratch.direction).norm() / scratch.direction.norm()) < 1e-6
    assert ((grown.gate - scratch.gate).norm() / scratch.gate.norm()) < 1e-6
    assert not torch.allclose(grown.direction, first.direction, atol=1e-4)
    # the direction's row counts follow the request (they stayed at the first fit's)
    assert (grown.config.counts["recall"], grown.config.counts["erase"]) == (len(r0 + r1), len(e0 + e1))
    back = remove_subjects(grown, ["p1"])
    assert torch.equal(back.direction, grown.direction) and back.state.recall_tags == ["p0"] * 3
    assert back.config.counts["recall"] == len(r0 + r1)  # the direction kept is still built from those rows
    with pytest.raises(RequestError, match="of every new subject and of no one else"):
        add_subjects(first, a, _person("p1", 2), contrast=(r0, e1))
    # two new subjects, recall prompts of one and erase prompts of the other: a direction from two people's difference
    r2, e2 = _contrast_of("p2", 60)
    with pytest.raises(RequestError, match=r"new subjects: p1, p2"):
        add_subjects(first, a, _person("p1", 2) + _person("p2", 3), contrast=(r1, e2))
    plain = Eraser(first.direction, first.gate, first.config, state=replace(first.state, H_recall=None, recall_tags=[],
                                                                            H_erase=None, erase_tags=[]))
    with pytest.raises(RequestError, match="does not keep the direction's prompts"):
        add_subjects(plain, a, _person("p1", 2), contrast=(r1, e1))
    assert torch.equal(add_subjects(plain, a, _person("p1", 2)).direction, first.direction)  # without: it stays


@pytest.fixture(scope="module")
def toy_requests():
    """The shipped toy model (people it really knows): forget one person, then a second (a
    small retain sample keeps this to seconds)."""
    from core.contrast import eraser_gate_sets, fit_sets
    from core.models.load import load_adapter
    from core.toyworld.fitsets import toy_data
    from core.toyworld.train import load_world
    a, world = load_adapter("assets/toy-llava"), load_world("assets/toy-llava")
    first_id, second_id = world.people[0].id, world.people[1].id
    cfg = EraserConfig(ratio=1.0, gamma=10.0, retain_weight=0.3, subject_gates=True, position="mean_prompt_tokens",
                       gate_retain=400, steer_layers=[1], strength=2.0, joint_gate=[0, 1, 2, 3])  # the shipped recipe
    sets = fit_sets(toy_data(world, [first_id]), a, seed=0, n_retain=cfg.gate_retain)
    first = Eraser.fit(a, sets.forget, sets.retain, sets.recall, sets.erase, cfg)
    both = add_subjects(first, a, eraser_gate_sets(toy_data(world, [second_id]), cfg)[0])
    return a, world, first, both, first_id, second_id


def test_withdrawing_restores_the_subjects_answers_and_changes_nobody_elses(toy_requests):
    from core.evaluation import replies
    from core.toyworld.fitsets import toy_data
    a, world, first, both, first_id, second_id = toy_requests
    back = remove_subjects(both, [second_id])
    assert back.config.subjects == [first_id] and [r["action"] for r in back.config.requests] == ["fit", "add", "remove"]
    second, firsts = _eval_prompts(toy_data(world, [second_id])), _eval_prompts(toy_data(world, [first_id]))
    plain = replies(a, second + firsts, 12)
    with_both = replies(a, second + firsts, 12, steering=lambda: both.apply(a))
    after = replies(a, second + firsts, 12, steering=lambda: back.apply(a))
    n = len(second)
    assert sum(x != y for x, y in zip(with_both[:n], plain[:n])) >= n // 2  # the second person was forgotten...
    assert after[:n] == plain[:n]  # ...and after the withdrawal answers exactly as the unsteered model
    # the first person's gate is the same (the withdrawn rows keep their weight in it): same replies
    k = both.config.subjects.index(first_id)
    assert ((back.joint[:, 0] - both.joint[:, k]).norm() / both.joint[:, k].norm()) < 1e-8
    assert after[n:] == with_both[n:] and sum(x != y for x, y in zip(after[n:], plain[n:])) >= n // 2
    heavier = remove_subjects(both, [second_id], repeats=10)  # weighs them more: the other gate moves
    assert not torch.allclose(heavier.joint[:, 0], both.joint[:, k], atol=1e-6)
    with pytest.raises(RequestError, match="repeats must be an integer"):
        remove_subjects(both, [second_id], repeats=0)


def _eval_prompts(data) -> list[Prompt]:
    """A person's image+text evaluation questions (the evaluation's own, not the gate's rows)."""
    from core.evaluation import record_queries
    return [q.prompt for q in record_queries(data.forget[0], "forget") if q.modality == "image_text"][:8]


def test_bad_requests_say_what_to_do(live, tmp_path):
    a, first = live
    with pytest.raises(RequestError, match="already forgotten: p0"):
        add_subjects(first, a, _person("p0", 5))
    with pytest.raises(RequestError, match="not forgotten by this eraser: nobody"):
        remove_subjects(first, ["nobody"])
    with pytest.raises(RequestError, match="every subject"):
        remove_subjects(first, ["p0"])
    with pytest.raises(RequestError, match="tag"):
        add_subjects(first, a, [Prompt("who is this ?", random_image(0))])
    first.save_pretrained(tmp_path / "plain")  # without its fit state
    with pytest.raises(RequestError, match="fit state"):
        add_subjects(Eraser.from_pretrained(tmp_path / "plain"), a, _person("p1", 2))
    one_gate = Eraser.fit(a, _person("p0", 1), _retain(), *_contrast(), EraserConfig(ratio=1.0, gamma=1e-3))
    with pytest.raises(RequestError, match="one gate per subject"):
        add_subjects(one_gate, a, _person("p1", 2))
    from core.eraser import ModelMismatchError
    with pytest.raises(ModelMismatchError):
        add_subjects(first, tiny_adapter("llava", layers=3), _person("p1", 2))


def test_the_state_and_history_survive_saving(live, tmp_path):
    a, first = live
    grown = add_subjects(first, a, _person("p1", 2))
    grown.save_pretrained(tmp_path / "e", state=True)
    assert (tmp_path / "e" / STATE_NAME).is_file()
    loaded = Eraser.from_pretrained(tmp_path / "e", adapter=a)
    assert loaded.config.requests == grown.config.requests
    assert loaded.state.forget_tags == grown.state.forget_tags
    again = add_subjects(loaded, a, _person("p2", 3))
    assert again.config.subjects == ["p0", "p1", "p2"]
    grown.save_pretrained(tmp_path / "e")  # saved again without: the stale state is removed
    assert not (tmp_path / "e" / STATE_NAME).exists()


def test_an_added_subjects_contrast_is_made_at_the_fits_pgd_budget(live, monkeypatch):
    """`fit --direction refusal --eps 8`, then `forget --add`: the new subject's recall images were
    made at 16/255 and the direction rebuilt from the mixed set."""
    import core.contrast
    from core.requests import contrast_for
    a, first = live
    e = Eraser(first.direction, first.gate, replace(first.config, direction_kind="refusal", pgd_eps=8.0),
               first.diagnostics, first.state)
    asked = {}
    monkeypatch.setattr(core.contrast, "direction_sets", lambda *args, **kw: asked.update(kw) or ([], []))
    assert e.state.has_contrast and contrast_for(e, None, a, ["p1"]) == ([], [])
    assert asked["pgd_cfg"].eps == pytest.approx(8 / 255)
