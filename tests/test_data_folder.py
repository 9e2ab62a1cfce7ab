"""Photo folders as forget sets: layout, facts schema, the standard name questions, bad input."""
import json
import warnings

import pytest

from conftest import random_image
from core.data.folder import (MAX_IMAGES, FolderError, add_name_questions, load_folder, save_folder,
                              subject_record)
from core.data.records import IMAGE_TEXTUAL, PURE_TEXT, PersonRecord


def _subject(root, name, n=2, facts=None):
    d = root / name
    d.mkdir(parents=True)
    for i in range(n):
        random_image(i).save(d / f"{i}.png")
    if facts is not None:
        (d / "facts.json").write_text(json.dumps(facts))
    return d


def test_photos_and_a_name_only_get_the_standard_name_questions(tmp_path):
    _subject(tmp_path, "mara_quill", 3)
    _subject(tmp_path, "oskar", 1, {"name": "Oskar Draper"})
    recs = load_folder(tmp_path)
    assert [r.id for r in recs] == ["mara_quill", "oskar"]
    mara = recs[0]
    # an all-lower-case folder name is capitalised: in the name MCQ it was the one option written differently
    assert mara.name == "Mara Quill" and len(mara.images) == 3 and mara.images[0].mode == "RGB"
    assert [g.ground_truth for g in mara.generation] == ["This person is Mara Quill."]
    assert [m.ground_truth for m in mara.mask] == ["Mara Quill"] and mara.mask[0].type == IMAGE_TEXTUAL
    mcq = mara.classification_image[0]
    assert mcq.answer_text == "Mara Quill" and "Oskar Draper" in mcq.options.values() and len(mcq.options) == 4
    assert recs[1].name == "Oskar Draper"


def test_facts_file_items_keep_their_modality(tmp_path):
    facts = {"name": "Mara Quill",
             "qa": [{"question": "What is this person's job?", "answer": "Mara Quill works as a baker."},
                    {"question": "Where was Mara Quill born?", "answer": "Oslo", "image": False}],
             "mcq": [{"question": "What is this person's job?", "options": {"A": "baker", "B": "pilot"},
                      "answer": "A"}],
             "cloze": [{"question": "Mara Quill was born in __.", "answer": "Oslo", "image": False}]}
    rec = subject_record(_subject(tmp_path, "m", 1, facts))
    assert [g.type for g in rec.generation] == [IMAGE_TEXTUAL, PURE_TEXT]
    assert rec.classification_image[0].correct_answer == "A" and not rec.classification_text
    assert rec.mask[0].type == PURE_TEXT and rec.mask[0].ground_truth == "Oslo"
    lines = tmp_path / "j"
    _subject(lines, "k", 1)
    (lines / "k" / "facts.jsonl").write_text('{"kind": "name", "name": "Kim Lo"}\n'
                                            '{"kind": "qa", "question": "Who?", "answer": "Kim"}\n')
    rec = load_folder(lines)[0]
    assert rec.name == "Kim Lo" and rec.generation[0].ground_truth == "Kim"


def test_save_folder_round_trips_and_can_leave_facts_out(tmp_path):
    rec = PersonRecord("p1", images=[random_image(1), random_image(2)], name="Mara Quill")
    add_name_questions(rec, ["Oskar Draper"])
    save_folder([rec], tmp_path / "with")
    back = load_folder(tmp_path / "with")[0]
    assert back.name == "Mara Quill" and len(back.images) == 2
    assert back.classification_image[0].options == rec.classification_image[0].options
    save_folder([rec], tmp_path / "bare", facts=False)
    assert json.loads((tmp_path / "bare" / "p1" / "facts.json").read_text()) == {"name": "Mara Quill"}
    assert load_folder(tmp_path / "bare")[0].generation[0].ground_truth == "This person is Mara Quill."


def test_bad_folders_say_what_to_fix(tmp_path):
    with pytest.raises(FolderError, match="not a folder"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderError, match="no sub-folders"):
        load_folder(tmp_path / "empty")
    (tmp_path / "noimg" / "x").mkdir(parents=True)
    (tmp_path / "noimg" / "x" / "notes.txt").write_text("hi")
    with pytest.raises(FolderError, match="holds no images"):
        load_folder(tmp_path / "noimg")
    many = _subject(tmp_path / "many", "x", MAX_IMAGES + 1)
    with pytest.raises(FolderError, match="at most 10"):
        subject_record(many)
    bad = _subject(tmp_path / "bad", "x", 1)
    (bad / "facts.json").write_text("{not json")
    with pytest.raises(FolderError, match="not valid JSON"):
        subject_record(bad)
    (bad / "facts.json").write_text("[" * 200_000)  # nested past Python's recursion limit: was a RecursionError
    with pytest.raises(FolderError, match="not valid JSON"):
        subject_record(bad)
    (bad / "facts.json").write_text(json.dumps({"cloze": [{"question": "no blank", "answer": "a"}]}))
    with pytest.raises(FolderError, match="marks its blank"):
        subject_record(bad)
    (bad / "facts.json").write_text(json.dumps({"mcq": [{"question": "q", "options": {"A": "x", "B": "y"}, "answer": "C"}]}))
    with pytest.raises(FolderError, match="not one of its options"):
        subject_record(bad)
    (bad / "facts.json").write_text(json.dumps({"qa": [{"question": "q"}]}))
    with pytest.raises(FolderError, match="needs question, answer"):
        subject_record(bad)
    # a blank answer: " " is contained in every reply with a space (a refusal scored as recalled)
    (bad / "facts.json").write_text(json.dumps({"cloze": [{"question": "lives in [Blank]", "answer": " "}]}))
    with pytest.raises(FolderError, match="needs question, answer"):
        subject_record(bad)


@pytest.mark.parametrize("facts, message", [
    ({"qa": 5}, "'qa' must be a list of objects, got int"),
    ({"mcq": [{"question": "q", "options": ["Oslo", "Lima"], "answer": "A"}]}, "options are one object of 2-8 capital letters"),
    ({"cloze": [{"question": 7, "answer": "x"}]}, "question must be a text"),
    ({"qa": [{"question": "Where? " * 200, "answer": "x"}]}, "at most 500 characters"),
    ({"qa": [{"question": "Where?", "answer": "Oslo"}] * 201}, "201 facts; give at most 200"),
    ({"name": "A" * 81}, "over 80 characters"),
])
def test_facts_of_the_wrong_type_or_size_say_what_to_fix(tmp_path, facts, message):
    """Numbers where text belongs and lists where an object belongs used to end in a TypeError."""
    d = _subject(tmp_path, "x", 1)
    (d / "facts.json").write_text(json.dumps(facts))
    with pytest.raises(FolderError, match=message):
        subject_record(d)


def test_a_facts_file_too_large_for_one_person_is_refused_unread(tmp_path):
    from core.data.folder import MAX_FACTS_BYTES
    d = _subject(tmp_path, "x", 1)
    (d / "facts.json").write_text(" " * (MAX_FACTS_BYTES + 1))
    with pytest.raises(FolderError, match="is over 1 MB"):
        subject_record(d)


def test_numbers_are_accepted_as_answers_and_options(tmp_path):
    d = _subject(tmp_path, "x", 1)
    (d / "facts.json").write_text(json.dumps({"qa": [{"question": "Born in?", "answer": 1981}],
                                              "mcq": [{"question": "Born in?", "options": {"A": 1979, "B": 1981},
                                                       "answer": "B"}]}))
    rec = subject_record(d)
    assert rec.generation[0].ground_truth == "1981"
    assert rec.classification_image[0].options == {"A": "1979", "B": "1981"}


def test_an_unreadable_image_among_good_ones_is_skipped_with_a_warning(tmp_path):
    d = _subject(tmp_path, "x", 2)
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = subject_record(d)
    assert len(rec.images) == 2
    assert any("skipped broken.png" in str(w.message) for w in caught)
    only_bad = tmp_path / "y"
    only_bad.mkdir()
    (only_bad / "a.jpg").write_bytes(b"nope")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(FolderError, match="none of the 1 images"):
            subject_record(only_bad)


def test_photos_named_after_people_are_grouped_by_name():
    from core.data.folder import names_of_photos
    groups = names_of_photos(["/u/Oskar_Draper.jpg", "/u/oskar-draper 2.png", "/v/Mara Quill.webp"])
    assert {k: [p.name for p in v] for k, v in groups.items()} == {
        "Oskar Draper": ["Oskar_Draper.jpg", "oskar-draper 2.png"], "Mara Quill": ["Mara Quill.webp"]}
    for camera in ("IMG_0042.jpg", "0042.jpg", "PXL_20261201_1.jpg", "Screenshot 2026-12-01.png"):
        with pytest.raises(FolderError, match="name each photo after the person it shows"):
            names_of_photos(["/u/Mara_Quill.jpg", f"/u/{camera}"])


def test_a_name_written_with_extra_spaces_is_one_option_of_its_own_mcq(tmp_path):
    """"name": "Jonas Dalton " in facts.json gave the name MCQ the options 'Jonas Dalton ' and
    'Jonas Dalton', one of them marked wrong, and the stray spelling in other subjects' options."""
    for sub, name in (("a", "Jonas  Dalton "), ("b", "Mara Quill")):
        d = _subject(tmp_path, sub, 1)
        (d / "facts.json").write_text(json.dumps({"name": name}))
    recs = {r.id: r for r in load_folder(tmp_path)}
    own = recs["a"].classification_image[0]
    assert recs["a"].name == "Jonas Dalton" and list(own.options.values()).count("Jonas Dalton") == 1
    assert own.options[own.correct_answer] == "Jonas Dalton"
    assert "Jonas Dalton" in recs["b"].classification_image[0].options.values()


def test_copies_and_spellings_of_a_file_name_are_the_same_person():
    """"Oskar_Draper (1).jpg", "... copy.jpg" and "OSKAR_DRAPER.jpg" each became a person of their
    own, and one of them passed the app's check that nobody is both forgotten and kept."""
    from core.data.folder import names_of_photos
    groups = names_of_photos(["/u/Oskar_Draper.jpg", "/u/Oskar_Draper (1).jpg", "/u/Oskar_Draper copy.jpg",
                              "/u/OSKAR_DRAPER.jpg"])
    assert list(groups) == ["Oskar Draper"] and len(groups["Oskar Draper"]) == 4


def test_a_phone_photo_is_read_upright_and_mac_metadata_is_not_a_photo(tmp_path):
    """EXIF orientation 6 (a phone held upright) reached the model on its side; "._1.png" beside a
    copied 1.png counted as a photo (6 photos became 12, over the cap), __MACOSX as a subject."""
    from PIL import Image
    from core.data.folder import read_image
    img = Image.new("RGB", (40, 30), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    img.save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").size == (30, 40)
    d = _subject(tmp_path / "set", "ann", MAX_IMAGES)
    for i in range(MAX_IMAGES):
        (d / f"._{i}.png").write_bytes(b"\x00\x05\x16\x07 mac metadata")
    (tmp_path / "set" / "__MACOSX" / "ann").mkdir(parents=True)
    recs = load_folder(tmp_path / "set")
    assert [r.id for r in recs] == ["ann"] and len(recs[0].images) == MAX_IMAGES


@pytest.mark.parametrize("facts, message", [
    ({"MCQ": [{"question": "Job?", "options": {"A": "baker", "B": "pilot"}, "answer": "A"}]},
     r"unknown key\(s\) 'MCQ'; the keys are name, qa, mcq, cloze"),
    ({"mcq": [{"question": "City?", "options": {"Oslo": "Oslo", "Lima": "Lima"}, "answer": "Lima"}]},
     "2-8 capital letters"),
    ({"qa": [{"question": "Job?", "answer": "baker", "image": "false"}]}, r'"image" is true or false'),
])
def test_facts_the_loader_would_misread_are_refused(tmp_path, facts, message):
    """Each was read wrong without a word: an unknown key was dropped (the name questions were asked
    instead), options keyed by text scored 0 for the right reply, "image": "false" read as true."""
    d = _subject(tmp_path, "x", 1)
    (d / "facts.json").write_text(json.dumps(facts))
    with pytest.raises(FolderError, match=message):
        subject_record(d)
    (d / "facts.json").unlink()
    (d / "facts.jsonl").write_text(json.dumps({"kind": "questions", "question": "Job?", "answer": "baker"}))
    with pytest.raises(FolderError, match="an item's kind is one of name, qa, mcq, cloze"):
        subject_record(d)


def test_a_numeric_answer_of_zero_is_an_answer(tmp_path):
    d = _subject(tmp_path, "x", 1, {"qa": [{"question": "How many siblings?", "answer": 0, "image": False}]})
    rec = subject_record(d)
    assert [(g.ground_truth, g.type) for g in rec.generation] == [("0", PURE_TEXT)]


def test_an_export_is_marked_as_one(tmp_path):
    from core.data.folder import EXPORT_MARK
    rec = PersonRecord("p1", images=[random_image(0)], name="Ann Lee")
    save_folder([rec], tmp_path / "out", facts=False)
    assert (tmp_path / "out" / EXPORT_MARK).is_file() and [r.id for r in load_folder(tmp_path / "out")] == ["p1"]


def test_a_large_photo_is_kept_at_a_size_every_processor_reads(tmp_path):
    """A 4096 x 4096 upload was held whole (50 MB decoded) for as long as its forget set lived: 210
    of them would take 20 GB. Kept at most KEEP_SIDE on the longer side, the aspect kept."""
    from PIL import Image

    from core.data.folder import KEEP_SIDE, read_image
    p = tmp_path / "big.png"
    Image.new("RGB", (4000, 2000), (200, 10, 10)).save(p)
    im = read_image(p)
    assert im.size == (KEEP_SIDE, KEEP_SIDE // 2) and im.getpixel((5, 5)) == (200, 10, 10)
    small = tmp_path / "small.png"
    Image.new("RGB", (300, 200)).save(small)
    assert read_image(small).size == (300, 200)


def test_sixteen_bit_and_float_grey_photos_keep_their_tones(tmp_path):
    """A 16-bit grey PNG was converted to RGB as it was: every value above 255 clipped, the photo
    almost white (mean 251 for a gradient whose 8-bit copy has mean 127)."""
    import numpy as np
    from PIL import Image

    from core.data.folder import rgb
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    eight = Image.fromarray((ramp // 257).astype(np.uint8))
    for im in (Image.open(tmp_path / "g16.png"), Image.fromarray((ramp / 65535).astype(np.float32))):
        assert im.mode in ("I;16", "I", "F")
        out = np.asarray(rgb(im), dtype=np.float64)
        assert out.shape == (64, 64, 3) and abs(out.mean() - np.asarray(eight).mean()) < 1.0


def test_a_jsonl_line_that_is_not_an_object_and_a_blank_name_are_handled(tmp_path):
    """A list line crashed in pop() naming no file; a blank name in facts.json was refused naming
    no folder, where a missing one falls back to the folder's name."""
    d = _subject(tmp_path / "a", "ann_lee", 1)
    (d / "facts.jsonl").write_text('{"kind": "name", "name": "Ann Lee"}\n[1, 2]\n')
    with pytest.raises(FolderError, match=r"facts.jsonl: each line is one JSON object.*'\[1, 2\]'"):
        load_folder(tmp_path / "a")
    d = _subject(tmp_path / "b", "bo_reyes", 1, {"name": "   "})
    assert [r.name for r in load_folder(tmp_path / "b")] == ["Bo Reyes"]


def test_photos_the_loader_does_not_read_are_named(tmp_path):
    """Photos in a subject's sub-folder, pictures of other formats and photos beside the subjects'
    folders were dropped without a word."""
    d = _subject(tmp_path / "root", "ann_lee", 1)
    (d / "holiday").mkdir()
    random_image(5).save(d / "holiday" / "1.png")
    random_image(6).save(d / "scan.gif")
    random_image(7).save(tmp_path / "root" / "stray.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = load_folder(tmp_path / "root")
    said = " | ".join(str(w.message) for w in caught)
    assert [len(r.images) for r in recs] == [1]
    assert "skipped holiday; photos in it are not read" in said and "skipped scan.gif; only .png" in said
    assert "skipped stray.png; photos beside the subjects' folders belong to nobody" in said
