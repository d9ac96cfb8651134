"""``run_report``: result files and folders → one self-contained HTML page (tables, plots, provenance)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from smoothbench.errors import UserError, param
from smoothbench.fileio import atomic_open, check_writable_file
from smoothbench.leaderboard.build import build_leaderboard
from smoothbench.report.data import default_sort, report_data
from smoothbench.report.inputs import read_inputs
from smoothbench.report.page import FigureInfo, report_page

PathLike = str | os.PathLike


@dataclass
class ReportRequest:
    """What ``smoothbench report`` does: read the result files and folders in ``inputs`` (eval, corrupt and
    its summaries, consistency, reliability bins from ``eval --plot``, run folders), rank them by ``sort``
    at every ensemble size (``None``: NLL, or what the rows have when they hold no clean evaluation), and
    write one HTML page to ``out``. ``title`` heads the page; ``note`` is a caveat shown first (the demo
    says there what its numbers can and cannot show)."""

    inputs: Sequence[PathLike]
    out: PathLike = "report.html"
    sort: str | None = None
    title: str = "smoothbench report"
    note: str | None = None

    def __post_init__(self) -> None:
        if Path(self.out).suffix.lower() not in (".html", ".htm"):
            raise UserError(f"{param('out')} must name an .html file, got {self.out}")


@dataclass
class ReportResult:
    """The page written: where, how large, and what it holds."""

    path: Path
    bytes: int
    rows: int
    groups: int
    figures: list[FigureInfo] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_report(request: ReportRequest) -> ReportResult:
    """Read, rank, draw and write the report (``out`` is checked before anything is read)."""
    check_writable_file(request.out)
    inputs = read_inputs(request.inputs)
    sort = request.sort or default_sort(inputs.rows)
    board = build_leaderboard(inputs.rows, sort=sort, ensemble_size="all")
    page = report_page(report_data(inputs, board), title=request.title, note=request.note)
    path = Path(request.out)
    data = page.html.encode("utf-8")
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return ReportResult(path, len(data), len(inputs.rows), len(board.groups), page.figures,
                        inputs.notes + board.notes)
