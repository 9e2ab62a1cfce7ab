"""The app in a real browser (Playwright driving Debian chromium) on the shipped model."""
import pytest

from browser import AppServer, CHROMIUM_ARGS, ensure_chromium


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright
    exe = ensure_chromium()
    server = AppServer().wait()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 1000})
        pg.goto(server.url)
        pg.wait_for_selector("#compare", timeout=60_000)
        yield pg
        browser.close()
    server.stop()


def _value(page, elem_id):
    return page.locator(f"#{elem_id} textarea").input_value()


def _compare(page):
    before = (_value(page, "original"), _value(page, "steered"))
    page.click("#compare")
    page.wait_for_function(
        "([o, s]) => { const a = document.querySelector('#original textarea').value;"
        " const b = document.querySelector('#steered textarea').value; return a && (a !== o || b !== s); }",
        arg=list(before), timeout=30_000)
    return _value(page, "original"), _value(page, "steered")


def test_forget_person_is_erased_and_strength_zero_restores(page):
    page.locator("#gallery button").filter(has_text="FORGET").first.click()
    original, steered = _compare(page)
    assert original and steered
    assert "sorry" not in original.lower()
    assert "sorry" in steered.lower()  # the shipped eraser turns a forget answer into a refusal
    page.locator("#strength input[type=number]").fill("0")
    page.locator("#strength input[type=number]").press("Enter")
    page.wait_for_function("() => document.querySelector('#steered textarea').value === "
                           "document.querySelector('#original textarea').value", timeout=30_000)
    assert _value(page, "original") == original


def test_empty_question_shows_a_clear_error(page):
    page.locator("#question textarea").fill("")
    page.click("#compare")
    page.wait_for_selector("#status:has-text('question is empty')", timeout=30_000)
    page.locator("#question textarea").fill("What is this person's occupation?")


def test_bad_file_upload_shows_an_error_and_app_keeps_working(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    page.wait_for_selector("#status:has-text('not a readable image')", timeout=30_000)
    page.locator("#gallery button").filter(has_text="retain").first.click()
    original, steered = _compare(page)
    assert original == steered or "sorry" not in steered.lower()
