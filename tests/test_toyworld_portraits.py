"""Portraits and scenes: determinism, augmentation, and every visual attribute visible."""
import dataclasses
import hashlib
import math

import numpy as np
import pytest

from core.toyworld.drawing import SUPERSAMPLE
from core.toyworld.people import HAIR_STYLES, VISUAL_ATTRIBUTES, VISUAL_VALUES, make_people
from core.toyworld.portraits import (FACE_BOX, MAX_ROTATE_DEG, MAX_SHIFT, SCALE_RANGE, figure_layer,
                                     portrait_grid, render_portrait)
from core.toyworld.scenes import SCENE_RGB, SceneSpec, render_scene


def _h(img):
    return hashlib.sha256(img.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def people():
    return make_people(40, seed=3)


def test_canonical_render_is_deterministic(people):
    a, b = render_portrait(people[0]), render_portrait(people[0])
    assert a.mode == "RGB" and a.size == (64, 64)
    assert _h(a) == _h(b)
    assert render_portrait(people[0], size=32).size == (32, 32)
    assert _h(render_portrait(people[1])) != _h(a)


def test_jittered_render_seeded_and_different(people):
    p = people[0]
    j1 = render_portrait(p, np.random.default_rng(1))
    j2 = render_portrait(p, np.random.default_rng(1))
    j3 = render_portrait(p, np.random.default_rng(2))
    assert _h(j1) == _h(j2)
    assert len({_h(j1), _h(j3), _h(render_portrait(p))}) == 3


def test_every_attribute_value_changes_the_picture(people):
    """Swapping any visual attribute to any other value changes >= 15 pixels clearly, for
    every hair style, under geometric jitter: nothing is hidden or drawn off-canvas."""
    for style in HAIR_STYLES:
        base = next(p for p in people if p.hair_style == style)

        def draw(p):
            return np.asarray(render_portrait(p, np.random.default_rng(11), photometric=False), dtype=int)

        ref = draw(base)
        for a in VISUAL_ATTRIBUTES:
            for v in VISUAL_VALUES[a]:
                if v == getattr(base, a):
                    continue
                other = draw(dataclasses.replace(base, **{a: v}))
                changed = int((np.abs(other - ref).max(-1) > 30).sum())
                assert changed >= 15, (style, a, getattr(base, a), v, changed)


def test_figure_stays_on_canvas_under_worst_case_jitter(people):
    """The figure's bounding box, moved by the largest shift/scale/rotation, stays inside."""
    base = people[0]
    s_max = SCALE_RANGE[1]
    th = math.radians(MAX_ROTATE_DEG)
    for style in HAIR_STYLES:
        for face in FACE_BOX:
            for acc in VISUAL_VALUES["accessory"]:
                p = dataclasses.replace(base, hair_style=style, face_shape=face, accessory=acc)
                x0, y0, x1, _ = figure_layer(p).getchannel("A").getbbox()
                x0, y0, x1 = (v / SUPERSAMPLE for v in (x0, y0, x1))
                for x, y in ((x0, y0), (x1, y0)):
                    dx, dy = (x - 32.0) * s_max, (y - 32.0) * s_max
                    # worst case over rotation sign and shift
                    ys = [32 + dx * math.sin(sg * th) + dy * math.cos(th) - MAX_SHIFT for sg in (-1, 1)]
                    xs = [32 + dx * math.cos(th) - dy * math.sin(sg * th) + sh
                          for sg in (-1, 1) for sh in (-MAX_SHIFT, MAX_SHIFT)]
                    assert min(ys) >= 0.0, (style, face, acc, y0)
                    assert 0.0 <= min(xs) and max(xs) <= 64.0, (style, face, acc, x0, x1)


def test_identity_survives_augmentation(people):
    """Nearest canonical portrait (pixel L2 on a blurred copy) of a jittered render is the
    same person for nearly all renders: augmentation keeps who it is."""
    canon = np.stack([np.asarray(render_portrait(p).resize((16, 16)), dtype=float) for p in people])
    rng = np.random.default_rng(0)
    hits = 0
    for i, p in enumerate(people):
        j = np.asarray(render_portrait(p, rng).resize((16, 16)), dtype=float)
        hits += int(np.argmin(((canon - j) ** 2).sum(axis=(1, 2, 3))) == i)
    assert hits >= 0.9 * len(people)


def test_scene_counts_and_colours():
    def area(spec, rng):
        arr = np.asarray(render_scene(spec, rng), dtype=int)
        return int((np.abs(arr - np.array(SCENE_RGB[spec.colour])).max(-1) < 40).sum())

    one = area(SceneSpec("square", "blue", 1), None)
    four = area(SceneSpec("square", "blue", 4), None)
    assert one > 60 and 3.5 * one < four < 4.5 * one
    assert area(SceneSpec("circle", "red", 3), np.random.default_rng(0)) > 150
    a = render_scene(SceneSpec("triangle", "green", 2), np.random.default_rng(5))
    b = render_scene(SceneSpec("triangle", "green", 2), np.random.default_rng(5))
    assert _h(a) == _h(b) and a.size == (64, 64)
    with pytest.raises(ValueError):
        SceneSpec("hexagon", "red", 1)
    with pytest.raises(ValueError):
        SceneSpec("circle", "red", 5)


def test_portrait_grid_shape(people):
    imgs = [render_portrait(p) for p in people[:5]]
    g = portrait_grid(imgs, cols=3, pad=2)
    assert g.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)
