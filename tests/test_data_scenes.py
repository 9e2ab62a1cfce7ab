"""Built-in scene pictures: the fit's unscored ones and the scored ones an evaluation adds when a
forget set brings nothing to retain."""
import numpy as np

from core.data.records import PersonRecord
from core.data.scenes import COLOURS, COUNT_WORDS, SHAPES, draw_counted_scene, scene_records, scenes
from core.data.source import SCENE_ROWS, ForgetData


def _blobs(mask: np.ndarray) -> int:
    """Connected regions of a boolean mask (4-neighbour flood fill)."""
    seen, n = np.zeros_like(mask), 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        n += 1
        stack = [(y, x)]
        while stack:
            a, b = stack.pop()
            if 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1] and mask[a, b] and not seen[a, b]:
                seen[a, b] = True
                stack += [(a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)]
    return n


def test_a_scored_scene_shows_exactly_what_its_answers_say():
    rng = np.random.default_rng(3)
    counts = set()
    for _ in range(12):
        im, sc = draw_counted_scene(rng, 96)
        px = np.asarray(im).astype(int)
        painted = (np.abs(px - np.array(COLOURS[sc.colour])).sum(-1) == 0)
        others = [c for c in COLOURS if c != sc.colour]
        assert not any((np.abs(px - np.array(COLOURS[c])).sum(-1) == 0).any() for c in others)
        assert _blobs(painted) == sc.count  # the shapes never touch: the count is not in doubt
        assert sc.shape in SHAPES
        counts.add(sc.count)
    assert counts == {1, 2, 3, 4}


def test_scene_records_are_seeded_mllmu_rows_with_the_drawn_answers():
    a, b = scene_records(4, seed=1, size=64), scene_records(4, seed=1, size=64)
    assert [r.id for r in a] == ["scene00", "scene01", "scene02", "scene03"]
    assert all(np.array_equal(np.asarray(x.images[0]), np.asarray(y.images[0])) for x, y in zip(a, b))
    for r in a:
        colour, shape, count = (m.ground_truth for m in r.mask)
        assert colour in COLOURS and shape in SHAPES and count in COUNT_WORDS
        assert r.biography.startswith(f"A picture of {count} {colour} {shape}")
        for item, truth in zip(r.classification_image, (colour, shape, count)):
            assert item.answer_text == truth and len(set(item.options.values())) == 4
        assert all("__" in m.question for m in r.mask) and not r.classification_text
    letters = [it.correct_answer for r in scene_records(20, size=32) for it in r.classification_image]
    assert len(set(letters)) == 4  # the right answer is not always in one place
    fit_pictures = scenes(4, size=64)
    assert not any(np.array_equal(np.asarray(p), np.asarray(r.images[0])) for p in fit_pictures for r in a)


def test_a_forget_set_with_nothing_to_retain_is_scored_on_scenes_too():
    who = PersonRecord("p1", name="Sam Rivers")
    alone = ForgetData([who])
    assert list(alone.splits()) == ["forget", "scenes"] and len(alone.splits()["scenes"]) == SCENE_ROWS
    assert len(alone.splits(3)["scenes"]) == 3
    kept = ForgetData([who], retain=[PersonRecord("p2", name="Alex Morgan")])
    assert list(kept.splits()) == ["forget", "retain"]
