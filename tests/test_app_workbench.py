"""App handlers, called directly: input validation and the original-vs-steered comparison."""
import io

import pytest
import torch
from PIL import Image

from app.workbench import MAX_PIXELS, UserError, Workbench, check_question, check_strength, read_image
from conftest import random_image, tiny_adapter
from core.eraser import Eraser, EraserConfig
from core.steering import hook_count


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_read_image_accepts_images_and_refuses_bad_files(tmp_path):
    ok = read_image(_png(random_image(0)))
    assert ok.mode == "RGB" and ok.size == (48, 48)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a readable image"):
        read_image(tmp_path / "notes.txt")
    with pytest.raises(UserError, match="not a readable image"):
        read_image(_png(random_image(0))[:60])  # truncated PNG
    with pytest.raises(UserError, match="No image"):
        read_image(None)
    big = Image.new("L", (4097, 4097))
    with pytest.raises(UserError, match="megapixels"):
        read_image(big)
    assert 4097 * 4097 > MAX_PIXELS


def test_question_and_strength_validation():
    assert check_question("  who?  ") == "who?"
    with pytest.raises(UserError, match="empty"):
        check_question("   ")
    with pytest.raises(UserError, match="characters"):
        check_question("x" * 5000)
    assert check_strength("0.5") == 0.5
    for bad in ("abc", None, 1e9, float("nan")):
        with pytest.raises(UserError):
            check_strength(bad)


def _workbench():
    a = tiny_adapter("llava")
    g = torch.Generator().manual_seed(0)
    L, d = a.num_layers, a.hidden_size
    eraser = Eraser(torch.randn(L, d, generator=g, dtype=torch.float64) * 3,
                    torch.randn(L, d, generator=g, dtype=torch.float64), EraserConfig(strength=1.0))
    return Workbench(a, eraser)


def test_compare_strength_zero_equals_original_and_leaves_no_hooks():
    wb = _workbench()
    res = wb.compare(random_image(0), "what is this ?", 0.0, None)
    assert res.original == res.steered
    assert sorted(res.gates) == [0, 1]
    moved = wb.compare(random_image(0), "what is this ?", 3.0, [0, 1])
    assert moved.original == res.original
    assert hook_count(wb.adapter) == 0


def test_compare_reports_bad_input_without_breaking():
    wb = _workbench()
    with pytest.raises(UserError, match="empty"):
        wb.compare(random_image(0), "", 1.0, None)
    with pytest.raises(UserError, match="outside"):
        wb.compare(random_image(0), "what ?", 99, None)
    assert isinstance(wb.compare(random_image(0), "what ?", 0.5, [1]).original, str)  # still works
    no_eraser = Workbench(wb.adapter, None)
    with pytest.raises(UserError, match="No eraser"):
        no_eraser.compare(random_image(0), "what ?", 0.5, None)


def test_concurrent_users_get_answers_for_their_own_strength():
    from concurrent.futures import ThreadPoolExecutor
    wb = _workbench()
    img = random_image(3)
    strengths = [0.0, 1.0, 2.5, -2.0, 4.0, 0.5]
    expected = {s: wb.compare(img, "what is this ?", s, [0, 1]).steered for s in strengths}
    assert len(set(expected.values())) > 1  # the strengths really give different answers
    with ThreadPoolExecutor(max_workers=6) as pool:
        jobs = [(s, pool.submit(wb.compare, img, "what is this ?", s, [0, 1])) for s in strengths * 3]
        for s, job in jobs:
            assert job.result().steered == expected[s], s
    assert hook_count(wb.adapter) == 0
