"""One HTML page from the sections: ``templates/page.html`` with ``page.css`` and ``page.js`` inlined.

The same template serves the whole report (:func:`report_page`) and the leaderboard alone
(:func:`leaderboard_page`, behind ``smoothbench leaderboard --format html``). Every text that comes from
the inputs (model names, paths, notes) is escaped here or in :mod:`.board` / :mod:`.svg`; the page loads
nothing (a Content-Security-Policy of ``default-src 'none'`` says so to the browser too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from string import Template
from typing import Mapping, Sequence

import pandas as pd

from smoothbench import __version__
from smoothbench.leaderboard.build import Leaderboard
from smoothbench.leaderboard.render import ORDER_TEXT, cell_text, column_header, shown_metrics
from smoothbench.report import svg
from smoothbench.results.store import canonical
from smoothbench.report.board import esc, group_table, how_to_read, leaderboard_body
from smoothbench.report.data import SIZE_METRICS, ReportData
from smoothbench.schema import CORRUPTION_METRICS, METRICS, direction


@dataclass(frozen=True)
class Section:
    """One section of the page: its anchor, heading, "how to read this" text and content (both HTML)."""

    id: str
    title: str
    how: str
    body: str


@dataclass(frozen=True)
class FigureInfo:
    """A figure on the page: its element id, kind (``size``, ``severity``, ``heat-map``, ``reliability``,
    ``agreement``), title and number of series."""

    id: str
    kind: str
    title: str
    series: int


@dataclass
class Page:
    """A rendered page and the figures on it."""

    html: str
    figures: list[FigureInfo] = field(default_factory=list)


def _asset(name: str) -> str:
    return resources.files("smoothbench.report").joinpath("templates", name).read_text("utf-8")


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole page: template, inline style and script, a table of contents when there are several
    sections."""
    nav = ""
    if len(sections) > 1:
        nav = ('<nav class="toc" aria-label="sections"><ul>'
               + "".join(f'<li><a href="#{s.id}">{esc(s.title)}</a></li>' for s in sections) + "</ul></nav>")
    body = "\n".join(f'<section id="{s.id}"><h2>{esc(s.title)}</h2>'
                     + (f'<aside class="how"><h3>How to read this</h3>{s.how}</aside>' if s.how else "")
                     + f"{s.body}</section>" for s in sections)
    return Template(_asset("page.html")).substitute(title=esc(title), subtitle=esc(subtitle), nav=nav, body=body,
                                                    style=_asset("page.css"), script=_asset("page.js"),
                                                    version=esc(__version__))


def leaderboard_section(board: Leaderboard, files: Mapping[str, Sequence[str]] | None = None) -> Section:
    """The leaderboard: filters, one table per comparability group, notes."""
    metrics = shown_metrics(board)
    return Section("leaderboard", "Leaderboard", how_to_read(board, metrics), leaderboard_body(board, files, metrics))


def _board_subtitle(board: Leaderboard) -> str:
    return f"{len(board.table)} leaderboard rows in {len(board.groups)} comparability group(s), ranked by {board.sort}"


def leaderboard_page(board: Leaderboard) -> str:
    """``smoothbench leaderboard --format html``: the report's leaderboard section alone on the report's page."""
    return render_page("smoothbench leaderboard", _board_subtitle(board), [leaderboard_section(board)])


# ----------------------------------------------------------------------------------------------------------
# the report's sections
def number_text(value: object, column: str) -> str:
    """A lone value as the leaderboard shows a mean: percent metrics × 100 (2 decimals), others 4 decimals."""
    return cell_text(pd.Series({column: value, f"{column}_std": math.nan}), column)


def simple_table(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    """A sortable table of ``columns`` (those present): metrics formatted as on the leaderboard, other
    numbers right-aligned, exact values in ``data-v``."""
    columns = [c for c in columns if c in frame.columns]
    numeric = {c: c in METRICS or pd.api.types.is_numeric_dtype(frame[c]) for c in columns}
    heads = []
    for column in columns:
        hint = f' title="{esc(METRICS[column].meaning)}"' if column in METRICS else ""
        heading = column_header(column) if column in METRICS else column
        heads.append(f'<th scope="col" aria-sort="none" data-type="{"num" if numeric[column] else "text"}"{hint}>'
                     f'<button type="button">{esc(heading)}</button></th>')
    rows = []
    for record in frame[columns].to_dict("records"):
        cells = []
        for column in columns:
            value = record[column]
            shown = number_text(value, column) if column in METRICS else canonical(value)
            kind = "num" if numeric[column] else ("text hash" if column == "checkpoint_sha256" else "text")
            cells.append(f'<td class="{kind}" data-v="{esc(value)}">{esc(shown)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table class="sortable"><thead><tr>{"".join(heads)}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _meanings(metrics: Sequence[str]) -> str:
    """What each metric means and which way is better, from the schema."""
    return "<ul>" + "".join(f"<li><strong>{esc(column_header(m))}</strong>: {esc(METRICS[m].meaning)} "
                            f"({esc(ORDER_TEXT[direction(m)])})</li>" for m in metrics if m in METRICS) + "</ul>"


def _empty(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'


class _Figures:
    """Numbers the page's figures and turns drawings into ``<figure>`` elements."""

    def __init__(self) -> None:
        self.placed: list[FigureInfo] = []

    def __call__(self, drawing: svg.Drawing, kind: str, caption: str = "") -> str:
        number = len(self.placed) + 1
        figure_id = f"fig{number}"
        self.placed.append(FigureInfo(figure_id, kind, drawing.title, len(drawing.series)))
        return (f'<figure class="plot-figure" id="{figure_id}" data-kind="{kind}" '
                f'data-series-count="{len(drawing.series)}">{svg.inline(drawing, figure_id)}'
                f"<figcaption><strong>Figure {number}.</strong> {esc(drawing.title)}{' ' + esc(caption) if caption else ''}"
                "</figcaption></figure>")


def _about(data: ReportData, note: str | None) -> Section | None:
    """What the numbers can and cannot show: the caller's caveat, the sampling error, skipped inputs."""
    parts = [f'<div class="caveat"><p>{esc(note)}</p></div>'] if note else []
    if data.sampling:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in data.sampling) + "</ul>")
    if data.inputs.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in data.inputs.notes) + "</ul>")
    if not parts:
        return None
    how = ("<p>Every number here is an estimate from a finite test set and a few training runs. Read a difference "
           "as an effect only when it is larger than its sampling error and holds across seeds.</p>")
    return Section("about", "What these numbers can show", how, "\n".join(parts))


def _overview(data: ReportData) -> Section:
    files = data.inputs.files()
    body = [
        "<h3>Models</h3>",
        simple_table(data.models, list(data.models.columns)),
        "<h3>Datasets</h3>",
        simple_table(data.datasets, ["dataset", "split", "source", "data_fingerprint", "n_images", "subset", "rows"]),
        "<h3>Versions</h3>",
        simple_table(data.versions, ["what", "smoothbench", "torch", "python", "device"]),
        f"<details><summary>{len(files)} file(s) read</summary><ul class=\"files\">"
        + "".join(f"<li>{esc(f)}</li>" for f in files) + "</ul></details>",
    ]
    how = ("<p><strong>Models</strong>: one row per model name and checkpoint. <em>preprocess</em> (where recorded) and "
           "<em>normalization</em> are the preprocessing (the input recipe; the per-channel mean, then std, the images "
           "are normalised with); <em>checkpoint_sha256</em> identifies the "
           "weights. <strong>Datasets</strong>: the <em>fingerprint</em> is a hash of the evaluated images and labels, so rows "
           "with different fingerprints were measured on different data (a corrupted set has one per cell). "
           "<strong>Versions</strong>: result rows record smoothbench's version; the torch version a model was trained with "
           "comes from its run folder's config.json when the folder is among the inputs.</p>")
    return Section("overview", "Overview", how, "\n".join(body))


def _sizes(data: ReportData, place: _Figures) -> Section:
    body = [place(svg.curve_figure(curves), "size") for curves in data.sizes]
    if not body:
        body = [_empty("No comparability group has rows at more than one ensemble size; evaluate an MC-dropout model "
                       "or a deep ensemble at several sizes (smoothbench eval RUN --ensembles 1,5,20).")]
    how = ("<p>Each panel is one metric against the ensemble size (MC-dropout samples, or deep-ensemble members; log "
           "scale), as in the paper's Fig. 2/3. <strong>Solid</strong> lines are models with spatial smoothing, <strong>dashed</strong> "
           "the same configuration without; each configuration pair has one colour and marker. Shaded bands are "
           "± one standard deviation over seeds where several were run; a deterministic model is one point at size "
           "1. The paper's claim is that smoothing moves every curve to its better side, so that a small smoothed "
           "ensemble does as well as a large plain one; check it against the sampling error above.</p>"
           + _meanings([m for m in SIZE_METRICS if m in data.board.table.columns]))
    return Section("ensemble-size", "Metrics against ensemble size", how, "\n".join(body))


def _corruptions(data: ReportData, place: _Figures) -> Section:
    body = []
    summaries = data.inputs.summaries
    shown = [m for m in ("clean_acc",) + CORRUPTION_METRICS if m in summaries.columns and summaries[m].notna().any()]
    if shown:
        body += ["<h3>Corruption summaries (as the sweeps wrote them)</h3>",
                 simple_table(summaries, ["model", "ensemble_size", "source", "corruptions", "baseline", *shown])]
    for cells in data.corruptions:
        body.append(f"<h3>{esc(cells.title or 'corruption sweep')}</h3>")
        body.append(place(svg.severity_figure(cells), "severity"))
        body.append(place(svg.heat_map_figure(cells), "heat-map"))
    if not data.corruptions:
        body.append(_empty("No corruption rows were given (smoothbench corrupt writes them)."))
    how = ("<p><strong>Per severity</strong>: the left panel shows the error (100 − accuracy, %) on each corruption at each "
           "severity as one box per model: the box spans the middle half of the corruptions, the black line is the "
           "median, whiskers reach 1.5 × the box height. The other panels are the mean NLL and ECE over corruptions; "
           "severity 0 is the clean test set. <strong>Heat map</strong>: the error on each corruption averaged over severities "
           "1-5; darker cells have lower error. Lower is better everywhere here.</p>"
           + _meanings([m for m in ("cAcc", "cNLL", "cECE", "cBrier", "mCE") if m in shown]))
    return Section("corruptions", "Corruptions", how, "\n".join(body))


def _reliability(data: ReportData, place: _Figures) -> Section:
    figures = [place(svg.reliability_figure(tables), "reliability") for tables in data.reliability]
    body = (f'<div class="figure-grid">{"".join(figures)}</div>' if figures else
            _empty("No reliability bins were given: run smoothbench eval RUN --plot DIR and pass DIR (or its "
                   "*_reliability.csv files) to smoothbench report."))
    how = ("<p>One diagram per model and ensemble size. Each bar is the accuracy of the predictions whose confidence "
           "falls in that bin; the dashed diagonal is perfect calibration. The hatched part is the gap to the bin's "
           "mean confidence: hatching above a bar means over-confidence. ECE is the count-weighted mean gap (lower "
           "is better); empty bins draw nothing.</p>")
    return Section("reliability", "Reliability diagrams", how, body)


def _consistency(data: ReportData, place: _Figures) -> Section:
    body = [place(svg.curve_figure(curves), "agreement") for curves in data.agreement]
    if not body:
        body = [_empty("No consistency rows across ensemble sizes were given (smoothbench consistency writes them).")]
    how = ("<p>The share of images whose prediction at each ensemble size equals the prediction of the largest "
           "ensemble measured (100 % there by definition). A curve that reaches the top sooner needs fewer samples "
           "for a stable prediction. Solid: with spatial smoothing, dashed: without.</p>" + _meanings(["agreement"]))
    return Section("consistency", "Agreement against ensemble size", how, "\n".join(body))


def _all_metrics(data: ReportData) -> Section:
    board = data.board
    metrics = board.metrics()
    body = [group_table(board, int(n), metrics, data.files) for n in sorted(board.table["group"].unique())]
    if not data.extra.empty:
        extra = [c for c in data.extra.columns if c in METRICS]
        body += ["<h3>Measurements the leaderboard does not rank</h3>",
                 simple_table(data.extra, ["model", "dataset", "kind", "ensemble_size", *extra])]
    how = ("<p>Every metric of every leaderboard row (the filters above apply here too), then any other measured "
           "metric, averaged per model, dataset and ensemble size.</p>"
           + _meanings(metrics + [c for c in data.extra.columns if c in METRICS]))
    return Section("all-metrics", "All metrics", how, "\n".join(body))


#: The report's sections for the other leaderboard views: anchor, heading and what the view answers.
_VIEW_SECTIONS = {
    "selective": ("selective", "Selective prediction",
                  "How much the error falls when the least confident images are rejected (rows ranked by AURC, the "
                  "area under the risk–coverage curve; <code>eval --plot</code> draws the curves)."),
    "ood": ("ood", "Out-of-distribution detection",
            "How well each score separates the test set from another distribution (one table per OOD set and score, "
            "ranked by AUROC; <code>ood --plot</code> draws the score histograms)."),
    "shift": ("shift", "Natural distribution shifts",
              "The same classes collected elsewhere (one table per set; <em>clean</em> is the test set)."),
}


def _view_section(name: str, board: Leaderboard, files: Mapping[str, Sequence[str]]) -> Section:
    """A leaderboard view as a section: one table per group (the leaderboard's filters apply) and its notes."""
    anchor, title, what = _VIEW_SECTIONS[name]
    metrics = shown_metrics(board)
    body = [group_table(board, int(n), metrics, files) for n in sorted(board.table["group"].unique())]
    if board.notes:
        body.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in board.notes) + "</ul>")
    return Section(anchor, title, f"<p>{what}</p>" + how_to_read(board, metrics), "\n".join(body))


def report_page(data: ReportData, title: str = "smoothbench report", note: str | None = None) -> Page:
    """The report: what the numbers can show, overview, leaderboard, the paper's figures, every metric."""
    place = _Figures()
    about = _about(data, note)
    sections = ([about] if about else []) + [
        _overview(data), leaderboard_section(data.board, data.files),
        *(_view_section(name, board, data.files) for name, board in data.views.items()),
        _sizes(data, place), _corruptions(data, place), _reliability(data, place), _consistency(data, place),
        _all_metrics(data)]
    rows = data.inputs.rows
    written = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (f"{len(rows)} result rows from {len(data.inputs.files())} file(s), {len(data.models)} model(s); "
                f"{_board_subtitle(data.board)}; written {written}")
    return Page(render_page(title, subtitle, sections), place.placed)
