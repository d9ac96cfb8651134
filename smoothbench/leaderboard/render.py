"""Rendering a :class:`~smoothbench.leaderboard.build.Leaderboard`: markdown, CSV, JSON and one HTML page.

Metric values are fractions in the data; markdown and HTML show the metrics that :mod:`smoothbench.schema`
marks as percentages × 100 with 2 decimals, the others raw with 4 decimals. The HTML page comes from the
template ``templates/leaderboard.html`` shipped with the package.
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Callable

import pandas as pd

from smoothbench.errors import UserError, param
from smoothbench.fileio import atomic_open
from smoothbench.leaderboard.build import PROVENANCE, SHOWN, Leaderboard
from smoothbench.results.store import canonical, to_json_records
from smoothbench.schema import direction, is_percent

_ORDER_TEXT = {"lower": "lower is better", "abs-lower": "lower |value| is better", "higher": "higher is better",
               "none": "no better direction: ascending order"}


def _shown(board: Leaderboard) -> list[str]:
    """The metrics a rendered table shows: :data:`SHOWN` where present, and the sort metric."""
    present = board.metrics()
    return [m for m in SHOWN if m in present] + ([board.sort] if board.sort not in SHOWN else [])


def _cell(row: pd.Series, metric: str) -> str:
    """``mean ± std`` (percent with 2 decimals for percentage metrics, else 4 decimals)."""
    mean, std = row[metric], row[f"{metric}_std"]
    if pd.isna(mean):
        return "–"
    scale, digits = (100.0, 2) if is_percent(metric) else (1.0, 4)
    text = f"{scale * mean:.{digits}f}"
    return text + (f" ± {scale * std:.{digits}f}" if pd.notna(std) else "")


def _header(metric: str) -> str:
    return f"{metric} %" if is_percent(metric) else metric


def _legend(board: Leaderboard) -> str:
    return (f"Ranked by {board.sort} ({_ORDER_TEXT[direction(board.sort)]}) within each group of comparable rows. "
            "Columns marked % are percentages (fractions × 100, 2 decimals); the others are raw values (4 decimals). "
            "Values are mean ± sample std over seeds where n_seeds > 1.")


def _group_title(board: Leaderboard, number: int) -> str:
    fields = board.groups[number - 1]
    described = ", ".join(f"{k}={v}" for k, v in fields.items() if v != "")
    return f"Group {number}" + (f": {described}" if described else "")


def _md(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(board: Leaderboard) -> str:
    """The leaderboard as README-ready markdown (one table per group, then the notes)."""
    shown = _shown(board)
    lines = ["# smoothbench leaderboard", "", _legend(board), ""]
    heads = ["rank", "name", "ensemble size", "seeds"] + [_header(m) for m in shown]
    for number, part in board.table.groupby("group", sort=True):
        lines += [f"## {_md(_group_title(board, int(number)))}", "", "| " + " | ".join(heads) + " |",
                  "|" + "---|" * len(heads)]
        for _, row in part.iterrows():
            cells = [canonical(row["rank"]), _md(row["name"]), canonical(row["ensemble_size"]),
                     canonical(row["n_seeds"])]
            lines.append("| " + " | ".join(cells + [_cell(row, m) for m in shown]) + " |")
        lines.append("")
    if board.notes:
        lines += ["Notes:", ""] + [f"- {_md(note)}" for note in board.notes] + [""]
    return "\n".join(lines)


def to_csv(board: Leaderboard) -> str:
    """The whole table as CSV (fractions, full precision)."""
    return board.table.to_csv(index=False)


def to_json(board: Leaderboard) -> str:
    """JSON: ``{"format", "sort", "notes", "groups", "models": [...]}`` with one object per row.

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
    document = {"format": "smoothbench-leaderboard", "sort": board.sort, "notes": board.notes,
                "groups": board.groups, "models": models}
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def to_html(board: Leaderboard) -> str:
    """One self-contained HTML page (inline CSS and a small inline script: click a header to sort)."""
    shown = _shown(board)
    heads = ["rank", "name", "ensemble size", "seeds"] + [_header(m) for m in shown] + ["provenance"]
    body = ["<h1>smoothbench leaderboard</h1>", f"<p>{html.escape(_legend(board))}</p>"]
    for number, part in board.table.groupby("group", sort=True):
        body.append(f"<h2>{html.escape(_group_title(board, int(number)))}</h2>")
        body.append('<table class="sortable"><thead><tr>'
                    + "".join(f'<th title="click to sort">{html.escape(h)}</th>' for h in heads)
                    + "</tr></thead><tbody>")
        for _, row in part.iterrows():
            cells = [(row[c], canonical(row[c])) for c in ("rank", "name", "ensemble_size", "n_seeds")]
            cells += [(row[m], _cell(row, m)) for m in shown]
            provenance = "; ".join(f"{p}={canonical(row[p])}" for p in PROVENANCE if p in row and canonical(row[p]))
            cells.append((provenance, provenance))
            body.append("<tr>" + "".join(
                f'<td data-v="{html.escape(canonical(value))}">{html.escape(str(shown_text))}</td>'
                for value, shown_text in cells) + "</tr>")
        body.append("</tbody></table>")
    if board.notes:
        body.append("<ul class=\"notes\">" + "".join(f"<li>{html.escape(n)}</li>" for n in board.notes) + "</ul>")
    return _template("leaderboard.html").substitute(body="\n".join(body))


def _template(name: str) -> Template:
    """A page template shipped in ``smoothbench/leaderboard/templates`` (``$name`` placeholders)."""
    return Template(resources.files("smoothbench.leaderboard").joinpath("templates", name).read_text("utf-8"))


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
