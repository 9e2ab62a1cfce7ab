"""Screenshots of every view of the app for the README, taken in a real browser (Playwright +
Debian chromium) on the shipped model.

    python scripts/screenshots.py              # starts the app, writes docs/screenshot_*.png
    python scripts/screenshots.py --url URL    # uses an app that is already running
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_ARGS, AppServer, ensure_chromium, run_attack_panel  # noqa: E402


def _shot(page, name: str) -> None:
    out = ROOT / "docs" / f"screenshot_{name}.png"
    page.wait_for_timeout(800)
    page.screenshot(path=str(out), full_page=True)
    print(f"wrote {out}")


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


def take(page) -> None:
    page.wait_for_selector("#compare", timeout=120_000)
    # wait until the image box shows the portrait: a compare sent before that asks without an image
    page.locator("#gallery button").filter(has_text="FORGET").first.click()
    page.wait_for_function("() => document.querySelector('#image img')?.src", timeout=30_000)
    page.click("#compare")
    page.wait_for_function("() => document.querySelector('#steered textarea').value.length > 0", timeout=60_000)
    page.click("#examples_btn")
    page.wait_for_function("() => document.querySelector('#selectivity').innerText.includes('retain:')", timeout=60_000)
    page.click("#heat_btn")
    page.wait_for_selector("#heatmap .js-plotly-plot", timeout=120_000)
    _shot(page, "playground")

    _tab(page, "Model & data")
    _shot(page, "data")

    _tab(page, "PGD studio")
    page.click("#pgd_run")
    page.wait_for_selector("#pgd_status:has-text('done after')", timeout=180_000)
    _shot(page, "pgd")

    _tab(page, "Activation map")
    page.click("#map_draw")
    page.wait_for_function("() => document.querySelector('#map_plot').innerText.includes('PC 1')", timeout=180_000)
    _shot(page, "map")

    _tab(page, "Null space")
    page.wait_for_selector("#ns_spectrum .js-plotly-plot", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#ns_decision').innerText.includes('floor')", timeout=60_000)
    _shot(page, "nullspace")

    _tab(page, "Evaluate")
    page.click("#eval_run")
    page.wait_for_selector("#eval_status:has-text('Done')", timeout=600_000)
    run_attack_panel(page, steps=10, timeout_ms=600_000)
    _shot(page, "evaluate")

    _tab(page, "Learn")
    _shot(page, "learn")


def main() -> None:
    from playwright.sync_api import sync_playwright
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="an app that is already running (default: start one)")
    args = ap.parse_args()
    server = None if args.url else AppServer().wait(300)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(args.url or server.url)
            take(page)
            browser.close()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
