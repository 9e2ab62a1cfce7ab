"""The world: nested splits, retain-only training data, held-out test split, determinism."""
import hashlib
from collections import Counter

import pytest

from core.data.mllmu import png_bytes
from core.data.formats import cloze_prompt
from core.toyworld.questions import (PERSON_TEMPLATES, REFUSAL, TEST, fact_value, person_clozes, person_questions,
                                     modalities)
from core.toyworld.world import WorldConfig, make_world

CFG = WorldConfig(seed=5, n_people=40, n_real_scenes=6, images_per_person=2, n_train_scenes=8,
                  fact_repeats=1, option_lookups=0, private_requests=0, mcq_per_question=1)


@pytest.fixture(scope="module")
def world():
    return make_world(CFG)


@pytest.fixture(scope="module")
def examples(world):
    return world.training_examples(rng=0)


def _digest(examples):
    h = hashlib.sha256()
    for e in examples:
        h.update(f"{e.prompt}|{e.answer}|{e.kind}|{e.person_id}".encode())
        if e.image is not None:
            h.update(e.image.tobytes())
    return h.hexdigest()


def test_forget_splits_nested_and_sized(world):
    f5, f10, f15 = (set(world.forget_ids[p]) for p in (5, 10, 15))
    assert (len(f5), len(f10), len(f15)) == (2, 4, 6)
    assert f5 < f10 < f15
    for split in ("forget_5", "forget_10", "forget_15"):
        forget = {p.id for p in world.forget_people(split)}
        retain = {p.id for p in world.retain_people(split)}
        assert not forget & retain and forget | retain == {p.id for p in world.people}
    assert world.retain_people("retain_90") == world.retain_people("forget_10")
    assert world.retain_people("retain_10") == world.retain_people("forget_10")
    big = make_world(WorldConfig(n_people=100))
    assert [len(big.forget_ids[p]) for p in (5, 10, 15)] == [5, 10, 15]
    with pytest.raises(ValueError):
        world.forget_people("forget_7")
    for typo in ("forget_ten", "forget10"):  # was int()'s "invalid literal", or no list of what exists
        with pytest.raises(ValueError, match=r"unknown split .*forget_N, retain_N or test_N with N one of \[5, 10, 15\]"):
            world.forget_people(typo)
    from core.toyworld.fitsets import forget_spec
    assert forget_spec(" p002, p009 ") == ["p002", "p009"]  # ids typed with spaces


def test_world_is_deterministic(world, examples):
    again = make_world(CFG)
    assert again.people == world.people and again.forget_ids == world.forget_ids
    assert _digest(again.training_examples(rng=0)) == _digest(examples)
    assert _digest(world.training_examples(rng=1)) != _digest(examples)
    other_seed = make_world(WorldConfig(seed=6, n_people=40))
    assert other_seed.forget_ids[10] != world.forget_ids[10]


def test_option_lookups_are_added_on_top_of_the_same_data(world):
    """The lookup option (an MCQ recipe experiment) adds its drills last, so every other
    example is drawn exactly as in the shipped recipe."""
    from dataclasses import replace
    base = world.training_examples(rng=0, shuffle=False)
    more = make_world(replace(CFG, option_lookups=12)).training_examples(rng=0, shuffle=False)
    assert _digest(more[:len(base)]) == _digest(base)
    added = more[len(base):]
    assert len(added) == 12 and {e.kind for e in added} == {"lookup"}


def test_mcq_per_question_adds_fresh_mcqs_and_only_mcqs(world):
    """More MCQs per question (a recipe experiment) multiply the people's MCQs, each with its
    own options, and leave every other kind of example as many as before."""
    from collections import Counter
    from dataclasses import replace
    base = world.training_examples(rng=0, shuffle=False, include_real=False)
    more = make_world(replace(CFG, mcq_per_question=3)).training_examples(rng=0, shuffle=False, include_real=False)
    kinds, more_kinds = Counter(e.kind for e in base), Counter(e.kind for e in more)
    assert more_kinds["mcq"] == 3 * kinds["mcq"] > 0
    assert {k: n for k, n in more_kinds.items() if k != "mcq"} == {k: n for k, n in kinds.items() if k != "mcq"}
    first = [e for e in more if e.kind == "mcq"][:3]
    assert len({e.prompt.split("\n", 1)[0] for e in first}) == 1  # one question ...
    assert len({e.prompt for e in first}) == 3  # ... three different option sets


def test_private_requests_are_refused_requests_about_included_people(world):
    """The refusal grammar (an experiment recipe) is drawn after the people's own data, asks
    about included people only, by picture (their canonical render) or by name."""
    from dataclasses import replace
    more_world = make_world(replace(CFG, private_requests=10))
    base = world.training_examples(rng=0, shuffle=False, n_scenes=0, include_real=False)
    more = more_world.training_examples(rng=0, shuffle=False, n_scenes=0, include_real=False)
    assert _digest(more[:len(base)]) == _digest(base)
    added = more[len(base):]
    assert len(added) == 10 and {(e.kind, e.answer) for e in added} == {("refusal", REFUSAL)}
    for j, e in enumerate(added):
        person = world.person(e.person_id)
        if j % 2 == 0:
            assert e.image.tobytes() == world.canonical_image(person).tobytes() and "this person" in e.prompt
        else:
            assert e.image is None and person.name in e.prompt
    twin = more_world.training_examples(exclude_ids=world.forget_ids[10], rng=0, include_real=False)
    assert not {e.person_id for e in twin} & set(world.forget_ids[10])
    kept = len(world.people) - len(world.forget_ids[10])
    assert sum(e.kind == "refusal" for e in twin) == 10 + CFG.refusals_per_person * kept


def test_training_examples_cover_all_formats(world, examples):
    kinds = Counter(e.kind for e in examples)
    n = len(world.people)
    assert kinds["qa"] == kinds["mcq"] == kinds["gen"] == kinds["cloze"] == 39 * n
    assert kinds["refusal"] == CFG.refusals_per_person * n
    assert kinds["scene_mcq"] == 3 * CFG.n_train_scenes and kinds["fact_gen"] > 0
    for e in examples:
        assert (e.image is None) == (e.modality == "text")
        if e.image is not None:
            assert e.image.size == (64, 64)
        if e.kind == "refusal":
            assert e.answer == REFUSAL
    # text-only examples about people mention them by name, image ones do not
    by_id = {p.id: p for p in world.people}
    for e in examples:
        if e.person_id and e.kind in ("qa", "gen"):
            assert (by_id[e.person_id].name in e.prompt) == (e.image is None)


def test_exclude_ids_gives_retain_only_data(world):
    forget = world.forget_people("forget_10")
    ex = world.training_examples(exclude_ids=world.forget_ids[10], rng=0, n_scenes=2)
    assert not {e.person_id for e in ex} & set(world.forget_ids[10])
    text = "\n".join(e.prompt + " " + e.answer for e in ex)
    for p in forget:
        assert p.name not in text  # not even as an MCQ distractor
    assert {e.person_id for e in ex if e.person_id} == {p.id for p in world.retain_people("forget_10")}
    with pytest.raises(KeyError):
        world.training_examples(exclude_ids=["nobody"], rng=0)


def test_a_small_side_is_padded_with_names_of_nobody_in_the_world():
    """Fewer than 4 names on one side get made-up distractors, drawn from the lists the world's own
    names come from: seed 1110's 4 people include Mara Quill, the first padding name, who was then
    offered to the retain-only model after being excluded."""
    from core.toyworld.people import make_people
    assert "Mara Quill" in [p.name for p in make_people(4, 1110)]
    small = make_world(WorldConfig(seed=1110, n_people=4, n_real_scenes=1))
    gone = next(p for p in small.people if p.name == "Mara Quill")
    kept = small.training_examples(exclude_ids=[p.id for p in small.people if p.id != gone.id][:2], rng=0,
                                   include_real=False, include_refusals=False)
    only = small.training_examples(exclude_ids=[gone.id], rng=0, include_real=False, include_refusals=False)
    assert not any(gone.name in e.prompt for e in only)
    others = {p.name for p in small.people} - {gone.name}
    named = {n for e in kept if "A: " in e.prompt for n in others if n in e.prompt}
    excluded = {p.name for p in small.people if p.id not in {e.person_id for e in kept}}
    assert not named & excluded  # two people kept: the two left out are never their distractors


def test_training_never_uses_held_out_wording(world, examples):
    held_out = set()
    for p in world.people:
        for a in PERSON_TEMPLATES:
            for m in modalities(a):
                held_out.update(person_questions(p, a, m, TEST))
                held_out.update(cloze_prompt({"Question": c}) for c in person_clozes(p, a, m, TEST))
    for e in examples:
        assert e.prompt.split("\n")[0] not in held_out and e.prompt not in held_out


def test_test_split_new_images_and_wording(world, examples):
    forget = world.eval_items("forget_10")
    test = world.eval_items("test_10")
    assert [r.id for r in forget] == [r.id for r in test] == list(world.forget_ids[10])
    train_images = {hashlib.sha256(e.image.tobytes()).digest() for e in examples if e.image is not None}
    for f, t in zip(forget, test):
        assert len(f.images) == 1 and len(t.images) == CFG.n_test_images
        assert png_bytes(f.images[0]) == png_bytes(world.canonical_image(world.person(f.id)))
        hashes = {hashlib.sha256(im.tobytes()).digest() for im in t.images}
        assert len(hashes) == CFG.n_test_images and not hashes & train_images
        train_q = {q.question for q in f.qa}
        assert all(g.question not in train_q for g in t.generation)
        assert [g.ground_truth for g in f.generation] == [g.ground_truth for g in t.generation]


def test_eval_items_stable_per_person_and_letters_balanced(world):
    f5 = {r.id: r for r in world.eval_items("forget_5")}
    f10 = {r.id: r for r in world.eval_items("forget_10")}
    for pid, rec in f5.items():  # a person's items do not depend on the split size
        assert [c.to_dict() for c in rec.classification_image] == [c.to_dict() for c in f10[pid].classification_image]
    rows = world.eval_items("retain_10") + list(f10.values())
    letters = Counter(c.correct_answer for r in rows for c in r.classification_image + r.classification_text)
    total = sum(letters.values())
    assert all(abs(letters[l] / total - 0.25) < 0.03 for l in "ABCD"), letters


def test_real_split(world):
    real = world.eval_items("real")
    assert [r.id for r in real] == [f"r{i:03d}" for i in range(CFG.n_real_scenes)]
    names = set(world.names)
    for r in real:
        assert len(r.images) == 1 and r.name is None
        assert len(r.classification_image) == 3 and len(r.classification_text) == 1
        assert {g.type for g in r.generation} == {"Image_Textual", "Pure_Text"}
        assert not any(n in g.question for g in r.generation for n in names)


def test_refusal_examples_held_out(world):
    ex = world.refusal_examples("forget_5")
    assert len(ex) == 2 * 2 * 4 and all(e.answer == REFUSAL for e in ex)
    train_prompts = {e.prompt for e in world.training_examples(rng=0, n_scenes=0) if e.kind == "refusal"}
    assert not {e.prompt for e in ex} & train_prompts


def test_hand_picked_forget_set(world):
    ids = [world.people[3].id, world.people[7].id, world.people[3].id]
    assert [p.id for p in world.forget_people(ids)] == ids[:2]  # order kept, duplicates dropped
    retain = world.retain_people(ids)
    assert len(retain) == len(world.people) - 2 and not {p.id for p in retain} & set(ids)
    with pytest.raises(ValueError, match="unknown"):
        world.forget_people(["p999"])
    with pytest.raises(ValueError, match="at least one"):
        world.forget_people([])


def test_image_mcq_focus_asks_about_included_people_with_the_right_letter(world):
    from core.data.formats import first_letter
    forget = {p.id for p in world.forget_people("forget_10")}
    extra = world.image_mcq_focus(forget, rng=0, name_mcqs=2, other_mcqs=1, n_name_drills=3)
    mcqs = [e for e in extra if e.kind == "mcq"]
    assert mcqs and all(e.image is not None and e.person_id not in forget for e in mcqs)
    assert {e.person_id for e in mcqs} == {p.id for p in world.people} - forget
    for e in mcqs:  # the option at the answer letter is the person's own value
        value = dict(line.split(": ", 1) for line in e.prompt.split("\n")[1:5])[first_letter(e.answer)]
        assert value == fact_value(world.person(e.person_id), e.attribute)
    per_person = Counter((e.person_id, e.attribute) for e in mcqs)
    assert per_person[(mcqs[0].person_id, "name")] == 2 * per_person[(mcqs[0].person_id, "pet")]
    assert sum(e.kind == "drill_mcq" and e.image is None for e in extra) == 3
    text = "\n".join(e.prompt for e in world.image_mcq_focus(forget, rng=1, name_mcqs=1, n_name_drills=400))
    assert not any(world.person(pid).name in text for pid in forget)  # not even in a name drill
