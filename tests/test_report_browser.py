"""The report in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

Playwright's Python package drives the system Chromium through ``executable_path`` (``playwright install``
is never run: it downloads browsers). It was chosen over Selenium + ``chromium-driver`` because it sees
every request, console message and page error as an event (so "no request leaves the page" and "no
console errors" are checked directly, without a proxy), emulates print media and phone viewports, and
needs no driver binary whose version must match the browser's. ``make test`` installs the browser when
it is missing; where it cannot be installed or started these tests are skipped with the reason in the
summary and a warning, never passed.
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import threading
import time
import warnings

import numpy as np
import pytest

from report_inputs import write_results
from smoothbench.pipelines.report import ReportRequest, run_report
from smoothbench.schema import COMMON_CORRUPTIONS, EXTRA_CORRUPTIONS

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("SMOOTHBENCH_CHROMIUM", "/usr/bin/chromium")
#: Headless, no sandbox (root in CI), and none of Chromium's own calls home (they would be refused offline).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


class BrowserTestsSkipped(UserWarning):
    """The browser tests could not run here: say so in the warnings summary as well as in the skip reason."""


def _skip(reason: str) -> None:
    message = f"BROWSER TESTS SKIPPED: {reason}"
    warnings.warn(message, BrowserTestsSkipped, stacklevel=2)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, or a loud skip saying why there is none."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _skip("the playwright package is missing; pip install -e '.[test]'")
    if not os.access(CHROMIUM, os.X_OK):
        _skip(f"no Chromium at {CHROMIUM}; apt-get install chromium (make test does) or set SMOOTHBENCH_CHROMIUM")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as err:
            _skip(f"Chromium at {CHROMIUM} did not start: {str(err).splitlines()[0]}")
        yield launched
        launched.close()


class Visit:
    """One page in a fresh context, with every request, console error and page error it caused."""

    def __init__(self, browser, url: str, width: int = 1280, height: int = 900) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url, wait_until="load")

    def close(self) -> None:
        self.context.close()

    def column(self, table: str, name: str) -> list[str]:
        """The ``data-v`` of column ``name`` in the visible rows of ``table``, in page order."""
        return self.page.eval_on_selector(table, """(table, name) => {
            const index = [...table.tHead.rows[0].cells].findIndex(th => th.dataset.column === name);
            return [...table.tBodies[0].rows].filter(r => !r.hidden).map(r => r.cells[index].dataset.v);
        }""", name)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    written = write_results(folder / "results", archs=("resnet18", "vgg16"))
    result = run_report(ReportRequest([written.folder], out=folder / "report.html"))
    return result


@pytest.fixture(scope="module")
def served(report):
    """The report's folder behind a plain static file server (http.server), as ``python -m http.server`` does."""
    handler = functools.partial(QuietHandler, directory=str(report.path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{report.path.name}"
    server.shutdown()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("where", ["disk", "server"])
def test_report_opens_without_errors_or_requests_and_draws_every_figure(browser, report, served, where):
    url = report.path.as_uri() if where == "disk" else served
    visit = Visit(browser, url)
    try:
        assert visit.errors == [] and visit.requests == [url]  # nothing but the page itself, no console errors
        sections = visit.page.eval_on_selector_all("main > section", "s => s.map(e => e.id)")
        assert sections == ["about", "overview", "leaderboard", "ensemble-size", "corruptions", "reliability",
                            "consistency", "all-metrics"]
        figures = visit.page.eval_on_selector_all("figure.plot-figure", """figures => figures.map(f => {
            const svg = f.querySelector("svg"), box = svg.getBoundingClientRect();
            const series = new Set([...svg.querySelectorAll(".series")].map(e => e.dataset.series));
            const drawn = [...svg.querySelectorAll(".series")].filter(e => e.getBBox().width + e.getBBox().height > 0);
            return {id: f.id, width: box.width, height: box.height, series: series.size, drawn: drawn.length,
                    attribute: Number(f.dataset.seriesCount)};
        })""")
        assert [f["id"] for f in figures] == [f.id for f in report.figures]
        for figure, expected in zip(figures, report.figures):
            assert figure["width"] > 100 and figure["height"] > 100, figure
            assert figure["series"] == figure["attribute"] == expected.series, figure
            assert figure["drawn"] >= expected.series, figure  # each series has visible marks
        kinds = [f.kind for f in report.figures]
        assert kinds.count("size") == 1 and kinds.count("reliability") == 8  # 2 archs x 4 models
        size_figure = next(f for f in report.figures if f.kind == "size")
        assert size_figure.series == 8
        assert visit.errors == [] and visit.requests == [url]
    finally:
        visit.close()


def test_headers_sort_by_click_and_keyboard(browser, report):
    visit = Visit(browser, report.path.as_uri())
    table = "#leaderboard table.board"
    try:
        visit.page.click(f"{table} th[data-column=acc] button")
        accs = [float(v) for v in visit.column(table, "acc")]
        assert accs == sorted(accs) and len(set(accs)) > 3
        assert visit.page.get_attribute(f"{table} th[data-column=acc]", "aria-sort") == "ascending"
        visit.page.click(f"{table} th[data-column=acc] button")
        assert [float(v) for v in visit.column(table, "acc")] == sorted(accs, reverse=True)
        visit.page.focus(f"{table} th[data-column=nll] button")
        visit.page.keyboard.press("Enter")
        nlls = [float(v) for v in visit.column(table, "nll")]
        assert nlls == sorted(nlls) and len(set(nlls)) > 3
        visit.page.focus(f"{table} th[data-column=ensemble_size] button")
        visit.page.keyboard.press("Space")
        sizes = [int(v) for v in visit.column(table, "ensemble_size")]
        assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 20
        cAcc = visit.column(table, "cAcc")  # missing values (sizes the sweep skipped) stay last
        visit.page.click(f"{table} th[data-column=cAcc] button")
        after = visit.column(table, "cAcc")
        assert after[-cAcc.count(""):] == [""] * cAcc.count("") and "" in cAcc
        assert visit.errors == []
    finally:
        visit.close()


def test_filters_hide_rows(browser, report):
    visit = Visit(browser, report.path.as_uri())
    table = "#leaderboard table.board"
    try:
        names = visit.column(table, "name")
        visit.page.fill("[data-filter=text]", "TANH")
        shown = visit.column(table, "name")
        assert shown == [n for n in names if "tanh" in n] and 0 < len(shown) < len(names)
        assert visit.page.inner_text(".filter-count") == f"{len(shown)} of {len(names)} rows shown"
        visit.page.select_option("[data-filter=size]", "5")
        assert set(visit.column(table, "ensemble_size")) == {"5"} and len(visit.column(table, "name")) == 2
        hidden = visit.page.eval_on_selector_all("#all-metrics table.board tbody tr", "rows => rows.filter(r => r.hidden).length")
        assert hidden == len(names) - 2  # the all-metrics tables follow the same filters
        visit.page.fill("[data-filter=text]", "")
        visit.page.select_option("[data-filter=size]", "")
        visit.page.select_option("[data-filter=dataset]", "cifar10")
        assert visit.column(table, "name") == names
        assert visit.errors == []
    finally:
        visit.close()


def test_screenshot_is_not_blank_and_the_page_fits_a_phone_and_prints(browser, report, tmp_path):
    from PIL import Image

    visit = Visit(browser, report.path.as_uri())
    try:
        shot = visit.page.screenshot(full_page=True)
        image = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
        assert image.shape[0] > 3000 and image.shape[1] == 1280
        inked = (image.min(axis=2) < 200).mean()
        assert 0.03 < inked < 0.6  # text, tables and plots; neither blank nor a solid block
        assert len(np.unique(image.reshape(-1, 3)[::7], axis=0)) > 50  # the palette shows
        pdf = visit.page.pdf(format="A4")
        assert pdf.startswith(b"%PDF") and len(pdf) > 50_000
        visit.page.emulate_media(media="print")
        assert visit.page.eval_on_selector(".filters", "e => getComputedStyle(e).display") == "none"
        assert visit.page.eval_on_selector("thead th", "e => getComputedStyle(e).position") == "static"
    finally:
        visit.close()
    phone = Visit(browser, report.path.as_uri(), width=390, height=844)
    try:
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390  # tables scroll in their box
        widths = phone.page.eval_on_selector_all("svg.plot", "s => s.map(e => e.getBoundingClientRect().width)")
        assert widths and max(widths) <= 390
        sticky = phone.page.eval_on_selector("#leaderboard thead th", "e => getComputedStyle(e).position")
        assert sticky == "sticky" and phone.errors == []
    finally:
        phone.close()


def test_a_report_of_2000_rows_and_30_figures_renders_quickly(browser, tmp_path, record_property, capsys):
    written = write_results(tmp_path / "results", archs=("resnet18", "resnet34", "vgg16"),
                            datasets=("cifar10", "cifar100"), sizes=(1, 2, 5, 10, 20),
                            corruptions=COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS, severities=(1, 2, 3, 4, 5),
                            corrupt_sizes=(1, 5, 20))
    start = time.perf_counter()
    result = run_report(ReportRequest([written.folder], out=tmp_path / "report.html"))
    python_seconds = time.perf_counter() - start
    assert result.rows >= 2000 and len(result.figures) >= 30
    assert result.bytes < 5_000_000
    visit = Visit(browser, result.path.as_uri())
    try:
        timing = visit.page.evaluate("""() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const paint = performance.getEntriesByName("first-contentful-paint")[0];
            return {load: nav.loadEventEnd - nav.startTime, parsed: nav.domContentLoadedEventEnd - nav.startTime,
                    paint: paint ? paint.startTime : null};
        }""")
        drawn = visit.page.eval_on_selector_all("svg.plot", "s => s.filter(e => e.getBoundingClientRect().height > 0).length")
        assert drawn == len(result.figures) and visit.errors == []
    finally:
        visit.close()
    line = (f"report of {result.rows} rows, {len(result.figures)} figures, {result.bytes / 1e6:.2f} MB: written in "
            f"{python_seconds:.1f} s; in Chromium DOM parsed {timing['parsed']:.0f} ms, load event {timing['load']:.0f} ms, "
            f"first contentful paint {timing['paint']} ms (target: under 2000 ms)")
    record_property("render_timing", line)
    with capsys.disabled():
        print("\n" + line)
