"""report.html in headless Chromium: the table and charts render, untrusted model output shows
as text and never runs, and the page makes no request beyond itself.

Needs Playwright for Python (`pip install -e .[test]`) and Debian's Chromium
(`scripts/install_browser.sh`); `playwright install` is not used.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from comptrust.report import CompareOptions, generate_report

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import DENSE_NAME, PAYLOAD, build_scenario, fast_aggregator  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e .[test])")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} absent (run scripts/install_browser.sh)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = build_scenario(root)
    return generate_report(list(runs.values()), root / "out", options=CompareOptions(n_boot=100),
                           aggregator=fast_aggregator).html


def _open(browser, path: Path):
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, requests


def test_report_renders_and_untrusted_text_stays_inert(browser, report_html):
    page, requests = _open(browser, report_html)
    try:
        rows = page.locator("#summary-table tbody tr")
        assert rows.count() == 6
        assert page.locator("#summary-table thead th").count() == 1 + 9 + 4
        assert rows.first.locator("td").first.inner_text() == DENSE_NAME  # markup in a name shows as text
        down = page.locator('#summary-table tr[data-run-id="sgpt"] td.down')
        assert down.count() == 2  # fairness and the overall mean
        fair = down.filter(has_text="−20.0")
        assert fair.inner_text().startswith("42.5")
        bg = fair.evaluate("e => getComputedStyle(e).backgroundColor")
        assert bg.startswith("rgba(218, 54, 51")
        assert page.locator("svg").count() >= 9
        assert page.locator("#chart-heatmap svg text").count() > 0

        page.locator("#regressions ~ details summary", has_text="Fairness").click()
        body = page.inner_text("body")
        assert PAYLOAD in body  # the literal markup is visible as text
        assert page.locator("pre.answer-variant", has_text="window.__pwned=1").count() >= 1
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("img").count() == 0 and page.locator("script").count() == 0
        assert requests == [report_html.resolve().as_uri()], requests  # no request for `x`, nothing remote
    finally:
        page.close()


def test_harness_detects_executing_markup(browser, tmp_path):
    """Control: the same payload unescaped and without the CSP does run, so the checks above can fail."""
    p = tmp_path / "control.html"
    p.write_text(f"<!DOCTYPE html><html><body><pre>{PAYLOAD}</pre></body></html>")
    page, requests = _open(browser, p)
    try:
        page.wait_for_function("window.__pwned !== undefined", timeout=5000)
        assert page.evaluate("window.__pwned") in (1, 2)
        assert any(u.endswith("/x") for u in requests)
    finally:
        page.close()
