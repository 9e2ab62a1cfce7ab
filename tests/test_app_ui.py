"""The app in a real browser (Playwright driving Debian chromium) on the shipped model."""
import math
import re

import pytest

from browser import open_app, run_attack_panel, set_slider


@pytest.fixture(scope="module")
def page():
    with open_app() as pg:
        yield pg


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


def _pick(page, caption: str) -> None:
    """Click the first gallery portrait whose caption has `caption` and wait until the image
    box shows it (a fixed pause lost that race on a cold first run in a fresh clone)."""
    before = page.evaluate("() => document.querySelector('#image img')?.src || ''")
    page.locator("#gallery button").filter(has_text=caption).first.click()
    if _PICKED.get(id(page)) == caption:  # the same portrait again: its source may not change
        page.wait_for_selector("#image img", timeout=30_000)
    else:
        page.wait_for_function("(b) => { const i = document.querySelector('#image img'); return i && i.src && i.src !== b; }",
                               arg=before, timeout=30_000)
    _PICKED[id(page)] = caption


_PICKED: dict[int, str] = {}


def _set_strength(page, value: str) -> None:
    """Type the strength without Enter: the tests' next click (Compare) reruns with it, and no
    rerun of Enter's own can land between the click and the answers it waits for."""
    page.locator("#strength input[type=number]").fill(value)


def test_steering_changes_the_answer_and_strength_zero_restores_it(page):
    _pick(page, "FORGET")  # the portrait is loaded before asking
    # a strong push along d_erase on a forget portrait: the shipped preset steers layer 3 only,
    # during the prompt pass, so the gate opens and the answer turns into a refusal
    _set_strength(page, "3")
    page.wait_for_timeout(500)
    original, steered = _compare(page)
    assert original and steered
    assert steered != original
    _set_strength(page, "0")
    page.click("#compare")
    page.wait_for_function("() => document.querySelector('#steered textarea').value === "
                           "document.querySelector('#original textarea').value", timeout=30_000)
    assert _value(page, "original") == original  # the original never changes with the slider
    gates = page.locator("#gates").inner_text()
    assert "gate" in gates


def test_typing_a_strength_and_pressing_enter_reruns_the_comparison(page):
    """A slider's number box reruns the playground on Enter (the app's launch script blurs it, which
    sends the release event), as a drag does: no Compare click."""
    _pick(page, "FORGET")
    _set_strength(page, "3")
    _compare(page)
    refusal = _value(page, "steered")
    assert refusal != _value(page, "original")
    page.locator("#strength input[type=number]").fill("0")
    page.locator("#strength input[type=number]").press("Enter")
    page.wait_for_function("() => document.querySelector('#steered textarea').value === "
                           "document.querySelector('#original textarea').value", timeout=90_000)  # a loaded box
    page.locator("#strength input[type=number]").fill("3")
    page.locator("#strength input[type=number]").press("Enter")
    page.wait_for_function("(r) => document.querySelector('#steered textarea').value === r", arg=refusal,
                           timeout=90_000)


def test_empty_question_shows_a_clear_error(page):
    question = page.locator("#question textarea").input_value()
    try:
        page.locator("#question textarea").fill("")
        page.click("#compare")
        page.wait_for_selector("#status:has-text('question is empty')", timeout=30_000)
    finally:  # the tests below ask with the question again, whatever happened here
        page.locator("#question textarea").fill(question)


def test_a_click_while_a_comparison_runs_still_counts(page):
    """Compare clicked again while the previous comparison runs (a new question typed, the slider
    moved) must answer the last inputs, not be dropped: Gradio's default for a click ignores it
    while the first is pending, which left the old answer (and, in CI, the next test waiting)."""
    question = page.locator("#question textarea").input_value()
    empty = "#status:has-text('question is empty')"
    try:
        page.click("#compare")  # a comparison with the question clears the test above's error
        page.wait_for_selector(empty, state="detached", timeout=30_000)
        page.wait_for_timeout(500)
        # both clicks in one script, so that the second one certainly finds the first pending
        page.evaluate("""() => {
            const button = document.querySelector('#compare'), box = document.querySelector('#question textarea');
            button.click();
            setTimeout(() => { box.value = ''; box.dispatchEvent(new Event('input', {bubbles: true})); button.click(); },
                       50);
        }""")
        page.wait_for_selector(empty, timeout=30_000)
    finally:
        page.locator("#question textarea").fill(question)


def test_bad_file_upload_shows_an_error_and_app_keeps_working(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    page.wait_for_selector("#status:has-text('not a readable image')", timeout=30_000)
    _pick(page, "retain")
    original, steered = _compare(page)
    assert original == steered or "sorry" not in steered.lower()


def _open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_mllmu_files_uploaded_in_the_browser_fit_this_sessions_eraser_and_a_download_name_is_explained(page, tmp_path):
    """Model & data, Your MLLMU-Bench files: a shard named as the benchmark's download names it is
    refused with the renaming to do; files named after their splits fit an eraser for one person
    of them. In a tab of its own: the fit replaces that session's eraser, not the other tests'."""
    from core.toyworld.mllmu import export_parquet
    from core.toyworld.train import load_world
    world = load_world("assets/toy-llava")
    files = [str(export_parquet(world, s, tmp_path / f"{s}.parquet")) for s in ("forget_5", "retain_95")]
    (tmp_path / "hub").mkdir()
    shard = tmp_path / "hub" / "train-00000-of-00001.parquet"
    shard.write_bytes((tmp_path / "forget_5.parquet").read_bytes())
    own = page.context.browser.new_page()
    try:
        own.goto(page.url)
        own.get_by_role("tab", name="Model & data").click()
        upload = own.locator("#mllmu_files input[type=file]")
        upload.set_input_files(files)
        own.wait_for_function("() => document.querySelector('#mllmu_files').innerText.includes('retain_95')",
                              timeout=30_000)
        person = world.forget_people("forget_5")[0].id
        own.locator("#mllmu_ids textarea").fill(person)
        own.click("#mllmu_btn")
        own.wait_for_selector("#mllmu_status:has-text('Fitted an eraser forgetting')", timeout=240_000)
        status = own.locator("#mllmu_status").inner_text()
        assert "forgetting 1 subject(s) of the uploaded files (99 retained" in status and "Note" not in status
        upload.set_input_files(str(shard))  # added to the two: the upload is refused whole, with the renaming to do
        own.wait_for_function("() => document.querySelector('#mllmu_files').innerText.includes('train-00000')",
                              timeout=30_000)
        own.click("#mllmu_btn")
        own.wait_for_selector("#mllmu_status:has-text('rename each file after its folder')", timeout=30_000)
    finally:
        own.close()


def test_layer_toggle_reruns_the_comparison(page):
    _pick(page, "FORGET")
    _set_strength(page, "3")
    page.wait_for_timeout(500)
    _compare(page)
    steered_1 = "#gates [data-testid='cell-1-1']"  # Gradio 6 tables are virtual: cells carry row/column ids
    before = page.locator(steered_1).inner_text().strip()
    assert before == ("yes" if page.locator("#layers input[name='1']").is_checked() else "no")
    after = "no" if before == "yes" else "yes"
    page.locator("#layers label").filter(has_text="1").first.click()  # toggle layer 1: the comparison reruns
    page.wait_for_function(f"() => document.querySelector(\"{steered_1}\").innerText.trim() === '{after}'",
                           timeout=30_000)
    # the gate is still read at an unsteered layer, so the table keeps one row per fitted layer
    assert page.locator("#gates [role=row].virtual-row").count() == page.locator("#layers label").count()


def test_picking_when_to_steer_reruns_the_comparison(page):
    """The mode radio reruns the comparison on the user's pick (no Compare click): the shipped eraser
    reads its gate once per prompt, so "every_step" answers with the error that names the modes
    it can use, and "prefill" brings the answers back."""
    _pick(page, "FORGET")
    page.locator("#mode label").filter(has_text="every_step").click()
    page.wait_for_selector("#status:has-text(\"choose 'prefill' or 'latched'\")", timeout=30_000)
    page.locator("#mode label").filter(has_text="prefill").click()
    page.wait_for_function("() => !document.querySelector('#status').innerText.includes('every generated token')",
                           timeout=30_000)
    assert _value(page, "steered") and _value(page, "original")


def test_reading_the_gate_at_a_deeper_layer_reruns_the_comparison(page):
    """The shipped eraser reads one gate over layers 0-3 and steers layer 1: the steered layer's
    gate cell shows that gate; "each steered layer" makes it show layer 1's own, and back."""
    _pick(page, "FORGET")
    if not page.locator("#layers input[name='1']").is_checked():  # the layer test above may have unticked it
        page.locator("#layers label").filter(has_text="1").first.click()
    else:
        page.click("#compare")
    steered_1, gate_1 = "#gates [data-testid='cell-1-1']", "#gates [data-testid='cell-1-2']"
    page.wait_for_function(f"() => document.querySelector(\"{steered_1}\")?.innerText.trim() === 'yes'",
                           timeout=30_000)
    page.wait_for_timeout(1000)
    before = page.locator(gate_1).inner_text().strip()
    page.locator("#gate_at input").click()
    page.get_by_role("option").filter(has_text="each steered layer").first.click()
    page.wait_for_function(f"(b) => document.querySelector(\"{gate_1}\").innerText.trim() !== b",
                           arg=before, timeout=30_000)
    assert float(page.locator(gate_1).inner_text()) != float(before)
    page.locator("#gate_at input").click()
    page.get_by_role("option").filter(has_text="as the eraser says").first.click()
    page.wait_for_function(f"(b) => document.querySelector(\"{gate_1}\").innerText.trim() === b",
                           arg=before, timeout=30_000)


def test_a_gate_floor_above_the_portraits_gate_gives_the_original_answer(page):
    """The playground's gate ramp: with the full value at 1 and the floor just above the forget
    portrait's gate, the steered answer is the original one (nothing steers); back at the
    eraser's own ramp, the refusal returns."""
    _pick(page, "FORGET")
    if not page.locator("#layers input[name='1']").is_checked():  # a layer test above may have unticked it
        page.locator("#layers label").filter(has_text="1").first.click()
    stored = (float(page.locator("#gate_floor input[type=number]").input_value()),
              float(page.locator("#gate_full input[type=number]").input_value()))
    _set_strength(page, "2")  # the shipped strength (the first test leaves it at 0)
    page.click("#compare")
    page.wait_for_function("() => { const a = document.querySelector('#original textarea').value;"
                           " const b = document.querySelector('#steered textarea').value; return a && b && a !== b; }",
                           timeout=30_000)
    page.wait_for_timeout(1000)  # a comparison the slider's release started may still land
    original, refused = _value(page, "original"), _value(page, "steered")
    gate = float(page.locator("#gates [data-testid='cell-1-2']").inner_text())
    floor = round(math.ceil((gate + 0.01) / 0.05) * 0.05, 2)
    assert 0 < floor <= 0.95, gate
    set_slider(page, "gate_full", 1)
    set_slider(page, "gate_floor", floor)
    page.click("#compare")
    page.wait_for_function("() => document.querySelector('#steered textarea').value === "
                           "document.querySelector('#original textarea').value", timeout=30_000)
    assert _value(page, "original") == original
    set_slider(page, "gate_floor", stored[0])
    set_slider(page, "gate_full", stored[1])
    page.click("#compare")
    page.wait_for_function("(r) => document.querySelector('#steered textarea').value === r", arg=refused,
                           timeout=30_000)


def test_null_space_draws_the_playground_ramp_over_the_deciding_gate(page):
    """The Null space view's histogram of the gate that decides the steering carries the ramp's
    floor and full value; moving the playground's floor slider moves the line drawn there."""
    _open_tab(page, "Null space")
    shows = "(t) => document.querySelector('#ns_decision').innerText.includes(t)"
    page.wait_for_function(shows, arg="floor 0.136", timeout=60_000)
    text = page.locator("#ns_decision").inner_text()
    assert "full 0.680" in text and "joint gate over layers 0, 1, 2, 3" in text and "% of retain rows" in text
    _open_tab(page, "Steering playground")
    set_slider(page, "gate_floor", 0.3)
    _open_tab(page, "Null space")
    page.wait_for_function(shows, arg="floor 0.300", timeout=30_000)
    _open_tab(page, "Steering playground")
    set_slider(page, "gate_floor", 0.136)
    _open_tab(page, "Null space")
    page.wait_for_function(shows, arg="floor 0.136", timeout=30_000)
    _open_tab(page, "Steering playground")


def test_short_pgd_streams_steps_and_finishes(page):
    _pick(page, "FORGET")
    _open_tab(page, "PGD studio")
    steps = page.locator("#pgd_steps input[type=number]")
    steps.fill("4")
    steps.press("Enter")
    page.click("#pgd_run")
    # generous: on a loaded 2-core machine the job can wait behind the previous test's (one heavy job at a time)
    # the job's last word, whatever it is (an error or a stop fails below with its text)
    page.wait_for_function("() => /done after|rror|stopped|Stopped/.test(document.querySelector('#pgd_status')"
                           ".innerText)", timeout=180_000)
    status = page.locator("#pgd_status").inner_text()
    assert "done after 4 steps" in status, status
    # The status can be painted before the images, plot and answer of the same update: wait for
    # each (an immediate count lost that race once on a cold first run in a fresh clone).
    for selector in ("#pgd_out img", "#pgd_delta img", "#pgd_plot .js-plotly-plot"):
        page.wait_for_selector(selector, timeout=30_000)
        assert page.locator(selector).count() == 1
    page.wait_for_function("() => document.querySelector('#pgd_answer textarea').value.trim() !== ''",
                           timeout=30_000)


def test_input_side_attacks_fill_their_table(page):
    _open_tab(page, "Evaluate")
    run_attack_panel(page, steps=2, timeout_ms=180_000, eps=8)
    table = page.locator("#attack_table").inner_text()
    for name in ("none", "blur r2", "occlusion 18%", "role-play", "answer prefilling", "multi-turn (",
                 "adaptive PGD on the gate (eps 8/255, 2 steps)"):  # the sliders' values were used
        assert name in table


def test_activation_map_switches_projection(page):
    _open_tab(page, "Activation map")
    page.click("#map_draw")
    page.wait_for_selector("#map_plot .js-plotly-plot", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#map_plot').innerText.includes('PC 1')", timeout=60_000)
    page.locator("#map_method label").filter(has_text="UMAP").click()
    page.wait_for_function("() => document.querySelector('#map_plot').innerText.includes('UMAP 1')",
                           timeout=180_000)


def test_learn_button_opens_the_playground_with_a_forget_portrait(page):
    _open_tab(page, "Learn")
    page.click("#learn_0")
    page.wait_for_selector("#compare", state="visible", timeout=30_000)
    assert page.locator("#strength input[type=number]").input_value() == "0"
    page.wait_for_selector("#image img", timeout=30_000)  # the portrait it opens with, not an empty box
    page.click("#compare")  # at strength 0 the two answers agree (an earlier test may have left them so)
    page.wait_for_function("() => document.querySelector('#steered textarea').value === "
                           "document.querySelector('#original textarea').value", timeout=90_000)
    _set_strength(page, "3")  # it is a forget person's: the eraser turns the answer into a refusal
    page.click("#compare")
    page.wait_for_function("() => { const o = document.querySelector('#original textarea').value;"
                           " return o && document.querySelector('#steered textarea').value !== o; }", timeout=90_000)


def test_hardening_the_gate_raises_it_on_attacked_pictures_and_moves_the_ramp(page):
    """Null space view: one hardening round of 2 PGD steps on this session's eraser. The status
    gives the gate on the round's attacked pictures before and after the refit, and the
    playground's ramp sliders take the hardened eraser's ramp (read again off the grown rows)."""
    _open_tab(page, "Null space")
    set_slider(page, "ns_steps", 2)
    page.click("#ns_harden")
    page.wait_for_selector("#ns_status:has-text('Hardened (1 round in all)')", timeout=240_000)
    status = page.locator("#ns_status").inner_text()
    before, after = map(float, re.search(r"images (\S+) -> (\S+) after", status).groups())
    floor, full = map(float, re.search(r"Gate ramp (\S+) / (\S+) ", status).groups())
    assert after > before and 0 <= floor < full <= 1
    page.wait_for_function("(t) => document.querySelector('#ns_decision').innerText.includes(t)",
                           arg=f"floor {floor:.3f}", timeout=30_000)
    _open_tab(page, "Steering playground")
    page.wait_for_function("(f) => Number(document.querySelector('#gate_floor input[type=number]').value) === f",
                           arg=floor, timeout=30_000)
    assert float(page.locator("#gate_full input[type=number]").input_value()) == pytest.approx(full)


def test_null_space_refit_to_the_papers_fit(page):
    """The shipped gate has retain rows at ratio 1 (k = d = 256) and one gate per forget person; back
    to the paper's fit (ratio 0.6, no retain rows, one gate) every layer's null space shrinks to
    k = 153, and the gate is read over layers 0 and 1 instead of 0-3. Near the end: it replaces
    this page's session eraser (the gate only)."""
    _open_tab(page, "Null space")
    page.wait_for_function("() => document.querySelector('#ns_table').innerText.includes('256')", timeout=60_000)
    for elem, value in (("ns_ratio", "0.6"), ("ns_weight", "0")):
        box = page.locator(f"#{elem} input[type=number]")
        box.fill(value)
        box.press("Enter")
    person = page.locator("#ns_person input[type=checkbox]")
    assert person.is_checked()
    person.uncheck()
    # the joint gate shows the eraser's layers; keep 0 and 1 only
    assert page.locator("#ns_joint .token").all_inner_texts() == ["0", "1", "2", "3"]
    for layer in ("3", "2"):
        page.locator(f"#ns_joint [title='Remove {layer}']").click()
    page.click("#ns_refit")
    page.wait_for_selector("#ns_status:has-text('retain weight 0, one gate for the whole forget set, read over "
                           "layers 0, 1 together')", timeout=180_000)
    page.wait_for_function("() => document.querySelector('#ns_table').innerText.includes('153')", timeout=30_000)
    cells = page.locator("#ns_table").inner_text().split()
    assert cells.count("153") == 4 and "256" not in cells
    # the refitted gate's ramp (read off its rows again) is drawn and becomes the playground's
    floor = float(re.search(r"floor (\S+):", page.locator("#ns_decision").inner_text()).group(1))
    _open_tab(page, "Steering playground")
    page.wait_for_function("(f) => Math.abs(Number(document.querySelector('#gate_floor input[type=number]').value)"
                           " - f) < 1e-3", arg=floor, timeout=30_000)


def test_null_space_refit_with_a_floor_cross_fitted_over_the_retained_people(page):
    """The folds box: the shipped gate refitted as it is, its floor read off the 90 retained people
    in 3 folds (each fold read by a gate fitted without it): 0.419, what scripts/crossfit_ramp.py
    measured (results/crossfit_ramp.json), against the shipped 0.136 read off the gate's own
    rows. In a tab of its own: the refit replaces that session's eraser only."""
    import json
    want = json.loads(open("results/crossfit_ramp.json").read())["crossfit"]["floor"]
    own = page.context.browser.new_page()
    try:
        own.goto(page.url)
        own.get_by_role("tab", name="Null space").click()
        own.wait_for_function("() => document.querySelector('#ns_table').innerText.includes('256')", timeout=120_000)
        box = own.locator("#ns_folds input[type=number]")
        assert box.input_value() == "0"
        box.fill("3")
        own.click("#ns_refit")
        own.wait_for_selector("#ns_status:has-text('cross-fitted over 3 folds of 90 retained people')",
                              timeout=180_000)
        floor = float(re.search(r"its floor (\S+) cross-fitted", own.locator("#ns_status").inner_text()).group(1))
        assert floor == pytest.approx(want, abs=1e-3)
        own.get_by_role("tab", name="Steering playground").click()
        own.wait_for_function("(f) => Math.abs(Number(document.querySelector('#gate_floor input[type=number]').value)"
                              " - f) < 1e-3", arg=floor, timeout=30_000)
    finally:
        own.close()


def test_fitting_an_eraser_for_another_split(page):
    """Last on purpose: it replaces this page's session eraser. The later-turn gate prompts box
    stays unticked here (the fit with them is the workbench test's, on the tiny world: a third
    longer here)."""
    _open_tab(page, "Model & data")
    page.locator("#forget_split label").filter(has_text="forget_5").click()
    assert not page.locator("#gate_variants input[type=checkbox]").is_checked()
    page.click("#fit_btn")
    page.wait_for_selector("#fit_status:has-text('forgetting the split forget_5')", timeout=300_000)
    status = page.locator("#fit_status").inner_text()
    assert "Fitted a recall eraser" in status and "later-turn" not in status
    # the playground's gallery names this session's forget set (it kept the shipped eraser's ten)
    page.wait_for_function("() => (document.querySelector('#gallery').textContent.match(/\\(FORGET\\)/g) || [])"
                           ".length === 5", timeout=30_000)


def test_withdrawing_a_person_in_a_new_tab(page):
    """A second tab is a second session with the shipped eraser: the list shows its ten people;
    withdrawing one leaves nine and the playground reruns (the fit sets' activations are the
    server's cached ones, collected by the activation map test above)."""
    context = page.context.browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    try:
        tab.goto(page.url)
        tab.wait_for_selector("#compare", timeout=60_000)
        tab.get_by_role("tab", name="Model & data").click()
        count = "(n) => (document.querySelector('#forgotten').innerText.match(/\\bp\\d{3}\\b/g) || []).length === n"
        tab.wait_for_function(count, arg=10, timeout=30_000)
        first = re.findall(r"\bp\d{3}\b", tab.locator("#forgotten").inner_text())[0]
        tab.locator("#withdraw_pick input").click()
        tab.get_by_role("option").filter(has_text=f"({first})").first.click()
        tab.click("#withdraw_btn")
        tab.wait_for_selector("#withdraw_status:has-text('Withdrawn')", timeout=180_000)
        tab.wait_for_function(count, arg=9, timeout=30_000)
        assert first not in tab.locator("#forgotten").inner_text()
    finally:
        context.close()


def test_saved_results_are_listed_with_readable_labels():
    """The Evaluate tab's comparison rows: every results/*.json, one row per split."""
    import json
    from pathlib import Path

    from app.ui import _saved_rows
    rows = _saved_rows()
    labels = [r[0] for r in rows]
    assert "saved: IdkNLL (weights edited)" in labels and "saved: retain-only (gold standard)" in labels
    idk = [r for r in rows if r[0] == "saved: IdkNLL (weights edited)"]
    assert [r[1] for r in idk] == ["forget", "test", "retain", "real"]
    res = json.loads((Path(__file__).resolve().parents[1] / "results" / "baseline_idk.json").read_text())
    assert idk[0][4] == round(100 * res["splits"]["forget"]["image_text"]["cloze"], 1)  # cloze column, %


def test_saved_results_skip_files_that_are_not_evaluations(tmp_path, monkeypatch):
    """The app starts whatever sits in results/: lists (the relearning table), dicts without
    splits (tuner grids), corrupt or wrongly typed files are skipped, evaluations are listed."""
    import json
    from pathlib import Path

    import app.ui as ui
    real = json.loads((Path(__file__).resolve().parents[1] / "results" / "vanilla.json").read_text())
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "relearn.json").write_text(json.dumps([{"model": "x"}]))
    (tmp_path / "results" / "grid.json").write_text(json.dumps({"best": None}))
    (tmp_path / "results" / "broken.json").write_text("{not json")
    (tmp_path / "results" / "odd.json").write_text(json.dumps({"splits": [1, 2]}))
    (tmp_path / "results" / "vanilla.json").write_text(json.dumps(real))
    monkeypatch.setattr(ui, "ROOT", tmp_path)
    rows = ui._saved_rows()
    assert {r[0] for r in rows} == {"saved: vanilla"} and [r[1] for r in rows] == ["forget", "test", "retain", "real"]


# ---------------------------------------------------------------- serving (issue 22), no browser
@pytest.fixture(scope="module")
def shipped():
    from app.workbench import Workbench
    return Workbench.load()


def test_long_handlers_share_one_bounded_queue_and_internal_events_are_not_endpoints(shipped, monkeypatch):
    from app import limits
    from app.ui import build
    monkeypatch.delenv("MLLMERASER_PUBLIC", raising=False)
    demo = build(shipped)
    fns = {f.name: f for f in demo.fns.values()}
    for name in ("do_fit", "do_forget_someone", "do_mllmu", "do_pgd", "draw_map", "refit", "do_harden", "do_eval",
                 "do_attack", "run_heatmap", "do_load_model"):
        assert (fns[name].concurrency_id, fns[name].concurrency_limit) == ("heavy", limits.HEAVY_JOBS), name
    assert (fns["compare"].concurrency_id, fns["compare"].concurrency_limit) == ("light", limits.LIGHT_JOBS)
    assert demo._queue.max_size == limits.QUEUE_SIZE
    stops = [f for f in demo.fns.values() if f.name == "stop"]
    assert len(stops) == 7 and all(not f.queue and f.api_visibility == "private" for f in stops)  # never queued
    endpoints = set(demo.get_api_info()["named_endpoints"])
    assert {"/compare", "/do_fit", "/do_pgd", "/do_eval"} <= endpoints
    assert not any(e.startswith(("/stop", "/go", "/pick", "/show_null", "/keep", "/lambda", "/compare_"))
                   for e in endpoints)


def test_the_mllmu_upload_status_names_the_people_to_forget_who_have_no_name(shipped, monkeypatch):
    """MLLMU-Bench's files have no name column: the fit leaves out the questions by name, and the
    status said nothing of it."""
    from app.ui import build
    from app.workbench import Session
    from core.data.records import PersonRecord
    from core.data.source import ForgetData
    monkeypatch.delenv("MLLMERASER_PUBLIC", raising=False)
    do_mllmu = next(f for f in build(shipped).fns.values() if f.name == "do_mllmu").fn

    names = {}

    def fit(files, ids, sess, *rest):  # what the fit leaves in the session (its own tests run it whole)
        sess.data = ForgetData([PersonRecord(i, name=n) for i, n in names.items()], [PersonRecord("p4")], [], [])
        return object()
    monkeypatch.setattr(shipped, "use_mllmu_files", fit)
    names.update(p1=None, p2="Ann Lee", p3=None)
    _, status = do_mllmu(Session(), ["forget_10.parquet"], "")
    assert status.startswith("Fitted an eraser forgetting **3** subject(s)")
    assert "Note: 2 of the 3 people to forget have no name (p1, p3): the project's own questions by name" in status
    names.update(p1="Bo Ray", p3="Cy Dee")
    assert "Note" not in do_mllmu(Session(), ["forget_10.parquet"], "")[1]


def test_each_stop_button_stops_the_jobs_of_its_own_view(shipped, monkeypatch):
    """The Null space view's Stop ends its refit and its hardening; the map's Stop only the map's
    drawing (a refit ran as a map job: the Null space Stop did nothing to it)."""
    from app.ui import JOBS, build
    from app.workbench import Session
    monkeypatch.delenv("MLLMERASER_PUBLIC", raising=False)
    demo = build(shipped)
    ids = {b.elem_id: i for i, b in demo.blocks.items() if getattr(b, "elem_id", None)}
    stop_of = {elem: next(f for f in demo.fns.values() if f.name == "stop" and (ids[elem], "click") in f.targets)
               for elem in ("ns_stop", "map_stop", "heat_stop")}
    for elem, stops in (("ns_stop", {"refit", "harden"}), ("map_stop", {"map"}), ("heat_stop", {"heatmap"})):
        sess = Session()
        jobs = {k: JOBS.start(sess.id, k) for k in ("refit", "harden", "map", "heatmap")}
        stop_of[elem].fn(sess)
        assert {k for k, j in jobs.items() if j.should_stop()} == stops, elem
        for j in jobs.values():
            JOBS.finish(sess.id, j)


def test_a_refit_or_hardening_whose_views_cannot_be_drawn_still_says_it_worked(shipped, monkeypatch):
    """The Null space layer picked may be one the new eraser does not fit (an uploaded eraser fitted on
    layers 1-3, layer 0 picked): the refit and the hardening are in use, so they say so and why the
    views are not redrawn (it was "Something went wrong on the server", the sliders left as they were)."""
    import dataclasses

    from app.ui import build
    from app.workbench import Session
    from core.eraser import Eraser
    monkeypatch.delenv("MLLMERASER_PUBLIC", raising=False)
    d = shipped.eraser
    cfg = dataclasses.replace(d.config, layers=[1, 2, 3], joint_gate=None, steer_layers=[1])
    sub = Eraser(d.direction, d.gate, cfg, d.diagnostics)
    fns = {f.name: f.fn for f in build(shipped).fns.values()}
    quiet = dict(progress=lambda *a, **k: None)
    monkeypatch.setattr(shipped, "refit", lambda eraser, *a, **k: eraser)  # the engine's refit is tested elsewhere
    sess = Session(eraser=sub)
    out = fns["refit"](sess, "0", 1.0, 10.0, 0.3, True, [], **quiet)
    assert out[0].eraser is sub and (out[1], out[2]) == (cfg.gate_floor, cfg.gate_full)
    # the retain-weight box emptied: the refit keeps the eraser's weight, and says so (float(None) failed
    # after the session's eraser was replaced)
    empty = fns["refit"](Session(eraser=sub), "0", 1.0, 10.0, None, True, [], **quiet)
    assert empty[-1].startswith("Refitted") and f"retain weight {cfg.retain_weight:g}" in empty[-1]
    assert out[-1].startswith("Refitted") and "The views are not redrawn: Layer 0 is not fitted" in out[-1]
    monkeypatch.setattr(shipped, "harden", lambda s, *a, **k: (sub, ["round 1: gate 0.5 -> 0.9"]))
    out = fns["do_harden"](sess, "0", 1, 2, **quiet)
    assert out[-1].startswith("Hardened") and "The views are not redrawn: Layer 0 is not fitted" in out[-1]
    out = fns["refit"](sess, "3", 1.0, 10.0, 0.3, True, [], **quiet)  # a layer it fits: the views are drawn
    assert "not redrawn" not in out[-1] and [row[0] for row in out[6]] == [1, 2, 3]  # the per-layer table


def test_keeping_a_pgd_image_counts_it_once_and_is_capped(shipped, monkeypatch):
    """"Keep for the recall set" twice on one PGD result added it twice, and without a cap a session
    could hold any number of pictures."""
    from app import limits
    from app.ui import build
    from app.workbench import Session
    from conftest import random_image
    monkeypatch.delenv("MLLMERASER_PUBLIC", raising=False)
    keep = next(f.fn for f in build(shipped).fns.values() if f.name == "keep_pgd")
    sess = Session()
    assert "Run PGD first" in keep(sess)[1]
    sess.last_pgd = (random_image(0), "who is it ?")
    assert "gets 1 PGD image" in keep(sess)[1] and "Already kept" in keep(sess)[1] and len(sess.recall_images) == 1
    monkeypatch.setattr(limits, "KEPT_PGD", 2)
    sess.last_pgd = (random_image(1), "who is it ?")
    assert "gets 2 PGD image" in keep(sess)[1]
    sess.last_pgd = (random_image(2), "who is it ?")
    assert "At most 2 PGD images" in keep(sess)[1] and len(sess.recall_images) == 2


def test_public_mode_exposes_no_api_endpoint_and_no_server_path(shipped, monkeypatch):
    from app.ui import _model_info, build
    monkeypatch.setenv("MLLMERASER_PUBLIC", "1")
    demo = build(shipped)
    assert demo.get_api_info()["named_endpoints"] == {}
    assert "/" not in _model_info(shipped).split("`")[1]  # the folder name, not where it lives


def test_uploads_over_the_size_cap_are_refused_by_the_server(shipped):
    """Gradio's max_file_size refuses while uploading (HTTP 413), before any handler reads a byte;
    the app passes limits.UPLOAD_BYTES (checked here with a small cap on the same mechanism)."""
    import httpx
    from app import limits
    from app.ui import build, launch_options
    assert launch_options()["max_file_size"] == limits.UPLOAD_BYTES
    demo = build(shipped)
    _, url, _ = demo.launch(prevent_thread_lock=True, max_file_size=1000, quiet=True)
    try:
        small = httpx.post(f"{url}gradio_api/upload", files={"files": ("a.txt", b"x" * 500)}, timeout=30)
        big = httpx.post(f"{url}gradio_api/upload", files={"files": ("b.txt", b"x" * 5000)}, timeout=30)
    finally:
        demo.close()
    assert small.status_code == 200
    assert big.status_code == 413 and "1000" in big.text


def test_an_api_submitted_huge_image_is_not_decoded_by_gradio(shipped, tmp_path):
    """A 97 KB PNG of 10000 x 10000 pixels decoded to +476 MB inside Gradio before the app's own
    limit ran. The playground's image box hands the handler a path; the handler reads the header."""
    import resource
    import time

    from PIL import Image
    from gradio.data_classes import FileData

    from app.ui import build
    from app.workbench import UserError, read_image
    canvas = tmp_path / "canvas.png"
    Image.new("1", (9000, 9000)).save(canvas)
    demo = build(shipped)
    box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "image")
    before, t = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    value = box.preprocess(FileData(path=str(canvas), orig_name="canvas.png"))
    assert isinstance(value, str)  # a path, not pixels
    with pytest.raises(UserError, match="9000x9000 pixels"):
        read_image(value)
    assert time.perf_counter() - t < 2 and resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024


def test_temporary_files_are_cleaned_up(shipped, tmp_path):
    import os
    import time

    from app import limits
    from app.ui import _prune, build
    assert build(shipped).delete_cache == (limits.TEMP_SECONDS, limits.TEMP_SECONDS)  # Gradio's uploads
    old, new = tmp_path / "eraser-old", tmp_path / "eraser-new"
    for d in (old, new):
        d.mkdir()
        (d / "eraser.zip").write_bytes(b"x")
    stale = time.time() - limits.TEMP_SECONDS - 10
    os.utime(old, (stale, stale))
    _prune(tmp_path)
    assert not old.exists() and new.exists()



def test_loading_a_model_drops_the_pgd_pictures_kept_on_the_one_before(shipped, monkeypatch):
    """PGD pictures are optimised against one model's weights: kept on the shipped model, they went
    into the recall set of the next fit on a model loaded after it."""
    from PIL import Image

    from app.ui import build
    from app.workbench import Session
    monkeypatch.delenv("MLLMERASER_PUBLIC", raising=False)
    fns = {f.name: f.fn for f in build(shipped).fns.values()}
    pic = (Image.new("RGB", (8, 8)), "who is this ?")
    sess = Session(recall_images=[pic], last_pgd=pic)
    out = fns["do_load_model"](sess, shipped.adapter.name_or_path)  # the same model again: a fresh start too
    assert out[0] is sess and sess.recall_images == [] and sess.last_pgd is None and sess.eraser is None
    # the answers, tables and plots of the model before are cleared (they stayed on screen)
    assert out[6:] == ("", "", [], [], None, None, None, None, None, [])
    # the People table follows the session's eraser after any change of eraser, not only a fit
    assert fns["people_marks"](sess) == shipped.people_rows(sess)
