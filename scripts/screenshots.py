"""Screenshots of the app for the README, taken in a real browser (Playwright + Debian chromium).

    python scripts/screenshots.py          # writes docs/screenshot_playground.png
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser import CHROMIUM_ARGS, AppServer, ensure_chromium  # noqa: E402


def main() -> None:
    from playwright.sync_api import sync_playwright
    server = AppServer().wait()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=ensure_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 1150})
            page.goto(server.url)
            page.wait_for_selector("#compare", timeout=60_000)
            page.locator("#gallery button").filter(has_text="FORGET").first.click()
            page.click("#compare")
            page.wait_for_function("() => document.querySelector('#steered textarea').value.length > 0",
                                   timeout=30_000)
            out = ROOT / "docs" / "screenshot_playground.png"
            page.screenshot(path=str(out), full_page=True)
            print(f"wrote {out}")
            browser.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
