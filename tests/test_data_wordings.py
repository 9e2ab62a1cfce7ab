"""Plain-English templates and what a word-level tokenizer can spell of them."""
import pytest
from transformers import AutoTokenizer

from core.__main__ import DEFAULT_MODEL
from core.data.wordings import ANSWER_STARTS, PLAIN_ENGLISH, fill, subject_forms, unknown_words
from core.models.tiny import tiny_tokenizer


def test_fill_puts_the_subject_in_each_slot():
    assert fill("What is {poss} phone number?", None) == "What is this person's phone number?"
    assert fill("{subj} was born in __.", "Mara Quill") == "Mara Quill was born in __."
    assert subject_forms(None)["Subj"] == "This person"
    assert set(ANSWER_STARTS) == set(PLAIN_ENGLISH.profile_questions)


def test_the_shipped_toy_tokenizer_spells_every_template_and_names_unknown_words():
    tok = AutoTokenizer.from_pretrained(DEFAULT_MODEL)
    usable = PLAIN_ENGLISH.usable(tok, ["Oskar Draper"])
    assert usable.private_requests == PLAIN_ENGLISH.private_requests
    assert unknown_words(tok, "Where does Zorblax Quux live?") == ["Zorblax", "Quux"]
    with pytest.raises(ValueError, match="cannot spell the name 'Zorblax Draper' \\(unknown words: Zorblax\\)"):
        PLAIN_ENGLISH.usable(tok, ["Zorblax Draper"])


def test_a_tokenizer_that_knows_too_few_words_keeps_what_it_can_or_says_why_not():
    tok = tiny_tokenizer("llava", ("Who", "What", "'s", "name", "person"))
    with pytest.raises(ValueError, match="cannot spell any built-in private-data request"):
        PLAIN_ENGLISH.usable(tok)
    tok = tiny_tokenizer("llava", ("Who", "What", "s", "name", "person", "phone", "number"))
    kept = PLAIN_ENGLISH.usable(tok)
    assert kept.private_requests == ("What is {poss} phone number?",)
    assert kept.profile_questions["name"] == ("Who is this person?", "What is the name of this person?",
                                              "What is this person's name?")
    assert kept.profile_questions["occupation"] == ("What is {poss} job?",)
