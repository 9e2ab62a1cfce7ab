"""The app in a real browser on a model the project knows nothing about: a tiny Qwen2.5-VL folder
with no world.json and no eraser that fits it (its own module: Playwright's sync API cannot run
inside another module's open browser)."""
import re

from browser import open_app


def test_on_a_model_without_world_or_eraser_the_playground_takes_the_first_fitted_erasers_settings(tmp_path):
    """A foreign model folder (a tiny Qwen2.5-VL: no world.json, no eraser that fits it) opens with
    the strength at 0. After Forget someone (the workbench preset, tuned as `fit` tunes), the
    playground's strength and steered layers are the new eraser's (before, they stayed at 0 and
    nothing was steered until the slider moved)."""
    from conftest import random_image
    from core.models.tiny import plain_english_words, save_tiny
    from core.data.wordings import DECOY_FIRST_NAMES, DECOY_LAST_NAMES
    # a tokenizer that spells the built-in made-up names, as a real model's does
    folder = save_tiny("qwen2_5_vl", tmp_path / "q", words=plain_english_words(DECOY_FIRST_NAMES + DECOY_LAST_NAMES))
    photos = []
    for i in range(2):
        random_image(60 + i).save(tmp_path / f"{i}.png")
        photos.append(str(tmp_path / f"{i}.png"))
    with open_app("--model", str(folder), env={"MLLMERASER_WARM_UMAP": "0"}) as page:
        assert float(page.locator("#strength input[type=number]").input_value()) == 0
        page.get_by_role("tab", name="Model & data").click()
        page.locator("#someone_photos input[type=file]").set_input_files(photos)
        page.wait_for_function("() => (document.querySelector('#someone_photos').innerText.match(/\\.png/g) || [])"
                               ".length === 2", timeout=30_000)
        page.locator("#someone_name textarea").fill("Sam Rivers")
        page.click("#someone_btn")
        page.wait_for_selector("#someone_status:has-text('forgetting Sam Rivers')", timeout=120_000)
        assert "60 made-up names asked about by name" in page.locator("#someone_status").inner_text()
        page.get_by_role("tab", name="Steering playground").click()
        status = page.locator("#someone_status").inner_text()
        layers, strength = re.search(r"steers layer\(s\) ([\d, ]+) at strength (\d+(?:\.\d+)?)", status).groups()
        assert float(strength) > 0  # the tuner's choice, or the preset's when no setting kept the retained answers
        page.wait_for_function("(s) => Number(document.querySelector('#strength input[type=number]').value) === s",
                               arg=float(strength), timeout=30_000)
        ticked = page.locator("#layers input[type=checkbox]:checked").evaluate_all(
            "bs => bs.map(b => b.parentElement.innerText.trim())")
        assert ticked == [l.strip() for l in layers.split(",")]
