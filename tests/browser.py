"""Shared set-up for the real-browser tests: Debian chromium driven by Playwright, and the app
served on a free localhost port."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def ensure_chromium() -> str:
    """Debian's chromium (Playwright's own browser download cannot work offline). Installs it
    with apt when missing and running as root; otherwise fails with what to do."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False, capture_output=True, env=env)
    if not Path(CHROMIUM).exists():
        raise RuntimeError("browser tests need Debian's chromium at /usr/bin/chromium: "
                           "run `sudo apt-get install -y chromium`")
    return CHROMIUM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """A `preexec_fn` that asks Linux to end the server when the test run dies (None where there is
    no prctl). Why: a test run killed mid-way (Ctrl-C twice, a timeout) left its app server running,
    busy with the last job it was given, and a later run on the same 2 cores missed a time bound
    next to it. The function is looked up here, in the parent: the child, between fork and exec,
    only calls it (no import, no lock another thread could hold)."""
    import ctypes
    import signal
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class AppServer:
    """`python app.py` in a subprocess on a free port; stopped on exit."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1",
               **(env or {})}
        # the server's output goes to a file: a pipe nobody reads blocks the server once it holds 64 KB
        self.log = tempfile.NamedTemporaryFile("w+", prefix="app-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port), *args], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=_die_with_parent())

    def output(self) -> str:
        """What the server has printed so far (for a failure's message)."""
        return Path(self.log.name).read_text(errors="replace")

    def wait(self, timeout: float = 90) -> "AppServer":
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited early:\n{self.output()}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"app did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        if not os.environ.get("MLLMERASER_KEEP_APP_LOG"):  # set it to keep the server logs of a flaky run
            Path(self.log.name).unlink(missing_ok=True)


@contextmanager
def open_app(*args: str, env: dict[str, str] | None = None) -> Iterator:
    """A Playwright page on `python app.py ARGS` (with `env` added to the environment), loaded up
    to the playground's Compare button; the browser and the server stop on exit."""
    from playwright.sync_api import sync_playwright
    exe = ensure_chromium()
    server = AppServer(*args, env=env).wait()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(server.url)
            page.wait_for_selector("#compare", timeout=60_000)
            yield page
            browser.close()
    finally:
        server.stop()


def set_slider(page, elem_id: str, value) -> None:
    """Type `value` into a Gradio slider's number box until the slider keeps it. A value typed
    while an accordion is still opening can be lost (seen once in a fresh clone), and a slider
    that showed the value can still be put back to its default by the accordion's late first
    render (seen once in CI: a run used the default), so the value must also still be there a
    second later."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    box = page.locator(f"#{elem_id} input[type=number]")
    box.wait_for(state="visible", timeout=30_000)
    shows = f"Number(document.querySelector('#{elem_id} input[type=range]').value) == {float(value)}"
    for attempt in range(5):
        box.fill(str(value))
        box.press("Enter")
        box.blur()
        try:
            page.wait_for_function(shows, timeout=6_000)
            page.wait_for_timeout(1_000)
            if page.evaluate(shows):
                return
        except PlaywrightTimeout:
            pass
    raise AssertionError(f"the slider #{elem_id} did not keep the value {value}")


def run_attack_panel(page, steps: int, timeout_ms: int, eps: int | None = None) -> None:
    """Open the Evaluate tab's attack accordion, set the adaptive PGD steps (and budget), run,
    wait for "done"."""
    page.get_by_text("Input-side attacks").click()
    set_slider(page, "attack_steps", steps)
    if eps is not None:
        set_slider(page, "attack_eps", eps)
    page.click("#attack_run")
    page.wait_for_selector("#attack_status:has-text('Adaptive PGD moved the mean forget gate')", timeout=timeout_ms)
