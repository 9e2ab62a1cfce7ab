"""The toy world exported as MLLMU-Bench parquet: exact schema, byte-deterministic, loads back."""
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.data.mllmu import load_parquet
from core.toyworld.mllmu import export_parquet
from core.toyworld.world import WorldConfig, make_world


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
