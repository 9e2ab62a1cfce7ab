"""Prompt sets from records, for any model: forget / retain for the gate, recall / erase for the
direction, the tuner's held-out rows and groups, the evaluation's private-data requests."""
import pytest
import torch

from conftest import random_image, tiny_adapter
from core import contrast
from core.data.folder import add_name_questions
from core.data.records import IMAGE_TEXTUAL, PURE_TEXT, GenerationItem, MaskItem, PersonRecord
from core.data.source import RETAIN_GROUPS, ForgetData
from core.data.wordings import HELD_OUT_REQUESTS, PRIVATE_REQUESTS
from core.pgd import PGDConfig


def person(i: int, name: str, facts: bool = True) -> PersonRecord:
    rec = PersonRecord(id=f"s{i}", name=name, images=[random_image(10 * i + k) for k in range(3)])
    if facts:
        rec.generation += [GenerationItem("What is this person's job?", f"{name} works as a baker.", IMAGE_TEXTUAL),
                           GenerationItem(f"Where was {name} born?", f"{name} was born in Oslo.", PURE_TEXT)]
        rec.mask.append(MaskItem("This person's job is __.", "baker", IMAGE_TEXTUAL))
    else:
        add_name_questions(rec)
    return rec


def data(**kw) -> ForgetData:
    forget = [person(0, "Mara Quill", facts=False), person(1, "Oskar Draper")]
    retain = [person(i, f"Retained Person{i}") for i in range(2, 6)]
    return ForgetData(forget, retain, **kw)


def test_gate_sets_hold_each_side_and_the_coverage_the_gate_needs():
    d = data()
    forget, retain = contrast.gate_sets(d, per_person=10, n_retain=60, seed=0, fact_draws=2)
    assert {p.tag for p in forget} == {"s0", "s1"} and len(forget) == 20
    assert not {"s0", "s1"} & {p.tag for p in retain}
    texts = " ".join(p.question for p in retain)
    assert any(fill in texts for fill in ("home address", "phone number", "bank account"))  # refusals kept
    assert any(p.tag == "scene" and p.image is not None for p in retain)  # built-in general pictures
    assert any(p.image is None and "Retained Person" in p.question for p in retain)  # retained by name
    # a subject with photos and a name only is asked the standard questions
    from core.data.wordings import PROFILE_QUESTIONS
    s0 = [p for p in forget if p.tag == "s0"]
    standard = contrast.profile_prompts(d.forget[0], d.wordings, contrast.option_pool(d))
    assert {p.question for p in standard if p.image is not None} >= set(PROFILE_QUESTIONS["name"])
    # in every format (plain, MLLMU generation, cloze, MCQ), half of them asked by name
    assert any("Just give ONE letter" in p.question for p in standard) and any("[Blank]" in p.question for p in standard)
    assert any("Answer the question based on" in p.question for p in standard)
    assert sum(p.image is None for p in s0) == 5 and all("Mara Quill" in p.question for p in s0 if p.image is None)
    again = contrast.gate_sets(d, per_person=10, n_retain=60, seed=0, fact_draws=2)
    assert [p.question for p in again[0]] == [p.question for p in forget]  # seeded


def test_held_out_rows_never_overlap_the_fit_rows():
    d = data()
    forget, retain = contrast.gate_sets(d, per_person=1000, n_retain=10000, seed=0, fact_draws=1)
    h_forget, h_retain = contrast.heldout_sets(d, seed=0, per_person=1000, n_retain=10000)

    def keys(ps):
        return {(p.question, id(p.image), p.tag) for p in ps if p.tag != "scene"}
    assert h_forget and h_retain
    assert not keys(forget) & keys(h_forget) and not keys(retain) & keys(h_retain)
    # held-out requests use the held-out wordings only
    asked = {p.question for p in h_retain} | {p.question for p in retain}
    assert any(t.format(poss="this person's", subj="this person")[1:] in " ".join(asked)
               for t in HELD_OUT_REQUESTS)
    assert not any(q.startswith("Where exactly") for q in (p.question for p in retain))
    groups = contrast.retain_groups(d, h_retain)
    assert set(groups) <= set(RETAIN_GROUPS) and "general" in groups and "people, image" in groups


def test_a_question_the_real_split_repeats_is_held_out_or_fitted_not_both():
    """MLLMU files repeat some real-split questions (the toy export: one cloze three times): each
    copy was split apart, so a held-out general row was also a fit row."""
    twice = [PersonRecord(id=f"r{i}", mask=[MaskItem("A shape with four equal sides is a __.", "square", PURE_TEXT)])
             for i in range(3)]
    d = data(real=twice)
    q = "A shape with four equal sides is a [Blank]."
    fit = [p for p in contrast.gate_sets(d, n_retain=10000, fact_draws=1)[1] if p.question.startswith(q)]
    held = [p for p in contrast.heldout_sets(d, n_retain=10000)[1] if p.question.startswith(q)]
    assert len(fit) + len(held) == 1


def test_a_subject_without_photos_gets_at_most_per_person_rows():
    """Up to per_person rows per forget subject: one known by name only (every photo failed to load,
    or none given) got all of its rows."""
    rec = person(0, "Mara Quill")
    rec.images = []
    d = ForgetData([rec], [person(i, f"Retained Person{i}") for i in range(2, 4)])
    pool = len(contrast.gate_sets(d, per_person=1000, n_retain=10)[0])
    assert pool > 3 and len(contrast.gate_sets(d, per_person=3, n_retain=10)[0]) == 3


def test_direction_constructions_from_records():
    d = data()
    recall, erase = contrast.direction_sets(d, None, "recall", per_person=3)
    assert len(recall) == len(erase) == 6
    assert all(r.image is e.image and r.question != e.question for r, e in zip(recall, erase))
    assert all(any(w in e.question for w in ("address", "number", "record", "password")) for e in erase)
    text_r, text_e = contrast.direction_sets(d, None, "text_only", per_person=2)
    assert all(p.image is None for p in text_r + text_e)
    assert all(("Mara Quill" in p.question) or ("Oskar Draper" in p.question) for p in text_r)
    a = tiny_adapter("llava")
    cfg = PGDConfig(steps=2, eps=8 / 255, step_size=4 / 255)
    rec_pgd, era = contrast.direction_sets(d, a, "image_only", per_person=1, pgd_cfg=cfg)
    for r, e in zip(rec_pgd, era):
        assert r.question == e.question and isinstance(r.image, torch.Tensor)
        assert 0 < float((r.image - a.to_pixels(e.image)).abs().max()) <= 8 / 255 + 1e-6
    assert contrast.compliance_target(d.forget[1]) == "Oskar Draper works as a baker."
    assert contrast.compliance_target(d.forget[0]) == "This person is Mara Quill."


def test_refusal_sets_and_clear_errors():
    d = data()
    sets = contrast.refusal_sets(d)
    assert set(sets) == {"forget", "retain"}
    assert len(sets["forget"]) == 2 * 2 * len(HELD_OUT_REQUESTS)  # with a photo and by name, per subject
    assert not {p.question for p in sets["forget"]} & {t.format(poss="this person's", subj="this person")
                                                       for t in PRIVATE_REQUESTS}
    alone = ForgetData([person(0, "Mara Quill")])
    alone_wordless = ForgetData([person(0, "Mara Quill")], wordings=d.wordings.__class__(scene_questions=(), decoy_first=()))
    assert contrast.gate_sets(alone, n_retain=10)[1]  # scenes alone still make a retain set
    with pytest.raises(ValueError, match="retain set is empty"):
        contrast.gate_sets(alone_wordless, n_retain=10)
    with pytest.raises(ValueError, match="gate-variants"):
        contrast.gate_sets(d, variants=0.5)
    with pytest.raises(ValueError, match="unknown direction"):
        contrast.direction_sets(d, None, "vibes")
    with pytest.raises(ValueError, match="needs the model"):
        contrast.direction_sets(d, None, "refusal")
    nameless = ForgetData([PersonRecord("x", images=[random_image(0)])])
    with pytest.raises(ValueError, match="no name"):
        contrast.direction_sets(nameless, None, "text_only")


def test_direction_pgd_budget():
    assert contrast.direction_pgd() == PGDConfig(steps=30, step_size=2 / 255)  # the constructions' PGD at 16/255
    small, big = contrast.direction_pgd(8), contrast.direction_pgd(64, seed=3)
    assert (small.eps, small.step_size) == (8 / 255, 1 / 255)
    assert (big.eps, big.step_size, big.seed) == (64 / 255, 8 / 255, 3)
    assert contrast.direction_pgd(4).step_size == 1 / 255  # at least one pixel level per step


def test_without_a_real_split_the_gate_sees_scenes_asked_in_the_mllmu_formats_but_never_the_scored_ones():
    import numpy as np
    from core.data.formats import task_of
    from core.data.scenes import FIT_STREAM, scene_records
    fit_pictures = [np.asarray(r.images[0]) for r in scene_records(16, 0, stream=FIT_STREAM)]

    def scored_scene_rows(data):
        rows = contrast.gate_sets(data, n_retain=400)[1]
        return [p for p in rows if p.image is not None and any(np.array_equal(np.asarray(p.image), f)
                                                                 for f in fit_pictures)]
    rows = scored_scene_rows(ForgetData([person(0, "Mara Quill")]))
    assert {task_of(p.question) for p in rows} == {"classification", "cloze", "generation"}
    scored = [np.asarray(r.images[0]) for r in scene_records(20)]  # what an evaluation scores
    assert not any(np.array_equal(f, s) for f in fit_pictures for s in scored)
    assert scored_scene_rows(ForgetData([person(0, "Mara Quill")], real=scene_records(2))) == []  # a real split: its own


def test_made_up_names_are_retain_rows_asked_by_name_and_count_as_people():
    alone = ForgetData([person(0, "Mara Quill")])
    names = alone.decoy_names()
    _, retain = contrast.gate_sets(alone, n_retain=100_000)
    made_up = [p for p in retain if p.tag.startswith("decoy-")]
    assert {p.tag for p in made_up} == {f"decoy-{i}" for i in range(len(names))}
    assert all(p.image is None for p in made_up) and any(names[0] in p.question for p in made_up)
    assert set(contrast.retain_groups(alone, made_up)) == {RETAIN_GROUPS[1]}  # people, by name
    forget, _ = contrast.gate_sets(alone, n_retain=100_000)
    assert not any(n in p.question for p in forget for n in names)


def test_negative_set_sizes_are_refused_not_sliced():
    """per_person -3 took all but the last 3 rows of each subject (357 forget rows where 3 gave 6)."""
    d = data()
    with pytest.raises(ValueError, match="per_person=-3, n_retain=-5"):
        contrast.gate_sets(d, per_person=-3, n_retain=-5)
    for n in (0, -2):
        with pytest.raises(ValueError, match="per_person"):
            contrast.direction_sets(d, None, "text_only", per_person=n)


def test_fit_sets_spells_its_prompts_with_the_models_tokenizer():
    """Through the Python API (load_data -> fit_sets) the wordings were never cut to the model's
    tokenizer as the CLI and the app cut them: on the toy model's word-level tokenizer the gate's
    retain rows asked about 60 made-up names of unknown words, and an unspellable forget name
    was not refused."""
    from core.data.wordings import unknown_words
    from core.models.load import load_adapter
    from core.toyworld.train import load_world
    adapter = load_adapter("assets/toy-llava")
    name = load_world("assets/toy-llava").people[0].name
    def unspelled(retain):
        return [p.question for p in retain if p.tag.startswith("decoy-") and unknown_words(adapter.tokenizer, p.question)]
    _, uncut = contrast.gate_sets(ForgetData([person(0, name, facts=False)]))
    assert unspelled(uncut)  # the made-up names of the plain-English lists: words this vocabulary lacks
    sets = contrast.fit_sets(ForgetData([person(0, name, facts=False)]), adapter, "recall")
    assert sets.retain and not unspelled(sets.retain)
    with pytest.raises(ValueError, match="cannot spell the name 'Zqxv Wibbleton'"):
        contrast.fit_sets(ForgetData([person(1, "Zqxv Wibbleton", facts=False)]), adapter, "recall")


def test_a_fit_says_which_people_to_forget_have_no_name_after_any_pick():
    """MLLMU-Bench's files have no name column, and the questions by name were left out without a
    word; said at loading, it named the file's forget people even when others were picked."""
    import warnings
    unnamed = person(0, "Mara Quill")
    unnamed.name = None
    d = ForgetData([unnamed, person(1, "Oskar Draper")], [person(i, f"Retained Person{i}") for i in range(2, 5)])
    with pytest.warns(UserWarning, match=r"1 of the 2 people to forget have no name \(s0\): the project's own questions "
                                         r"by name are not asked.*add one \(each ID's full name\)"):
        sets = contrast.fit_sets(d, None, "recall")
    named = contrast.fit_sets(ForgetData([person(0, "Mara Quill"), *d.forget[1:]], d.retain), None, "recall")
    by_name = [len([p for p in x.forget if p.tag == "s0" and p.image is None]) for x in (sets, named)]
    assert 0 < by_name[0] < by_name[1]  # the file's own text questions only, without the project's by name
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        contrast.fit_sets(d.pick(["s1"]), None, "recall")  # s0 is retained now: nothing to say
