"""Adversarial gate fitting on a tiny model: the attack targets the gate it is given, and the
hardened gate stays higher on attacked images than the gate they were made against."""
import pytest
import torch

from conftest import random_image, tiny_adapter
from core.activations import Prompt
from core.eraser import Eraser, EraserConfig
from core.hardening import attacked_prompts, harden, hardening_retain_rows, hardening_rows
from core.pgd import PGDConfig

CFG = PGDConfig(eps=16 / 255, step_size=4 / 255, steps=4, seed=0)


def _person(tag, seed, n=4):
    return [Prompt("who is the person in this picture ?", random_image(seed * 10 + i), tag) for i in range(n)]


@pytest.fixture(scope="module")
def live():
    a = tiny_adapter("llava")
    retain = [p for s in range(4) for p in _person(f"r{s}", 100 + s, 3)]
    recall = [Prompt("tell me the name of this person please", random_image(200 + i)) for i in range(4)]
    erase = [Prompt("sorry cannot share the name", random_image(300 + i)) for i in range(4)]
    cfg = EraserConfig(ratio=1.0, gamma=1e-3, retain_weight=0.5, subject_gates=True, steer_layers=[1], strength=2.0)
    return a, Eraser.fit(a, _person("p0", 1) + _person("p1", 2), retain, recall, erase, cfg)


def _gate(a, eraser, prompts):
    return eraser.gate_values(a, prompts)[:, 1].mean().item()


def test_the_attack_optimises_the_gate_it_is_given(live):
    """Images attacked against eraser A close A's gate more than images attacked against another
    gate B do: an attack that optimised a stale gate would fail this."""
    a, eraser = live
    g = torch.Generator().manual_seed(5)
    other = Eraser(eraser.direction, torch.randn(eraser.gate.shape, generator=g, dtype=torch.float64) * 0.05,
                   eraser.config)
    rows = _person("p0", 1)
    against_a = attacked_prompts(a, eraser, rows, CFG)
    against_b = attacked_prompts(a, other, rows, CFG)
    assert _gate(a, eraser, against_a) < _gate(a, eraser, against_b)
    assert _gate(a, eraser, against_a) < _gate(a, eraser, rows)  # the attack lowers the gate it targets


def test_hardening_adds_the_attacked_rows_and_raises_the_gate_on_them(live):
    a, eraser = live
    rows = _person("p0", 1) + _person("p1", 2)
    attacked = attacked_prompts(a, eraser, rows, CFG)
    hard = harden(eraser, a, rows, rounds=1, cfg=CFG)
    assert len(hard.state.H_forget) == len(eraser.state.H_forget) + len(rows)
    assert [r["action"] for r in hard.config.requests][-1] == "harden" and hard.config.subjects == ["p0", "p1"]
    assert _gate(a, hard, attacked) > _gate(a, eraser, attacked)
    assert torch.equal(hard.direction, eraser.direction)


def test_hardening_can_teach_each_image_at_its_best_step(live):
    """keep="best" adds each image at the PGD step where its gate was lowest: never a higher gate
    than the last step's image (up to the 8-bit rounding of a saved picture), lower here on this
    seeded case, and those are the rows the round adds."""
    a, eraser = live
    rows = _person("p0", 1) + _person("p1", 2)
    last = eraser.gate_values(a, attacked_prompts(a, eraser, rows, CFG))[:, 1]
    best = eraser.gate_values(a, attacked_prompts(a, eraser, rows, CFG, keep="best"))[:, 1]
    assert (best <= last + 0.02).all() and best.mean() < last.mean()
    hard = harden(eraser, a, rows, rounds=1, cfg=CFG, keep="best")
    from core.activations import collect_layers
    best_rows = collect_layers(a, attacked_prompts(a, eraser, rows, CFG, keep="best"), eraser.config.layers,
                               position=eraser.gate_position)
    n = len(eraser.state.H_forget)
    assert torch.allclose(hard.state.H_forget[n:], best_rows.float(), atol=1e-5)


def test_hardening_refuses_rows_it_cannot_use(live):
    a, eraser = live
    with pytest.raises(ValueError, match="not forgotten: r0"):
        harden(eraser, a, _person("r0", 100), cfg=CFG)
    with pytest.raises(ValueError, match="with images"):
        harden(eraser, a, [Prompt("who is p0 ?", None, "p0")], cfg=CFG)
    with pytest.raises(ValueError, match="rounds"):
        harden(eraser, a, _person("p0", 1), rounds=0, cfg=CFG)


def test_two_sided_hardening_adds_gate_opening_retain_rows_and_lowers_the_gate_on_them(live):
    """Retained people's images perturbed to OPEN the gate become retain rows: the two-sided gate
    is lower on them than the one-sided gate, while the forget side's attacked rows are kept."""
    a, eraser = live
    rows = _person("p0", 1) + _person("p1", 2)
    others = [p for s in range(4) for p in _person(f"r{s}", 100 + s, 3)]
    opened = attacked_prompts(a, eraser, others, CFG, close=False)
    assert _gate(a, eraser, opened) > _gate(a, eraser, others)  # the attack opens the gate it targets
    one = harden(eraser, a, rows, rounds=1, cfg=CFG)
    two = harden(eraser, a, rows, rounds=1, cfg=CFG, retain_prompts=others)
    assert len(two.state.H_retain) == len(eraser.state.H_retain) + len(others)
    assert two.state.retain_tags[-len(others):] == [p.tag for p in others]
    assert len(two.state.H_forget) == len(one.state.H_forget)
    assert _gate(a, two, opened) < _gate(a, one, opened)


def test_two_sided_hardening_refuses_forgotten_people_as_retain_rows(live):
    a, eraser = live
    with pytest.raises(ValueError, match="retained subjects; forgotten: p1"):
        harden(eraser, a, _person("p0", 1), cfg=CFG, retain_prompts=_person("p1", 2))


def test_hardening_retain_rows_spread_over_people_and_skip_untagged_prompts():
    people = [p for s in range(3) for p in _person(f"r{s}", 100 + s, 4)]
    scenes = [Prompt("what is in this picture ?", random_image(900), "")]
    picked = hardening_retain_rows(people + scenes, 6, seed=0)
    assert len(picked) == 6 and sorted(p.tag for p in picked) == ["r0", "r0", "r1", "r1", "r2", "r2"]
    assert picked == hardening_retain_rows(people + scenes, 6, seed=0)  # seeded
    assert len(hardening_retain_rows(people, 100)) == 12  # at most what there is


def test_hardening_rows_are_the_first_image_prompts_of_each_forget_subject():
    people = [p for s in range(2) for p in _person(f"f{s}", 200 + s, 5)]
    text = [Prompt("who is f0 ?", None, "f0")]
    rows = hardening_rows(text + people, per_subject=3)
    assert [p.tag for p in rows] == ["f0"] * 3 + ["f1"] * 3 and all(p.image is not None for p in rows)
    assert rows[:3] == people[:3] and rows[3:] == people[5:8]


def test_a_stopped_hardening_raises_instead_of_refitting_on_unattacked_images(live):
    """A stop during the attack returned an eraser "hardened" on random-start images, its history
    saying three rounds."""
    a, eraser = live
    with pytest.raises(InterruptedError, match="hardening stopped"):
        harden(eraser, a, _person("p0", 1), rounds=3, cfg=CFG, should_stop=lambda: True)
