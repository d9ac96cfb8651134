"""``smoothbench leaderboard`` over real result files, through the CLI."""

from __future__ import annotations

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_leaderboard_over_real_results(trained_synthetic_mcdo, tmp_path):
    from html.parser import HTMLParser

    results_dir = tmp_path / "results"
    run_cli("eval", trained_synthetic_mcdo, "--ensembles", "1,3", "--subset", "60", "--out", results_dir / "eval.csv",
            "--quiet")
    run_cli("consistency", trained_synthetic_mcdo, "--ensembles", "1,3", "--subset", "60", "--out",
            results_dir / "consistency.csv", "--quiet")
    markdown = run_cli("leaderboard", results_dir, "--sort", "nll").stdout
    assert trained_synthetic_mcdo.name in markdown
    page = tmp_path / "board.html"
    run_cli("leaderboard", results_dir, "--format", "html", "--out", page)
    HTMLParser().feed(page.read_text())
    assert "<script" in page.read_text() and trained_synthetic_mcdo.name in page.read_text()
    proc = run_cli("leaderboard", results_dir, "--format", "xml", check=False)
    assert proc.returncode == 2
