"""'Forget someone' in a real browser (Playwright + Debian chromium) on the shipped model: upload
three portraits of a person and type the name, fit with progress, then the playground answers
for that person are replaced and a retained person's are not; the activation map and the null
space draw for the new eraser."""
import numpy as np
import pytest

from browser import open_app

PERSON = "p045"  # a forget-split person of the shipped world; any person the model knows would do


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from core.toyworld.train import load_world
    world = load_world("assets/toy-llava")
    person = world.person(PERSON)
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(5)
    photos = []
    for i in range(3):
        world.render(person, rng).save(folder / f"{i}.png")
        photos.append(str(folder / f"{i}.png"))
    with open_app(env={"MLLMERASER_WARM_UMAP": "0"}) as pg:  # no UMAP here: no JIT in the background
        pg.photos, pg.person = photos, person
        yield pg


def _value(page, elem_id):
    return page.locator(f"#{elem_id} textarea").input_value()


def _ask(page, question: str) -> tuple[str, str]:
    box = page.locator("#question textarea")
    box.fill(question)
    page.evaluate("() => { for (const id of ['original', 'steered']) document.querySelector(`#${id} textarea`).value = ''; }")
    page.click("#compare")
    page.wait_for_function("() => document.querySelector('#steered textarea').value", timeout=60_000)
    return _value(page, "original"), _value(page, "steered")


def test_forget_someone_from_three_photos_and_a_name(page):
    page.get_by_role("tab", name="Model & data").click()
    page.locator("#someone_photos input[type=file]").set_input_files(page.photos)
    page.wait_for_function("() => (document.querySelector('#someone_photos').innerText.match(/\\.png/g) || [])"
                           ".length === 3", timeout=30_000)
    page.locator("#someone_name textarea").fill(page.person.name)
    page.click("#someone_btn")
    # progress is visible while the prompt sets are collected ("retain 320/6402")
    page.wait_for_function("() => /(forget|retain) \\d+\\/\\d+/.test(document.body.innerText)", timeout=60_000)
    page.wait_for_selector(f"#someone_status:has-text('forgetting {page.person.name}')", timeout=240_000)

    page.get_by_role("tab", name="Steering playground").click()
    before = page.evaluate("() => document.querySelector('#image img')?.src || ''")
    page.locator("#upload input[type=file]").set_input_files(page.photos[0])
    page.wait_for_function("(b) => { const i = document.querySelector('#image img'); return i && i.src !== b; }",
                           arg=before, timeout=30_000)
    original, steered = _ask(page, "Who is this person?")
    assert page.person.name in original
    assert page.person.name not in steered and steered != original
    # a retained person: the gallery's retain portraits keep their answers
    page.locator("#gallery button").filter(has_text="retain").first.click()
    page.wait_for_timeout(1500)
    original, steered = _ask(page, "Who is this person?")
    assert original == steered and original and "sorry" not in original


def test_activation_map_and_null_space_draw_for_the_new_eraser(page):
    page.get_by_role("tab", name="Null space").click()
    page.wait_for_selector("#ns_spectrum .js-plotly-plot", timeout=60_000)
    assert "Error" not in page.locator("#ns_status").inner_text()
    page.get_by_role("tab", name="Activation map").click()
    page.click("#map_draw")
    page.wait_for_function("() => document.querySelector('#map_plot').innerText.includes('PC 1')", timeout=240_000)
    assert "Error" not in page.locator("#map_status").inner_text()


def test_photos_of_people_to_keep_join_the_fit(page, tmp_path):
    """Photos of other people, each file named after the person, are uploaded next to the
    person's own: the fit's status counts them among the retained people."""
    from core.toyworld.train import load_world
    world = load_world("assets/toy-llava")
    keep = []
    for p in [q for q in world.people if q.name != page.person.name][:2]:
        path = tmp_path / f"{p.name.replace(' ', '_')}.png"
        world.render(p).save(path)
        keep.append(str(path))
    page.get_by_role("tab", name="Model & data").click()
    page.locator("#someone_keep input[type=file]").set_input_files(keep)
    page.wait_for_function("() => (document.querySelector('#someone_keep').innerText.match(/\\.png/g) || [])"
                           ".length === 2", timeout=30_000)
    page.click("#someone_btn")
    page.wait_for_selector("#someone_status:has-text('2 of them yours to keep')", timeout=240_000)
    assert f"forgetting {page.person.name}" in page.locator("#someone_status").inner_text()
