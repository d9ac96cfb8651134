"""``run_leaderboard``: result files of many runs → one ranked board, rendered and optionally written."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from smoothbench.errors import UserError, param
from smoothbench.fileio import atomic_open, check_writable_file
from smoothbench.leaderboard.build import VIEWS, Leaderboard, build_leaderboard
from smoothbench.leaderboard.render import RENDERERS, render
from smoothbench.results.baselines import load_baseline
from smoothbench.results.store import read_results

PathLike = str | os.PathLike


@dataclass
class LeaderboardRequest:
    """What ``smoothbench leaderboard`` does: rank the rows of ``view`` (``paper``, ``selective``, ``ood``,
    ``shift``: :data:`smoothbench.leaderboard.build.VIEWS`) in the result files and folders in ``inputs`` by
    ``sort`` (default: the view's) at ``ensemble_size`` (default: each configuration's largest), render them
    as ``format`` (md, csv, html or json) and write them to ``out`` if given. ``allow_mixed`` ranks rows of
    different data or settings together; ``baseline`` adds the mCE columns (as in ``SweepRequest.baseline``)."""

    inputs: Sequence[PathLike]
    sort: str | None = None
    view: str = "paper"
    ensemble_size: int | None = None
    format: str = "md"
    out: PathLike | None = None
    allow_mixed: bool = False
    baseline: str | None = None

    def __post_init__(self) -> None:
        if self.format not in RENDERERS:
            raise UserError(f"{param('format')} must be one of {', '.join(RENDERERS)}, got {self.format!r}")
        if self.view not in VIEWS:
            raise UserError(f"{param('view')} must be one of {', '.join(VIEWS)}, got {self.view!r}")


@dataclass
class LeaderboardResult:
    board: Leaderboard
    text: str
    path: Path | None


def run_leaderboard(request: LeaderboardRequest) -> LeaderboardResult:
    """Build, render and (with ``out``, checked first) write the leaderboard."""
    if request.out is not None:
        check_writable_file(request.out)
    baseline = load_baseline(request.baseline) if request.baseline is not None else None
    board = build_leaderboard(read_results(request.inputs), sort=request.sort, ensemble_size=request.ensemble_size,
                              allow_mixed=request.allow_mixed, baseline=baseline, view=request.view)
    text = render(board, request.format)
    path = None
    if request.out is not None:
        path = Path(request.out)
        with atomic_open(path) as handle:
            handle.write(text)
    return LeaderboardResult(board, text, path)
