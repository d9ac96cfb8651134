"""Rendering a :class:`~smoothbench.leaderboard.build.Leaderboard`: markdown, CSV, JSON and one HTML page.

Metric values are fractions in the data; markdown and HTML show the metrics that :mod:`smoothbench.schema`
marks as percentages × 100 with 2 decimals, the others raw with 4 decimals. The HTML page is the leaderboard
part of the report page (:mod:`smoothbench.report.page`, one template for both).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from smoothbench.errors import UserError, param
from smoothbench.fileio import atomic_open
from smoothbench.leaderboard.build import PROVENANCE, VIEWS, Leaderboard
from smoothbench.results.store import canonical, to_json_records
from smoothbench.schema import direction, is_percent

#: What each :func:`smoothbench.schema.direction` means for a reader.
ORDER_TEXT = {"lower": "lower is better", "abs-lower": "lower |value| is better", "higher": "higher is better",
              "none": "no better direction: ascending order"}


def shown_metrics(board: Leaderboard) -> list[str]:
    """The metrics a rendered table shows: its view's (:data:`~smoothbench.leaderboard.build.VIEWS`) where
    present, and the sort metric."""
    present, shown = board.metrics(), VIEWS[board.view].shown
    return [m for m in shown if m in present] + ([board.sort] if board.sort not in shown else [])


def cell_text(row: pd.Series, metric: str) -> str:
    """``mean ± std`` (percent with 2 decimals for percentage metrics, else 4 decimals)."""
    mean, std = row[metric], row[f"{metric}_std"]
    if pd.isna(mean):
        return "–"
    scale, digits = (100.0, 2) if is_percent(metric) else (1.0, 4)
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if pd.notna(std) else "")


def column_header(metric: str) -> str:
    """A metric's column heading: ``acc %`` for percentage metrics."""
    return f"{metric} %" if is_percent(metric) else metric


def legend(board: Leaderboard) -> str:
    """How to read the table: the ranking, its direction, percent columns and ± std."""
    return (f"Ranked by {board.sort} ({ORDER_TEXT[direction(board.sort)]}) within each group of comparable rows. "
            "Columns marked % are percentages (fractions × 100, 2 decimals); the others are raw values (4 decimals). "
            "Values are mean ± sample std over seeds where n_seeds > 1.")


def group_title(board: Leaderboard, number: int) -> str:
    """``Group N: dataset=..., ...``: the comparability fields that define group ``number``."""
    fields = board.groups[number - 1]
    described = ", ".join(f"{k}={v}" for k, v in fields.items() if v != "")
    return f"Group {number}" + (f": {described}" if described else "")


def _md(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(board: Leaderboard) -> str:
    """The leaderboard as README-ready markdown (one table per group, then the notes)."""
    shown = shown_metrics(board)
    lines = ["# smoothbench leaderboard", "", legend(board), ""]
    heads = ["rank", "name", "ensemble size", "seeds"] + [column_header(m) for m in shown]
    for number, part in board.table.groupby("group", sort=True):
        lines += [f"## {_md(group_title(board, int(number)))}", "", "| " + " | ".join(heads) + " |",
                  "|" + "---|" * len(heads)]
        for _, row in part.iterrows():
            cells = [canonical(row["rank"]), _md(row["name"]), canonical(row["ensemble_size"]),
                     canonical(row["n_seeds"])]
            lines.append("| " + " | ".join(cells + [cell_text(row, m) for m in shown]) + " |")
        lines.append("")
    if board.notes:
        lines += ["Notes:", ""] + [f"- {_md(note)}" for note in board.notes] + [""]
    return "\n".join(lines)


def to_csv(board: Leaderboard) -> str:
    """The whole table as CSV (fractions, full precision)."""
    return board.table.to_csv(index=False)


def to_json(board: Leaderboard) -> str:
    """JSON: ``{"format", "view", "sort", "notes", "groups", "models": [...]}`` with one object per row.

    Each model object has RobustBench-like fields ``name, dataset, architecture, clean_acc,
    corruptions_acc, corruptions_mce`` (fractions, not RobustBench's percent strings; ``null`` when
    unknown) and ours: ``method, smoothing, ensemble_size, nll, ece, brier, seeds`` (number of seeds
    averaged), ``group``, ``rank``, ``metrics`` (every mean and std) and ``provenance``.
    """
    models = []
    for row in to_json_records(board.table):
        metrics = {c: row.get(c) for m in board.metrics() for c in (m, f"{m}_std")}
        models.append({
            "name": row["name"], "dataset": row.get("dataset"), "architecture": row.get("arch"),
            "clean_acc": row.get("acc"), "corruptions_acc": row.get("cAcc"), "corruptions_mce": row.get("mCE"),
            "method": row.get("method"), "smoothing": row.get("smoothing"),
            "ensemble_size": row.get("ensemble_size"),
            "nll": row.get("nll"), "ece": row.get("ece"), "brier": row.get("brier"), "seeds": row.get("n_seeds"),
            "group": row["group"], "rank": row["rank"], "metrics": metrics,
            "provenance": {p: row.get(p) for p in PROVENANCE if p in row},
        })
    document = {"format": "smoothbench-leaderboard", "view": board.view, "sort": board.sort, "notes": board.notes,
                "groups": board.groups, "models": models}
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def to_html(board: Leaderboard) -> str:
    """One self-contained HTML page: the report's leaderboard section alone, through the report's template
    (sortable by click and keyboard, filterable, best values marked, provenance per row)."""
    from smoothbench.report.page import leaderboard_page  # the report renders boards itself: import on use

    return leaderboard_page(board)


#: Format name → renderer; the file suffix ``.<name>`` picks the same renderer.
RENDERERS: dict[str, Callable[[Leaderboard], str]] = {"md": to_markdown, "csv": to_csv, "json": to_json,
                                                      "html": to_html}


def render(board: Leaderboard, fmt: str) -> str:
    """The board in format ``fmt`` (md, csv, json or html)."""
    if fmt not in RENDERERS:
        raise UserError(f"{param('format')} must be one of {', '.join(RENDERERS)}, got {fmt!r}")
    return RENDERERS[fmt](board)


def write(board: Leaderboard, path: str | os.PathLike, fmt: str | None = None) -> None:
    """Write the rendering chosen by ``fmt`` or, without it, by the suffix (.md, .csv, .json, .html), atomically."""
    fmt = fmt or Path(path).suffix.lower().lstrip(".")
    if fmt not in RENDERERS:
        raise UserError(f"cannot render a leaderboard as {path}: use a .md, .csv, .json or .html file name")
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(RENDERERS[fmt](board))
