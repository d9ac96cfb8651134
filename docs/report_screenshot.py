"""Regenerate ``docs/report-demo.png``, the README's picture of the demo's report, in headless Chromium.

    smoothbench demo --out /tmp/demo_runs
    python docs/report_screenshot.py /tmp/demo_runs/report.html docs/report-demo.png

Two parts of the page, one above the other: its head (what the numbers can show) and the leaderboard with
the first figure. Colours are reduced to a 256-colour palette so the PNG stays small. Chromium is driven as
in ``tests/test_report_browser.py`` (Debian's ``/usr/bin/chromium``, or ``SMOOTHBENCH_CHROMIUM``).
"""

from __future__ import annotations

import io
import os
import sys

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
WIDTH = 1100


def _clip(page, top: str, bottom: str) -> Image.Image:
    """The full-width band of the page from element ``top``'s top to element ``bottom``'s bottom."""
    start = page.eval_on_selector(top, "e => e.getBoundingClientRect().top + window.scrollY")
    end = page.eval_on_selector(bottom, "e => e.getBoundingClientRect().bottom + window.scrollY")
    shot = page.screenshot(full_page=True, clip={"x": 0, "y": start - 8, "width": WIDTH, "height": end - start + 16})
    return Image.open(io.BytesIO(shot)).convert("RGB")


def main(report: str, out: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("SMOOTHBENCH_CHROMIUM", "/usr/bin/chromium"),
                                             args=ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": 900})
        page.goto(f"file://{os.path.abspath(report)}")
        parts = [_clip(page, "header.page-head", "#about"), _clip(page, "#leaderboard > h2", "#fig1")]
        browser.close()
    gap = 12
    sheet = Image.new("RGB", (WIDTH, sum(p.height for p in parts) + gap), "#9a9a9a")
    sheet.paste(parts[0], (0, 0))
    sheet.paste(parts[1], (0, parts[0].height + gap))
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
