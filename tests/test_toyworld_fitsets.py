"""The toy world's own prompt sets for fitting: who is in which set, the four direction
constructions, and the ForgetData that carries them into core.contrast."""
import pytest
import torch

from conftest import tiny_adapter
from core import contrast
from core.data.source import RETAIN_GROUPS
from core.toyworld.fitsets import (KINDS, VARIANT_FIRST_TURN, VARIANT_INJECTION, VARIANT_PREFIX, TOY_WORDINGS,
                                   direction_sets, eraser_gate_sets, forget_spec, gate_sets, retain_groups, toy_data)
from core.evaluation import is_refusal
from core.pgd import PGDConfig
from core.toyworld.questions import GENERAL_FACTS, REFUSAL
from core.toyworld.world import WorldConfig, make_world

WORLD = make_world(WorldConfig(seed=1, n_people=20, n_real_scenes=2, n_train_scenes=6))


def test_gate_sets_separate_forget_people_from_everything_else():
    forget, retain = gate_sets(WORLD, "forget_10", per_person=5, n_retain=80, seed=0)
    forget_ids = {p.id for p in WORLD.forget_people("forget_10")}
    assert {p.tag for p in forget} == forget_ids and len(forget) == 5 * len(forget_ids)
    assert not forget_ids & {p.tag for p in retain}
    # 80 sampled + every general fact 10 times per format (the real split's text questions)
    assert len(retain) == 80 + 10 * 4 * len(GENERAL_FACTS)
    for f in GENERAL_FACTS:
        assert sum(f.question in p.question for p in retain) >= 30  # qa, mcq, gen
        assert sum(f.cloze.replace("__", "[Blank]") in p.question for p in retain) >= 10
    assert len(gate_sets(WORLD, "forget_10", per_person=5, n_retain=80, seed=0, fact_draws=0)[1]) == 80
    # the retain set holds the model's own refusal prompts, scenes/facts, images and text
    questions = " ".join(p.question for p in retain).lower()
    assert any(w in questions for w in ("address", "phone", "medical", "password", "bank"))
    assert any(p.image is None for p in retain) and any(p.image is not None for p in retain)
    again, _ = gate_sets(WORLD, "forget_10", per_person=5, n_retain=80, seed=0)
    assert [p.question for p in again] == [p.question for p in forget]


def test_an_erasers_gate_sets_follow_its_config():
    from core.eraser import EraserConfig
    ids = [p.id for p in WORLD.people[:2]]
    assert forget_spec("") == "forget_10" and forget_spec("forget_5") == "forget_5"
    assert forget_spec(",".join(ids)) == ids
    cfg = EraserConfig(forget_split=",".join(ids), seed=3, gate_retain=50, gate_variants=0.5)
    forget, retain = eraser_gate_sets(WORLD, cfg)
    want_f, want_r = gate_sets(WORLD, ids, n_retain=50, seed=3, variants=0.5)
    assert [p.question for p in forget] == [p.question for p in want_f] and {p.tag for p in forget} == set(ids)
    assert [p.question for p in retain] == [p.question for p in want_r]
    assert len(contrast.fit_sets(toy_data(WORLD), None, n_retain=50).retain) == len(
        gate_sets(WORLD, "forget_10", n_retain=50)[1])


def test_gate_variants_add_later_turn_formats_of_the_same_people_and_keep_the_base_sets():
    base_f, base_r = gate_sets(WORLD, "forget_10", per_person=8, n_retain=80, seed=0)
    forget, retain = gate_sets(WORLD, "forget_10", per_person=8, n_retain=80, seed=0, variants=0.5)
    assert [p.question for p in forget[:len(base_f)]] == [p.question for p in base_f]
    assert [p.question for p in retain[:len(base_r)]] == [p.question for p in base_r]
    fv, rv = forget[len(base_f):], retain[len(base_r):]
    assert len(fv) == len(base_f) // 2 and len(rv) == 40
    forget_ids = {p.id for p in WORLD.forget_people("forget_10")}
    assert {p.tag for p in fv} <= forget_ids and not {p.tag for p in rv} & forget_ids
    for variants in (fv, rv):
        assert all(p.image is not None for p in variants)
        turns = [p for p in variants if p.history]
        assert turns and all(p.history[0][0] == VARIANT_FIRST_TURN
                             and WORLD.person(p.tag).name in p.history[0][1] for p in turns)
        filled = [p for p in variants if p.prefill]
        assert filled and all(p.prefill.startswith("This person") for p in filled)
        assert any(p.question.startswith(VARIANT_PREFIX("")) for p in variants)
        assert VARIANT_PREFIX("").startswith(GENERAL_FACTS[4].question)
        assert any(p.question.startswith(VARIANT_INJECTION) for p in variants)
        assert len(turns) == len(filled) == len(variants) // 4  # the four kinds in turn
    # the attacks use other wordings: the report measures generalisation, not recall
    from core.robustness import FIRST_TURN, INJECTION
    assert VARIANT_FIRST_TURN != FIRST_TURN and VARIANT_INJECTION != INJECTION


def test_retain_groups_label_people_by_modality_and_the_rest_as_general():
    _, retain = gate_sets(WORLD, "forget_10", per_person=2, n_retain=80, seed=0, fact_draws=1)
    groups = retain_groups(WORLD, retain)
    n_facts = 4 * len(GENERAL_FACTS)  # appended last, once per format
    assert set(groups[-n_facts:]) == {"general"}
    people = [(p, g) for p, g in zip(retain[:80], groups) if p.tag.startswith("p")]
    assert people and all(g == ("people, image" if p.image is not None else "people, by name") for p, g in people)
    assert set(groups) == set(RETAIN_GROUPS)  # all three kinds are in a retain draw


def test_recall_construction_pairs_the_same_image_with_recall_vs_refusal_prompts():
    recall, erase, targets = direction_sets(WORLD, "recall", "forget_10", per_person=3)
    assert targets is None
    assert len(recall) == len(erase) == 3 * len(WORLD.forget_people("forget_10"))
    assert all(r.image is e.image for r, e in zip(recall, erase))
    assert all(r.question != e.question for r, e in zip(recall, erase))
    text_r, text_e, _ = direction_sets(WORLD, "text_only", "forget_10", per_person=2)
    assert all(p.image is None for p in text_r + text_e)
    names = {p.name for p in WORLD.forget_people("forget_10")}
    assert all(any(n in p.question for n in names) for p in text_r)


def test_pgd_constructions_change_only_the_image():
    a = tiny_adapter("llava")
    cfg = PGDConfig(steps=2, eps=16 / 255, step_size=8 / 255)
    people = len(WORLD.forget_people("forget_10"))
    recall, erase = contrast.direction_sets(toy_data(WORLD), a, "image_only", per_person=1, pgd_cfg=cfg)
    assert len(recall) == len(erase) == people  # the loops below check every pair, and there are pairs
    for r, e in zip(recall, erase):
        assert r.question == e.question
        clean = a.to_pixels(e.image)
        assert isinstance(r.image, torch.Tensor)
        assert 0 < float((r.image - clean).abs().max()) <= 16 / 255 + 1e-6
    recall, erase = contrast.direction_sets(toy_data(WORLD), a, "refusal", per_person=2, pgd_cfg=cfg)
    assert len(recall) == len(erase) == 2 * people
    for r, e in zip(recall, erase):  # the same picture, PGD-moved on the recall side; another request wording
        assert r.tag == e.tag and isinstance(r.image, torch.Tensor) and not isinstance(e.image, torch.Tensor)
        assert 0 < float((r.image - a.to_pixels(e.image)).abs().max()) <= 16 / 255 + 1e-6


def test_unknown_kind_and_missing_model():
    assert set(KINDS) == {"recall", "refusal", "text_only", "image_only"}
    with pytest.raises(ValueError, match="unknown direction"):
        direction_sets(WORLD, "vibes")
    with pytest.raises(ValueError, match="needs the model"):
        contrast.direction_sets(toy_data(WORLD), None, "refusal")
    sets = contrast.fit_sets(toy_data(WORLD), None, "recall", seed=0)
    assert sets.kind == "recall" and sets.forget and sets.retain and sets.recall and sets.erase
    assert REFUSAL and is_refusal(REFUSAL)


def test_toy_data_carries_the_worlds_splits_wordings_and_builders():
    data = toy_data(WORLD, "forget_10")
    forget_ids = {p.id for p in WORLD.forget_people("forget_10")}
    assert set(data.forget_ids) == forget_ids and {r.id for r in data.test} == forget_ids
    assert not forget_ids & {r.id for r in data.retain} and data.real
    assert data.wordings is TOY_WORDINGS
    # core.contrast delegates to the world's builders: the shipped eraser's fit sets are reproduced
    f, r = contrast.gate_sets(data, per_person=5, n_retain=80, seed=0)
    want_f, want_r = gate_sets(WORLD, "forget_10", per_person=5, n_retain=80, seed=0)
    assert [p.question for p in f] == [p.question for p in want_f] and len(r) == len(want_r)
    assert contrast.retain_groups(data, r) == retain_groups(WORLD, r)
    assert set(contrast.refusal_sets(data)) == {"forget", "retain"}
    # the toy world's answer starts are the plain-English ones the attacks use on any source
    from core.data.wordings import ANSWER_STARTS
    assert TOY_WORDINGS.answer_starts == ANSWER_STARTS
