"""The web page in a real browser: headless Chromium (Debian's) driven by Playwright, drawing a
stroke with the mouse and reading the prediction and the tape's table off the page."""
import importlib.util
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="needs playwright (pip install playwright)"),
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


def test_drawing_a_one_and_reading_the_tape(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # Playwright gives it a fresh profile
        page = browser.new_page(viewport={"width": 1300, "height": 950})
        page.goto(server + "/")
        page.wait_for_selector("#tape-table tbody tr")
        rows = page.locator("#tape-table tbody tr")
        assert rows.count() == 6
        assert rows.nth(5).locator("td").all_inner_texts() == ["v5", "add", "v3, v4", "1, 1", "1"]
        assert "df/dx2 = 1.71828" in page.locator("#tape-result").inner_text()

        box = page.locator("#pad").bounding_box()
        page.mouse.move(box["x"] + 140, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + 135, box["y"] + 240, steps=20)  # a vertical stroke: a 1
        page.mouse.up()
        page.wait_for_function("document.getElementById('prediction').textContent.includes('%')")
        assert page.locator("#prediction").inner_text().startswith("1 (")
        assert page.locator("#bars .bar").count() == 10 and page.locator("#hidden .unit").count() == 32

        page.fill("#expression", "x1.__class__")
        page.click("text=Record and sweep")
        page.wait_for_selector("#tape-error:not([hidden])")
        assert "unexpected character '.'" in page.locator("#tape-error").inner_text()

        page.fill("#expression", "sqrt(x1) - sqrt(x1)")  # an infinite partial, a NaN gradient
        page.fill("#values", "x1 = 0")
        page.click("text=Record and sweep")
        page.wait_for_function("document.getElementById('tape-result').textContent.includes('NaN')")
        assert page.locator("#tape-error").is_hidden()
        assert rows.nth(1).locator("td").all_inner_texts()[3] == "Infinity"
        assert "df/dx1 = NaN" in page.locator("#tape-result").inner_text()

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)
        browser.close()
    assert (ARTIFACTS / "web-page.png").stat().st_size > 10_000
