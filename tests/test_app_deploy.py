"""Public-deployment mode: an allow-list of models, no server paths in messages."""
import pytest

from app import deploy
from app.workbench import DEFAULT_MODEL, UserError, Workbench


@pytest.fixture
def public(monkeypatch):
    monkeypatch.setenv(deploy.PUBLIC_ENV, "1")
    monkeypatch.delenv(deploy.MODELS_ENV, raising=False)


def test_off_by_default_and_paths_kept(monkeypatch):
    monkeypatch.delenv(deploy.PUBLIC_ENV, raising=False)
    assert not deploy.public()
    assert deploy.scrub("no file /root/.cache/x/config.json") == "no file /root/.cache/x/config.json"


def test_scrub_keeps_folder_names_and_drops_server_paths(public):
    text = ("Could not load '/root/.cache/huggingface/hub/models--a--b': no '/work/main/assets/x/config.json'; "
            "eps 16/255, hub id llava-hf/llava-1.5-7b-hf")
    out = deploy.scrub(text)
    assert "/root" not in out and "/work" not in out
    assert "'models--a--b'" in out and "'config.json'" in out
    assert "16/255" in out and "llava-hf/llava-1.5-7b-hf" in out


def test_the_allow_list_defaults_to_the_shipped_model(public, monkeypatch, mini_toy):
    assert deploy.allowed_models(DEFAULT_MODEL) == {"toy-llava": DEFAULT_MODEL.resolve()}
    monkeypatch.setenv(deploy.MODELS_ENV, f"{DEFAULT_MODEL},{mini_toy}")
    assert set(deploy.allowed_models(DEFAULT_MODEL)) == {"toy-llava", mini_toy.name}
    # an allow-list without the model the app started with: a visitor who switched could not come back to it
    monkeypatch.setenv(deploy.MODELS_ENV, str(mini_toy))
    assert deploy.allowed_models(DEFAULT_MODEL) == {mini_toy.name: mini_toy.resolve(), "toy-llava": DEFAULT_MODEL.resolve()}


def test_public_mode_loads_only_allowed_models_by_name(public, monkeypatch, mini_toy):
    from app import workbench as w
    w._LOADED.clear()
    for probe in ("~", "/etc", "/root/.cache/huggingface", str(mini_toy), "llava-hf/llava-1.5-7b-hf"):
        with pytest.raises(UserError) as err:
            Workbench.shared(probe)
        msg = str(err.value)
        assert "loads only: toy-llava" in msg and "/" not in msg.split("loads only")[1].split(".")[0]
        assert "/root" not in msg and str(mini_toy.parent) not in msg
    monkeypatch.setenv(deploy.MODELS_ENV, str(mini_toy))
    wb = Workbench.shared(mini_toy.name)  # asked for by folder name
    assert wb.adapter.num_layers > 0 and Workbench.shared(f"/elsewhere/{mini_toy.name}") is wb
    w._LOADED.clear()


def test_a_public_app_in_a_browser_shows_folder_names_and_refuses_other_models():
    """`MLLMERASER_PUBLIC=1 python app.py` in a real browser: the Load-model box holds the
    folder name, probing the server's disk gets the allow-list and no path, the API page lists
    no endpoint, and the playground still answers."""
    import urllib.request

    from browser import open_app
    with open_app(env={"MLLMERASER_PUBLIC": "1", "MLLMERASER_WARM_UMAP": "0"}) as page:
        page.get_by_role("tab", name="Model & data").click()
        box = page.locator("#model_path textarea")
        assert box.input_value() == "toy-llava"
        assert "/" not in page.locator("#model_info").inner_text().split("Model:")[1].split("(")[0]
        box.fill("/root/.cache/huggingface")
        page.click("#load_model")
        page.wait_for_selector("#model_info:has-text('loads only')", timeout=30_000)
        shown = page.locator("#model_info").inner_text()
        assert "toy-llava" in shown and "/root" not in shown and "/work" not in shown
        info = urllib.request.urlopen(page.url + "gradio_api/info", timeout=10).read().decode()
        assert '"named_endpoints": {}' in info.replace(" ", "").replace('":{}', '": {}')
        page.get_by_role("tab", name="Steering playground").click()
        page.click("#compare")
        page.wait_for_function("() => document.querySelector('#original textarea').value.length > 0", timeout=30_000)


def test_a_public_apps_model_note_names_no_server_path(public, tmp_path):
    """The note of a model whose world.json failed to load held its full path on the server."""
    from app.ui import _model_info
    from core.models.tiny import save_tiny
    folder = save_tiny("llava", tmp_path / "space-model")
    (folder / "world.json").write_text('{"people": 5}')
    wb = Workbench.load(folder, eraser=None)
    assert str(tmp_path) in wb.note
    info = _model_info(wb)
    assert "world.json" in info and str(tmp_path) not in info
