"""Loading MLLMU-Bench parquet files: tolerant of real files' variations, strict about what
cannot be used (a file that is not parquet, an unreadable or oversized picture, a picture path
outside the file's folder), each refused with the file, the row and the fix named."""
import io
import json
import re
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import random_image
from core.data.mllmu import load_parquet


def _png(colour):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _mcq(q, ans="B"):
    return {"Question": q, "Options": {"A": "x", "B": "y", "C": "z", "D": "w"}, "Correct_Answer": ans}


def _real_style_rows():
    """Rows shaped like the published MLLMU-Bench files, written independently of our export."""
    return [
        {"ID": "7", "image": {"bytes": _png((255, 0, 0)), "path": "7.png"},
         "Classification_Task": {"Image_Textual_Questions": [_mcq("Who is this?")],
                                 "Pure_Text_Questions": [_mcq("Where is Ann from?", "D")]},
         "Generation_Task": [{"Question": "What does this person do?", "Ground_Truth": "A chef.",
                              "Type": "Image_Textual"}],
         "Mask_Task": [{"Question": "Ann lives in __.", "Ground_Truth": "Oslo", "Type": "Pure_Text"}],
         "metadata": json.dumps([{"Question": "Q1", "Answer": "A1"}]),
         "biography": "Ann is a chef.", "extra_column": 3.5},
        {"ID": "8", "image": {"bytes": _png((0, 0, 255)), "path": None},
         "Classification_Task": None, "Generation_Task": None, "Mask_Task": None,
         "metadata": None, "biography": None, "extra_column": None},
    ]


def test_load_independent_fixture(tmp_path):
    path = tmp_path / "forget.parquet"
    pq.write_table(pa.Table.from_pylist(_real_style_rows()), path)
    recs = load_parquet(path)
    assert [r.id for r in recs] == ["7", "8"]
    a, b = recs
    assert a.image.getpixel((0, 0)) == (255, 0, 0) and b.image.getpixel((0, 0)) == (0, 0, 255)
    assert a.classification_image[0].question == "Who is this?"
    assert a.classification_image[0].options == {"A": "x", "B": "y", "C": "z", "D": "w"}
    assert a.classification_text[0].correct_answer == "D"
    assert a.generation[0].ground_truth == "A chef." and a.generation[0].type == "Image_Textual"
    assert a.mask[0].ground_truth == "Oslo" and a.mask[0].type == "Pure_Text"
    assert [(q.question, q.answer) for q in a.qa] == [("Q1", "A1")]
    assert a.biography == "Ann is a chef."
    assert (b.classification_image, b.classification_text, b.generation, b.mask, b.qa) == ([], [], [], [], [])


def test_the_hub_files_question_and_answer_columns_are_read_when_there_is_no_metadata(tmp_path):
    """MLLMU-Bench's Hub files carry `question` / `answer` columns and no `metadata`: they were
    dropped, and a training baseline had no QA pair of the subject to train on."""
    rows = [{"ID": "1", "image": {"bytes": _png((1, 2, 3))}, "question": " Where does Ann work? ",
             "answer": "In Oslo.", "metadata": None},
            {"ID": "2", "image": {"bytes": _png((1, 2, 3))}, "question": "Q", "answer": "A",
             "metadata": json.dumps([{"Question": "Q1", "Answer": "A1"}])},
            {"ID": "3", "image": {"bytes": _png((1, 2, 3))}, "question": "Q", "answer": " ", "metadata": None},
            {"ID": "4", "image": {"bytes": _png((1, 2, 3))}, "question": json.dumps(["Q1", "Q2"]),
             "answer": json.dumps(["A1", 1981]), "metadata": None},
            {"ID": "5", "image": {"bytes": _png((1, 2, 3))}, "question": "[not a list", "answer": "x",
             "metadata": None}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "forget.parquet")
    one, two, three, four, five = load_parquet(tmp_path / "forget.parquet")
    assert [(q.question, q.answer) for q in one.qa] == [("Where does Ann work?", "In Oslo.")]
    assert [(q.question, q.answer) for q in two.qa] == [("Q1", "A1")]  # metadata's pairs, when it has them
    assert three.qa == []  # a question without its answer is no pair
    assert [(q.question, q.answer) for q in four.qa] == [("Q1", "A1"), ("Q2", "1981")]  # JSON-encoded lists, zipped
    assert [(q.question, q.answer) for q in five.qa] == [("[not a list", "x")]  # text that only looks like one
    lists = [{"ID": "6", "image": {"bytes": _png((1, 2, 3))}, "question": ["Q1", "Q2"], "answer": ["A1", "A2"]}]
    pq.write_table(pa.Table.from_pylist(lists), tmp_path / "lists.parquet")
    assert [(q.question, q.answer) for q in load_parquet(tmp_path / "lists.parquet")[0].qa] == [("Q1", "A1"), ("Q2", "A2")]


def test_load_test_split_images_list_and_missing_optional_columns(tmp_path):
    rows = [{"ID": "9", "images": [{"bytes": _png((0, 255, 0))}, {"bytes": _png((9, 9, 9))}],
             "Mask_Task": json.dumps([{"Question": "__ here", "Ground_Truth": "x", "Type": "Image_Textual"}])}]
    path = tmp_path / "test.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    (r,) = load_parquet(path)
    assert len(r.images) == 2 and r.images[1].getpixel((0, 0)) == (9, 9, 9)
    assert r.mask[0].question == "__ here"  # JSON-string nested field decoded
    assert r.classification_image == [] and r.generation == [] and r.qa == [] and r.biography is None


def test_missing_required_columns_are_named(tmp_path):
    p1 = tmp_path / "noid.parquet"
    pq.write_table(pa.table({"image": [{"bytes": _png((1, 1, 1))}]}), p1)
    with pytest.raises(ValueError, match="'ID'"):
        load_parquet(p1)
    p2 = tmp_path / "noimage.parquet"
    pq.write_table(pa.table({"ID": ["1"], "metadata": ["[]"]}), p2)
    with pytest.raises(ValueError, match="'image'"):
        load_parquet(p2)


def _write(tmp_path, rows, name="forget_10.parquet"):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_a_file_that_is_not_parquet_is_named_with_the_fix(tmp_path):
    path = tmp_path / "forget_10.parquet"
    path.write_text("ID,image\n1,face.png\n")  # a CSV under a parquet name
    with pytest.raises(ValueError, match=r"forget_10.parquet is not a readable parquet file .*world --export"):
        load_parquet(path)


def test_an_unreadable_picture_names_its_row_and_id(tmp_path):
    rows = [{"ID": "7", "image": {"bytes": _png((1, 2, 3)), "path": None}},
            {"ID": "8", "image": {"bytes": b"GIF89a but truncated", "path": None}}]
    with pytest.raises(ValueError, match=r"row 1 \(ID 8\): the image cannot be read \(its bytes are not a picture\)"):
        load_parquet(_write(tmp_path, rows))


def test_an_oversized_picture_is_refused_from_its_header(tmp_path):
    buf = io.BytesIO()
    Image.new("1", (5000, 4000)).save(buf, format="PNG")  # 20 MP in a few kB: a bomb for the decoder
    path = _write(tmp_path, [{"ID": "9", "image": {"bytes": buf.getvalue(), "path": None}}])
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"\(ID 9\): the image is 5000x4000 pixels .*make the picture smaller"):
        load_parquet(path)
    assert time.perf_counter() - start < 5  # refused before decoding (generous bound)


def test_picture_paths_are_read_next_to_the_file_only(tmp_path):
    Image.new("RGB", (4, 4), (9, 8, 7)).save(tmp_path / "face.png")
    secret = tmp_path.parent / f"{tmp_path.name}-secret.png"
    Image.new("RGB", (4, 4), (0, 0, 0)).save(secret)
    (rec,) = load_parquet(_write(tmp_path, [{"ID": "1", "image": {"bytes": None, "path": "face.png"}}]))
    assert rec.image.getpixel((0, 0)) == (9, 8, 7)
    for p in (str(secret), f"../{secret.name}"):
        with pytest.raises(ValueError, match="lies outside the folder of the parquet file"):
            load_parquet(_write(tmp_path, [{"ID": "2", "image": {"bytes": None, "path": p}}]))
    secret.unlink()


def test_a_question_too_long_to_be_a_prompt_names_its_row(tmp_path):
    rows = [{"ID": "5", "image": {"bytes": _png((1, 1, 1)), "path": None},
             "Mask_Task": [{"Question": "She lives in __. " * 400, "Ground_Truth": "Oslo", "Type": "Pure_Text"}]}]
    with pytest.raises(ValueError, match=r"row 0 \(ID 5\): a question of 6800 characters \(at most 4000\)"):
        load_parquet(_write(tmp_path, rows))


def test_a_cell_nested_past_the_recursion_limit_reads_as_no_value():
    """A text cell of 100,000 "[" raised RecursionError out of the loader; it is not a value."""
    from core.data.mllmu import _maybe_parse
    assert _maybe_parse("[" * 100_000) is None and _maybe_parse('{"a": [1]}') == {"a": [1]}


def test_an_image_cell_that_names_a_missing_file_is_an_error_not_a_lost_picture(tmp_path):
    """A cell {bytes: None, path: "p000.png"} whose file is not next to the parquet file read as no
    picture: every picture question of that subject was dropped without a word."""
    from core.data.mllmu import _decode_image
    random_image(0).save(tmp_path / "here.png")
    assert _decode_image({"bytes": None, "path": "here.png"}, "row 0", tmp_path).size == (48, 48)
    assert _decode_image("here.png", "row 0", tmp_path).size == (48, 48)  # a path written as text
    with pytest.raises(ValueError, match="row 0: the image 'p000.png' is not in .* holds no bytes"):
        _decode_image({"bytes": None, "path": "p000.png"}, "row 0", tmp_path)
    with pytest.raises(ValueError, match="row 0: the image cell holds int, not a picture"):
        _decode_image(7, "row 0", tmp_path)


def test_a_question_without_its_answer_names_its_row(tmp_path):
    """A null Ground_Truth loaded as "", which every reply contains: the cloze scored 1.0 against
    a refusal; a null Correct_Answer scored every MCQ reply 0."""
    gen = {"ID": "7", "image": {"bytes": _png((1, 2, 3)), "path": None},
           "Mask_Task": [{"Question": "Ann lives in __.", "Ground_Truth": None, "Type": "Pure_Text"}]}
    with pytest.raises(ValueError, match=r"row 0 \(ID 7\): the question 'Ann lives in __.' has no Ground_Truth"):
        load_parquet(_write(tmp_path, [gen]))
    mcq = {"ID": "9", "image": {"bytes": _png((1, 2, 3)), "path": None},
           "Classification_Task": {"Pure_Text_Questions": [_mcq("Where is Ann from?", "  ")]}}
    with pytest.raises(ValueError, match=r"ID 9\): the question 'Where is Ann from\?' has no Correct_Answer"):
        load_parquet(_write(tmp_path, [mcq], "retain_90.parquet"))


def _write(tmp_path, rows, name="forget.parquet"):
    path = tmp_path / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _row(i="7", **cells):
    row = {"ID": i, "image": {"bytes": _png((255, 0, 0)), "path": None}}
    row.update(cells)
    return row


def test_mcq_answers_are_read_as_their_option_letter_or_refused(tmp_path):
    """A Correct_Answer that names no option loaded, and every reply scored 0 against it (which
    reads as forgetting); options given as a list raised an AttributeError."""
    opts = {"A": "Oslo", "B": "Lima", "C": "Rome", "D": "Kyiv"}
    items = [{"Question": f"q{k}", "Options": opts, "Correct_Answer": a} for k, a in enumerate(["B.", "(b)", "Lima"])]
    rec, = load_parquet(_write(tmp_path, [_row(Classification_Task={"Image_Textual_Questions": items,
                                                                    "Pure_Text_Questions": []})]))
    assert [c.correct_answer for c in rec.classification_image] == ["B", "B", "B"]
    listed = [{"Question": "as a list", "Options": ["Oslo", "Lima"], "Correct_Answer": "B"}]
    rec, = load_parquet(_write(tmp_path, [_row(Classification_Task={"Image_Textual_Questions": listed})]))
    assert rec.classification_image[0].options == {"A": "Oslo", "B": "Lima"}
    for bad in ("E", "Paris"):
        item = {"Question": "Where?", "Options": opts, "Correct_Answer": bad}
        with pytest.raises(ValueError, match=rf"row 0 \(ID 7\): the MCQ 'Where\?' has Correct_Answer '{bad}', which is "
                                             r"none of its options A, B, C, D"):
            load_parquet(_write(tmp_path, [_row(Classification_Task={"Image_Textual_Questions": [item]})]))


def test_cut_off_cells_missing_images_and_bad_ids_are_refused_naming_the_row(tmp_path):
    """Each lost questions or subjects without a word: a cut-off JSON cell read as empty, a row with
    image questions and no image had them all skipped, a null ID became the text 'None', and of
    two rows with one ID, picking that subject kept one."""
    gen = [{"Question": "What does this person do?", "Ground_Truth": "A chef.", "Type": "image_textual"}]
    cases = [
        ([_row(Generation_Task=json.dumps(gen)[:-5])], r"row 0 \(ID 7\): the cell is text that is neither JSON"),
        ([_row(Generation_Task=gen) | {"image": None}], r"row 0 \(ID 7\): the row has image questions but no image"),
        ([_row(None)], "row 0: the ID is empty"),
        ([_row("7"), _row("7")], r"row 1: ID '7' is on another row of this split too"),
        ([_row(name="N" * 81)], "over 80 characters"),
    ]
    for rows, message in cases:
        with pytest.raises(ValueError, match=message):
            load_parquet(_write(tmp_path, rows))
    rec, = load_parquet(_write(tmp_path, [_row(Generation_Task=gen, name="  Ann   Lee ")]))
    assert rec.generation[0].type == "Image_Textual" and rec.name == "Ann Lee"  # a Type in lower case is a picture's


def test_export_refuses_options_the_schema_cannot_hold(tmp_path):
    """Options E-H were dropped on export while the answer stayed E."""
    from core.data.mllmu import export_records
    from core.data.records import ClassificationItem, PersonRecord
    rec = PersonRecord("x", images=[random_image(0)], name="Ann Lee")
    rec.classification_image.append(ClassificationItem("Who?", {k: k.lower() for k in "ABCDE"}, "E"))
    with pytest.raises(ValueError, match="has options .*'E'.*files hold options A, B, C, D only"):
        export_records([rec], tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize("column, value", [("Generation_Task", "5"), ("Mask_Task", "{\"Question\": \"q\"}"),
                                           ("Classification_Task", "[1, 2]"),
                                           ("Classification_Task", "{\"Image_Textual_Questions\": 3}")])
def test_a_task_column_that_is_not_a_list_of_questions_is_refused_naming_the_row(tmp_path, column, value):
    """A Generation_Task of 5 raised "'int' object is not iterable" (a server error in the app)."""
    rows = _real_style_rows()
    for r in rows:  # every task cell as JSON text (a column of one type), row 1's replaced by the bad one
        for c in ("Classification_Task", "Generation_Task", "Mask_Task"):
            r[c] = None if r[c] is None else json.dumps(r[c])
    rows[1][column] = value
    path = tmp_path / "forget.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(ValueError, match=r"forget.parquet, row 1 \(ID 8\).*(not a list of questions|not an object)"):
        load_parquet(path)


def test_rows_and_uncompressed_size_are_checked_from_the_footer_before_reading(tmp_path):
    """A few KB of parquet repeating one large picture decoded to 722 MB in the app: the file's
    footer gives its rows and uncompressed size first."""
    big = io.BytesIO()
    Image.new("RGB", (2000, 2000), (9, 9, 9)).save(big, format="BMP")  # 12 MB a cell, compressed to almost nothing
    rows = [{"ID": str(i), "image": {"bytes": big.getvalue(), "path": None}} for i in range(6)]
    path = tmp_path / "forget.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, compression="zstd")
    assert path.stat().st_size < 2 * 2**20
    with pytest.raises(ValueError, match="holds 6 rows"):
        load_parquet(path, max_rows=5)
    with pytest.raises(ValueError, match=r"MB uncompressed: at most .* and 10 MB here"):
        load_parquet(path, max_bytes=10 * 2**20)
    recs = load_parquet(path)  # unlimited: decoded, and kept at most KEEP_SIDE on the longer side
    from core.data.folder import KEEP_SIDE
    assert len(recs) == 6 and recs[0].image.size == (min(2000, KEEP_SIDE), min(2000, KEEP_SIDE))


def test_a_type_that_is_neither_picture_nor_text_is_refused_naming_the_question(tmp_path):
    """"Image-Textual", "image_text" or a missing Type were read as text-only: picture questions
    were asked without their picture."""
    for written in ("Image-Textual", "image textual", "IMAGE_TEXTUAL"):  # spelling variants of the one name
        gen = [{"Question": "What does this person do?", "Ground_Truth": "A chef.", "Type": written}]
        rec, = load_parquet(_write(tmp_path, [_row(Generation_Task=gen)]))
        assert rec.generation[0].type == "Image_Textual"
    for bad in ("image_text", None, "Picture"):
        gen = [{"Question": "What does this person do?", "Ground_Truth": "A chef.", "Type": bad}]
        with pytest.raises(ValueError, match=r"row 0 \(ID 7\): question 'What does this person do\?' has Type "
                                             rf"{re.escape(repr(bad))}; set it to 'Image_Textual'.*or 'Pure_Text'"):
            load_parquet(_write(tmp_path, [_row(Generation_Task=gen)]))
