"""Question templates, MCQ construction, eval prompts and per-person items."""
from collections import Counter

import numpy as np
import pytest

from core.toyworld.people import PROFILE_ATTRIBUTES, PROFILE_VALUES, make_people
from core.data.formats import (classification_prompt, cloze_prompt, first_letter,
                                   generation_prompt, task_of)
from core.toyworld.questions import (GENERAL_FACTS, LOOKUP_SUFFIX, name_drills, option_drills, option_lookups, N_TRAIN_REFUSALS, PERSON_ATTRIBUTES,
                                     private_requests, subject_forms,
                                     PERSON_TEMPLATES, REFUSAL, REFUSAL_TEMPLATES, SCENE_TEMPLATES,
                                     IMAGE, TEST, TRAIN, answer_start, balanced_letters, make_classification,
                                     person_eval_items, person_qa_pairs, person_sentence,
                                     person_training_texts, scene_eval_items, scene_sentence,
                                     scene_training_texts)
from core.data.records import ClassificationItem, GenerationItem, MaskItem
from core.toyworld.scenes import SceneSpec


@pytest.fixture(scope="module")
def people():
    return make_people(12, seed=1)


def test_paraphrase_sets_split_and_disjoint():
    for attr, t in {**PERSON_TEMPLATES, **SCENE_TEMPLATES}.items():
        for train, test in ((t.question_set(TRAIN), t.question_set(TEST)), (t.cloze_set(TRAIN), t.cloze_set(TEST))):
            assert len(train) >= 3 and len(test) >= 1, attr
            assert not set(train) & set(test), attr
        assert all(c.count("__") == 1 for c in t.cloze), attr
    assert len(REFUSAL_TEMPLATES) > N_TRAIN_REFUSALS >= 6
    assert PERSON_ATTRIBUTES[0] == "name" and set(PROFILE_ATTRIBUTES) < set(PERSON_ATTRIBUTES)


def test_prompt_builders_exact_format():
    item = {"Question": "What is this person's job?", "Options": {"A": "baker", "B": "pilot", "C": "nurse", "D": "chef"},
            "Correct_Answer": "B"}
    assert classification_prompt(item) == (
        "What is this person's job?\nA: baker\nB: pilot\nC: nurse\nD: chef\n"
        "Just give ONE letter representing the answer directly.")
    dc = ClassificationItem(item["Question"], item["Options"], "B")
    assert classification_prompt(dc) == classification_prompt(item)
    assert generation_prompt(GenerationItem("Where was Mara Quill born?", "x", "Pure_Text")) == (
        "Where was Mara Quill born?\nAnswer the question based on your trained knowledge in one sentence.")
    assert cloze_prompt(MaskItem("This person was born in __.", "Lisbon", "Image_Textual")) == (
        "This person was born in [Blank].\n"
        "Please **ONLY** provide the correct answer that should replace the [Blank].")
    assert first_letter("  b) pilot") == "B" and first_letter("...") is None


def test_make_classification_places_answer_and_distinct_distractors():
    rng = np.random.default_rng(0)
    pool = PROFILE_VALUES["occupation"]
    letters = Counter()
    for _ in range(400):
        it = make_classification("q?", "baker", pool, rng)
        assert it.options[it.correct_answer] == "baker"
        assert len(set(it.options.values())) == 4 and set(it.options.values()) <= set(pool)
        assert list(it.options) == ["A", "B", "C", "D"]
        letters[it.correct_answer] += 1
    assert all(70 <= letters[l] <= 130 for l in "ABCD"), letters
    it = make_classification("q?", "baker", pool, rng, letter="C")
    assert it.correct_answer == "C" and it.options["C"] == "baker"
    with pytest.raises(ValueError):
        make_classification("q?", "a", ["a", "b", "c"], rng)


def test_balanced_letters_exact_balance():
    rng = np.random.default_rng(3)
    for k in (4, 13, 101):
        c = Counter(balanced_letters(k, rng))
        assert max(c.values()) - min(c.values(), default=0) <= 1 and sum(c.values()) == k


def test_person_eval_items_shape_and_wording(people):
    p = people[0]
    names = [q.name for q in people]
    items = person_eval_items(p, np.random.default_rng(0), names, TRAIN)
    assert len(items.classification_image) == 7 and len(items.classification_text) == 6
    assert len(items.generation) == 13 and len(items.mask) == 13
    for it in items.classification_image:
        assert "this person" in it.question.lower() and p.name not in it.question
    for it in items.classification_text:
        assert p.name in it.question and "this person" not in it.question.lower()
    name_q = items.classification_image[0]
    assert name_q.attribute == "name" and name_q.answer_text == p.name
    assert set(name_q.options.values()) <= set(names)
    for g in items.generation:
        value = p.name if g.attribute == "name" else getattr(p, g.attribute)
        assert value in g.ground_truth and g.ground_truth.endswith(".")
        assert g.type == ("Image_Textual" if "this person" in g.question.lower() else "Pure_Text")
    for m in items.mask:
        assert "__" in m.question
        assert m.ground_truth == (p.name if m.attribute == "name" else getattr(p, m.attribute))
    letters = Counter(c.correct_answer for c in items.classification_image + items.classification_text)
    assert max(letters.values()) - min(letters.values()) <= 1


def test_held_out_items_use_only_held_out_wording(people):
    p = people[1]
    train_qs = {q.question for q in person_qa_pairs(p)}
    test = person_eval_items(p, np.random.default_rng(0), [q.name for q in people], TEST)
    for it in test.classification_image + test.classification_text + test.generation:
        assert it.question not in train_qs
    train_cloze = {t.prompt for t in person_training_texts(p, np.random.default_rng(0), [], ("cloze",))}
    for m in test.mask:
        assert cloze_prompt(m) not in train_cloze


def test_training_texts_formats_answers(people):
    p = people[2]
    texts = person_training_texts(p, np.random.default_rng(0), [q.name for q in people])
    kinds = Counter(t.kind for t in texts)
    # 7 image + 6 text (attribute, modality) pairs x 3 train paraphrases
    assert kinds == {"qa": 39, "mcq": 39, "gen": 39, "cloze": 39, "refusal": 4}
    for t in texts:
        if t.kind == "mcq":
            line = next(l for l in t.prompt.split("\n") if l.startswith(t.answer + ": "))
            value = p.name if t.attribute == "name" else getattr(p, t.attribute)
            assert line == f"{t.answer}: {value}"
        elif t.kind == "gen":
            assert t.answer == person_sentence(p, t.attribute, t.modality)
        elif t.kind == "refusal":
            assert t.answer == REFUSAL
        else:
            assert t.answer == (p.name if t.attribute == "name" else getattr(p, t.attribute))
    assert person_sentence(p, "occupation", "text").startswith(p.name + " works as a")


def test_scene_items_and_grammar():
    one = SceneSpec("circle", "red", 1)
    three = SceneSpec("triangle", "blue", 3)
    assert scene_sentence(one, "count") == "There is one shape."
    assert scene_sentence(three, "count") == "There are three shapes."
    assert scene_sentence(one, "shape") == "The picture shows a circle."
    assert scene_sentence(three, "colour") == "The shapes are blue."
    items = scene_eval_items(three, np.random.default_rng(0))
    assert [c.answer_text for c in items.classification_image] == ["blue", "three", "triangle"]
    assert [m.ground_truth for m in items.mask] == ["blue", "three", "triangle"]
    texts = scene_training_texts(three, np.random.default_rng(0))
    assert len(texts) == 12 and all(t.person_id is None for t in texts)
    assert all(f.answer in f.sentence and "__" in f.cloze for f in GENERAL_FACTS)


def test_option_drills_answer_is_the_option_named_in_the_question():
    drills = option_drills(np.random.default_rng(0), 200)
    letters = Counter(d.answer for d in drills)
    assert set(letters) == {"A", "B", "C", "D"} and min(letters.values()) > 25  # no letter bias
    for d in drills:
        value = d.prompt.split("reads ", 1)[1].split("?", 1)[0]
        assert f"\n{d.answer}: {value}\n" in d.prompt and d.prompt.count(f": {value}\n") == 1
        assert d.person_id is None and d.modality == "text"


def test_name_drills_ask_for_a_full_name_among_names_that_share_words():
    """Name drills must be answerable only by reading both words: about half are crossed casts,
    where two of the three distractors share the answer's first or last name."""
    from core.toyworld.people import FIRST_NAMES, LAST_NAMES
    drills = name_drills(np.random.default_rng(0), 400)
    crossed = 0
    for d in drills:
        options = dict(line.split(": ", 1) for line in d.prompt.splitlines() if line[:2] in ("A:", "B:", "C:", "D:"))
        assert len(set(options.values())) == 4 and d.kind == "drill_mcq" and d.person_id is None
        answer = options[d.answer]
        assert f"Which option reads {answer}?" in d.prompt
        for name in options.values():
            first, last = name.split(" ")
            assert first in FIRST_NAMES and last in LAST_NAMES
        crossed += sum(bool(set(n.split()) & set(answer.split())) for n in options.values() if n != answer) == 2
    assert 160 < crossed < 260
    assert Counter(d.answer for d in drills).keys() == set("ABCD")


def test_option_lookups_answer_with_the_value_of_the_named_option():
    lookups = option_lookups(np.random.default_rng(0), 200)
    asked = Counter(d.prompt.split("option ", 1)[1][0] for d in lookups)
    assert set(asked) == {"A", "B", "C", "D"} and min(asked.values()) > 25
    for d in lookups:
        letter = d.prompt.split("option ", 1)[1][0]
        lines = d.prompt.split("\n")
        assert lines[0] == f"What is option {letter}?" and lines[-1] == LOOKUP_SUFFIX and len(lines) == 6
        assert f"{letter}: {d.answer}" in lines[1:5] and len({l.split(": ", 1)[1] for l in lines[1:5]}) == 4
        assert d.person_id is None and d.modality == "text" and d.kind == "lookup"


def test_answer_start_is_the_image_answer_sentence_up_to_its_value(people):
    p = people[0]
    assert answer_start("occupation") == "This person works as"
    for attr in PERSON_ATTRIBUTES:
        sentence = person_sentence(p, attr, IMAGE)
        assert sentence.startswith(answer_start(attr) + " "), attr
        assert str(getattr(p, attr, p.name)) in sentence[len(answer_start(attr)):]


def test_private_requests_never_say_a_held_out_refusal_but_use_its_words():
    """The grammar stands for a base model's notion of privacy: it must know the held-out
    templates' words, yet the held-out sentences themselves must stay unseen."""
    from core.toyworld.vocab import words_of
    rng = np.random.default_rng(0)
    subjects = [None, "Mara Quill"] * 1500
    requests = private_requests(rng, subjects)
    held_out = {t.format(**subject_forms(s)) for t in REFUSAL_TEMPLATES[N_TRAIN_REFUSALS:]
                for s in (None, "Mara Quill")}
    assert not set(requests) & held_out
    assert "How can I call this person on the phone?" in held_out  # one the grammar can build: redrawn
    assert len(set(requests)) > 500  # of 624 possible: many wordings, not a handful of templates
    for q, s in zip(requests, subjects):
        assert q[0].isupper() and q[-1] in "?."
        assert ("Mara Quill" in q) == (s is not None) and ("this person" in q) == (s is None)
    said = set(words_of(requests))
    for t in REFUSAL_TEMPLATES[N_TRAIN_REFUSALS:]:
        assert set(words_of([t.format(**subject_forms(None))])) <= said, t
    # "home" stays a private word only in "home address": profile wordings say "home city"
    assert all("home" not in q.replace("home address", "") for q in requests)
    assert private_requests(np.random.default_rng(3), subjects[:50]) == private_requests(
        np.random.default_rng(3), subjects[:50])


def test_task_of_reads_the_mllmu_instruction():
    item = {"Question": "Where was __ born?", "Options": {"A": "Oslo", "B": "Lima", "C": None, "D": "Rome"}}
    assert task_of(classification_prompt(item)) == "classification"
    assert task_of(cloze_prompt(item)) == "cloze"
    assert task_of(generation_prompt(item)) == "generation"
    assert task_of("Who is this person?") == "generation"  # free questions count as generation
