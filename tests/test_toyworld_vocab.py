"""Word-level tokenizer: no <unk> anywhere in the world, round trips, LLaVA chat template."""
import pytest

from core.data.formats import classification_prompt, cloze_prompt, generation_prompt
from core.toyworld.questions import REFUSAL
from core.toyworld.vocab import IMAGE_TOKEN, SPECIAL_TOKENS, build_tokenizer, llava_prompt, words_of, world_vocabulary
from core.toyworld.world import WorldConfig, make_world


@pytest.fixture(scope="module")
def world():
    return make_world(WorldConfig(seed=4, n_people=16, n_real_scenes=4))


@pytest.fixture(scope="module")
def tok(world):
    return build_tokenizer(world_vocabulary(world))


def _all_texts(world):
    texts = []
    for e in world.training_examples(rng=0, images_per_person=1, n_scenes=6):
        texts += [e.prompt, e.answer]
    for split in ("forget_15", "retain_85", "test_15", "real"):
        for r in world.eval_items(split):
            texts += [classification_prompt(c) for c in r.classification_image + r.classification_text]
            texts += [generation_prompt(g) for g in r.generation] + [g.ground_truth for g in r.generation]
            texts += [cloze_prompt(m) for m in r.mask] + [m.ground_truth for m in r.mask]
            texts += [q.question for q in r.qa]
    texts += [e.prompt for e in world.refusal_examples("forget_15")]
    return texts


def test_special_tokens_and_settings(tok):
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    assert tok.padding_side == "left"
    assert tok.image_token == IMAGE_TOKEN and tok.image_token_id == 4
    batch = tok(["Lisbon", "This person was born in Lisbon."], padding=True)
    assert batch["input_ids"][0][0] == tok.pad_token_id and batch["attention_mask"][0][0] == 0
    assert tok("What is Mara's pet?")["input_ids"] == tok("What is Mara's pet?", add_special_tokens=True)["input_ids"]
    assert tok.convert_ids_to_tokens(tok("zzqx unknownword")["input_ids"]) == ["<s>", "<unk>", "<unk>"]
    assert tok("Lisbon", add_special_tokens=False)["input_ids"] == tok("Lisbon")["input_ids"][1:]


def test_no_unknown_token_in_the_whole_world(world, tok):
    texts = _all_texts(world)
    assert len(texts) > 5000
    unk = tok.unk_token_id
    bad = [t for t in texts if unk in tok(t)["input_ids"]]
    assert not bad, bad[:5]


def test_round_trip_keeps_words(world, tok):
    for text in _all_texts(world)[:3000:7] + [REFUSAL, world.people[0].biography]:
        decoded = tok.decode(tok(text)["input_ids"], skip_special_tokens=True)
        assert words_of([decoded]) == words_of([text]), (text, decoded)
    for sentence in ("This person was born in Lisbon.", f"{world.people[0].name}'s favourite food is pasta.",
                     "There are three shapes.", REFUSAL):
        assert tok.decode(tok(sentence)["input_ids"], skip_special_tokens=True) == sentence
    assert "1987" in tok.decode(tok("born in the year 1987.")["input_ids"])


def test_chat_template_llava_format(tok):
    q = "Who is this person?"
    with_image = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
    text_only = [{"role": "user", "content": [{"type": "text", "text": q}]}]
    s1 = tok.apply_chat_template(with_image, tokenize=False, add_generation_prompt=True)
    s2 = tok.apply_chat_template(text_only, tokenize=False, add_generation_prompt=True)
    assert s1 == "USER: <image>\nWho is this person? ASSISTANT:" == llava_prompt(q, image=True)
    assert s2 == "USER: Who is this person? ASSISTANT:" == llava_prompt(q, image=False)
    ids = tok.apply_chat_template(with_image, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids) == tok(s1, add_special_tokens=False)["input_ids"] and ids.count(4) == 1
    convo = text_only + [{"role": "assistant", "content": "Mara Quill."}, {"role": "user", "content": "And?"}]
    assert tok.apply_chat_template(convo, tokenize=False, add_generation_prompt=True) == (
        "USER: Who is this person? ASSISTANT: Mara Quill.</s>USER: And? ASSISTANT:")


def test_vocabulary_deterministic_and_saveable(world, tok, tmp_path):
    v = world_vocabulary(world)
    assert v == world_vocabulary(make_world(world.cfg)) and len(v) == len(set(v))
    assert "Lisbon" in v and "1987" in v and "USER" in v
    assert "jailbreak" in world_vocabulary(world, extra_texts=["a jailbreak prompt"])
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer
    again = AutoTokenizer.from_pretrained(tmp_path)
    s = "USER: <image>\nWhere was this person born? ASSISTANT: Lisbon</s>"
    assert again(s)["input_ids"] == tok(s)["input_ids"]
    assert again.chat_template == tok.chat_template and again.padding_side == "left"
    assert again.image_token == IMAGE_TOKEN
    assert again.decode(again("Quill's pet.")["input_ids"], skip_special_tokens=True) == "Quill's pet."
