"""The leaderboard part of the page: one sortable, filterable table per comparability group.

``smoothbench leaderboard --format html`` is this part alone on the report's page
(:func:`smoothbench.report.page.leaderboard_page`), so the two never drift apart. Cells keep the exact
value in ``data-v`` (what the sort compares and what a test reads back) and show the leaderboard's own
formatting (:func:`smoothbench.leaderboard.render.cell_text`: percent metrics × 100 with 2 decimals, the
others 4 decimals). The best value of each metric within a group is marked, by the direction the schema
gives it; every row carries its provenance in an expandable cell.
"""

from __future__ import annotations

import html
from typing import Mapping, Sequence

import pandas as pd

from smoothbench.leaderboard.build import PROVENANCE, Leaderboard
from smoothbench.leaderboard.render import ORDER_TEXT, cell_text, column_header, group_title, legend, shown_metrics
from smoothbench.results.store import canonical
from smoothbench.schema import METRICS, direction

#: The descriptive columns of each row: (column, heading, numeric).
_FRONT = (("rank", "rank", True), ("name", "name", False), ("dataset", "dataset", False),
          ("ensemble_size", "ensemble size", True), ("method", "method", False), ("smoothing", "smoothing", False),
          ("n_seeds", "seeds", True))


def esc(value: object) -> str:
    """Text (or a value's canonical text) escaped for HTML content and attribute values."""
    return html.escape(value if isinstance(value, str) else canonical(value), quote=True)


def best_mask(values: pd.Series, metric: str) -> pd.Series:
    """Which values are the best of their column by the metric's direction (none for ``none``)."""
    better = direction(metric)
    numbers = pd.to_numeric(values, errors="coerce")
    if better == "none" or numbers.isna().all():
        return pd.Series(False, index=values.index)
    if better == "abs-lower":
        numbers = numbers.abs()
    best = numbers.max() if better == "higher" else numbers.min()
    return numbers == best


def _heading(column: str, text: str, numeric: bool, title: str = "") -> str:
    """A sortable heading: a button (so click, Enter and Space all sort) inside a ``th`` with ``aria-sort``."""
    hint = f' title="{esc(title)}"' if title else ""
    return (f'<th scope="col" aria-sort="none" data-column="{esc(column)}" data-type="{"num" if numeric else "text"}"'
            f'{hint}><button type="button">{esc(text)}</button></th>')


def _provenance(row: pd.Series, files: Sequence[str]) -> str:
    """The provenance cell: an expandable list of the row's provenance columns and the files it came from."""
    items = [(p, canonical(row[p])) for p in PROVENANCE if p in row.index and canonical(row[p])]
    if files:
        items.append(("result files", ", ".join(files)))
    listed = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
    summary = "; ".join(f"{k}={v}" for k, v in items)
    return f'<td class="prov" data-v="{esc(summary)}"><details><summary>details</summary><dl>{listed}</dl></details></td>'


def _value_title(row: pd.Series, metric: str, group: int) -> str:
    """A metric cell's tooltip: the value, over how many seeds (which), and which way is better."""
    seeds = canonical(row.get("seed")) or "unknown"
    return (f"{metric} = {cell_text(row, metric)} (mean of {canonical(row.get('n_seeds'))} run(s), seeds {seeds}); "
            f"{ORDER_TEXT[direction(metric)]}; group {group}")


def _files_of(row: pd.Series, files: Mapping[str, Sequence[str]]) -> list[str]:
    """The result files that hold rows of this leaderboard row's checkpoints."""
    found = {f for sha in canonical(row.get("checkpoint_sha256")).split(",") for f in files.get(sha, ())}
    return sorted(found)


def group_table(board: Leaderboard, number: int, metrics: Sequence[str],
                files: Mapping[str, Sequence[str]] | None = None) -> str:
    """The table of comparability group ``number``: sortable headings, filter attributes on each row, the
    best value of each metric marked, a provenance cell per row."""
    part = board.table[board.table["group"] == number]
    front = [(c, h, n) for c, h, n in _FRONT if c in part.columns]
    heads = [_heading(c, h, n) for c, h, n in front]
    heads += [_heading(m, column_header(m), True, f"{METRICS[m].meaning}; {ORDER_TEXT[direction(m)]}")
              for m in metrics]
    heads.append(_heading("provenance", "provenance", False))
    best = {m: best_mask(part[m], m) for m in metrics}
    body = []
    for index, row in part.iterrows():
        searchable = " ".join(canonical(row.get(c)) for c in ("name", "arch", "method", "smoothing")).lower()
        cells = [f'<td class="{"num" if numeric else "text"}" data-v="{esc(row[c])}">{esc(row[c])}</td>'
                 for c, _, numeric in front]
        for metric in metrics:
            marked = " best" if best[metric][index] else ""
            cells.append(f'<td class="num{marked}" data-v="{esc(row[metric])}" '
                         f'title="{esc(_value_title(row, metric, number))}">{esc(cell_text(row, metric))}</td>')
        cells.append(_provenance(row, _files_of(row, files or {})))
        body.append(f'<tr data-dataset="{esc(row.get("dataset"))}" data-size="{esc(row.get("ensemble_size"))}" '
                    f'data-text="{esc(searchable)}">' + "".join(cells) + "</tr>")
    caption = esc(group_title(board, number))
    return (f'<div class="table-wrap"><table class="board sortable" data-group="{number}"><caption>{caption}</caption>'
            f'<thead><tr>{"".join(heads)}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def _options(values: pd.Series, numeric: bool) -> str:
    found = {canonical(v) for v in values if canonical(v)}
    ordered = sorted(found, key=(lambda v: float(v)) if numeric else str)
    return '<option value="">all</option>' + "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in ordered)


def filters(board: Leaderboard) -> str:
    """The filter bar over every group's table: dataset, ensemble size, and text in the model's name."""
    table = board.table
    return ('<div class="filters" role="search">'
            f'<label>dataset <select data-filter="dataset">{_options(table.get("dataset", pd.Series(dtype=object)), False)}'
            '</select></label>'
            f'<label>ensemble size <select data-filter="size">{_options(table["ensemble_size"], True)}</select></label>'
            '<label>model <input type="search" data-filter="text" placeholder="name contains…"></label>'
            '<output class="filter-count" aria-live="polite"></output></div>')


def how_to_read(board: Leaderboard, metrics: Sequence[str]) -> str:
    """The legend of the table and what each shown metric means, from the schema."""
    items = "".join(f"<li><strong>{esc(column_header(m))}</strong>: {esc(METRICS[m].meaning)} ({esc(ORDER_TEXT[direction(m)])})"
                    "</li>" for m in metrics)
    return (f"<p>{esc(legend(board))} The best value of each column within a group is marked ★. Click a "
            "column heading (or focus it and press Enter) to sort; the filters hide rows of every group; "
            f"<em>details</em> shows where a row's numbers come from.</p><ul>{items}</ul>")


def leaderboard_body(board: Leaderboard, files: Mapping[str, Sequence[str]] | None = None,
                     metrics: Sequence[str] | None = None) -> str:
    """Filters, one table per group (``metrics``: default the leaderboard's shown metrics) and the notes."""
    metrics = list(metrics) if metrics is not None else shown_metrics(board)
    parts = [filters(board)]
    parts += [group_table(board, int(n), metrics, files) for n in sorted(board.table["group"].unique())]
    if board.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in board.notes) + "</ul>")
    return "\n".join(parts)
