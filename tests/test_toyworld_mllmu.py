"""MLLMU-Bench parquet: exact schema on export, tolerant loading of real-format files."""
import hashlib
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.data.mllmu import load_parquet
from core.toyworld.mllmu import export_parquet
from core.toyworld.world import WorldConfig, make_world


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


@pytest.fixture(scope="module")
def world():
    return make_world(WorldConfig(seed=2, n_people=20, n_real_scenes=4))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_schema_exact(world, tmp_path):
    path = export_parquet(world, "forget_10", tmp_path / "forget.parquet")
    schema = pq.read_schema(path)
    assert schema.names == ["ID", "image", "Classification_Task", "Generation_Task", "Mask_Task",
                            "metadata", "biography", "name"]
    assert [f.name for f in schema.field("image").type] == ["bytes", "path"]
    ct = schema.field("Classification_Task").type
    assert [f.name for f in ct] == ["Image_Textual_Questions", "Pure_Text_Questions"]
    item = ct.field("Image_Textual_Questions").type.value_type
    assert [f.name for f in item] == ["Question", "Options", "Correct_Answer"]
    assert [f.name for f in item.field("Options").type] == ["A", "B", "C", "D"]
    gen = schema.field("Generation_Task").type.value_type
    assert [f.name for f in gen] == ["Question", "Ground_Truth", "Type"]
    assert schema.field("metadata").type == pa.string()
    row = pq.read_table(path).to_pylist()[0]
    assert row["image"]["bytes"][:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads(row["metadata"])
    assert meta and set(meta[0]) == {"Question", "Answer"}
    test_schema = pq.read_schema(export_parquet(world, "test_10", tmp_path / "test.parquet"))
    assert "images" in test_schema.names and "image" not in test_schema.names


@pytest.mark.parametrize("split", ["forget_10", "retain_90", "test_10", "real"])
def test_round_trip(world, tmp_path, split):
    path = export_parquet(world, split, tmp_path / f"{split}.parquet")
    loaded = load_parquet(path)
    orig = world.eval_items(split)
    assert [r.id for r in loaded] == [r.id for r in orig]
    for a, b in zip(loaded, orig):
        assert [c.to_dict() for c in a.classification_image] == [c.to_dict() for c in b.classification_image]
        assert [c.to_dict() for c in a.classification_text] == [c.to_dict() for c in b.classification_text]
        assert [g.to_dict() for g in a.generation] == [g.to_dict() for g in b.generation]
        assert [m.to_dict() for m in a.mask] == [m.to_dict() for m in b.mask]
        assert [q.to_dict() for q in a.qa] == [q.to_dict() for q in b.qa]
        assert (a.biography, a.name) == (b.biography, b.name)
        assert len(a.images) == len(b.images)
        for x, y in zip(a.images, b.images):
            assert np.array_equal(np.asarray(x), np.asarray(y))  # PNG is lossless


def test_export_is_byte_deterministic(world, tmp_path):
    a = export_parquet(world, "test_5", tmp_path / "a.parquet")
    b = export_parquet(make_world(world.cfg), "test_5", tmp_path / "b.parquet")
    assert _sha(a) == _sha(b)
    (tmp_path / "dir").mkdir()
    export_parquet(world, "forget_5", tmp_path / "dir" / "part1.parquet")
    export_parquet(world, "real", tmp_path / "dir" / "part2.parquet")
    both = load_parquet(tmp_path / "dir")
    assert len(both) == len(world.forget_ids[5]) + world.cfg.n_real_scenes
