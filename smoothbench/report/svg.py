"""The report's figures as inline SVG: matplotlib draws them, :func:`inline` makes them fit one HTML page.

Every series is marked: each of its artists gets the id ``<figure id>-series<i>-<j>`` and, in the page,
``class="series" data-series="<i>"`` with its label in ``data-label``, so a reader (or a test) can count
and pick out the series of each figure. Colours are the Okabe–Ito palette (safe for the common forms of
colour blindness) and each colour also has its own marker, so a figure still reads in grey print.
Labels are drawn as plain text (no mathtext: a ``$`` in a model name stays a ``$``) and matplotlib escapes
them in the SVG; ``inline`` escapes what it adds itself.
"""

from __future__ import annotations

import contextlib
import functools
import html
import io
import itertools
import math
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from smoothbench.leaderboard.render import ORDER_TEXT
from smoothbench.report.data import CorruptionSet, CurveSet, SEVERITY_LINE_METRICS
from smoothbench.report.inputs import ReliabilityBins
from smoothbench.schema import SEVERITIES, direction, is_percent

#: Okabe & Ito (2008), ordered so that neighbours differ most; yellow last (weak on white).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Units of the raw (not percent) metrics the report draws.
_UNITS = {"nll": "nats", "brier": "summed over classes, 0-2"}
_RC = {"svg.fonttype": "none", "svg.hashsalt": "smoothbench-report", "text.parse_math": False, "font.size": 10,
       "axes.titlesize": 10, "legend.fontsize": 9}
#: Panels per row of a reliability figure.
_RELIABILITY_COLUMNS = 4


@dataclass(frozen=True)
class Drawing:
    """A drawn figure, its title and its series labels (index ``i`` = ``data-series="i"``)."""

    figure: Figure
    title: str
    series: tuple[str, ...]


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def axis_label(metric: str) -> str:
    """``acc (%)``, ``nll (nats)``: the metric and the unit it is drawn in."""
    if is_percent(metric):
        return f"{metric} (%)"
    return f"{metric} ({_UNITS[metric]})" if metric in _UNITS else metric


def _scale(metric: str) -> float:
    return 100.0 if is_percent(metric) else 1.0


def _styled(draw: Callable[..., Drawing]) -> Callable[..., Drawing]:
    """Draw under the report's matplotlib settings (read when texts are made, so around the drawing)."""
    @functools.wraps(draw)
    def styled(*args, **kwargs) -> Drawing:
        with _report_style():
            return draw(*args, **kwargs)
    return styled


@contextlib.contextmanager
def _report_style() -> Iterator[None]:
    """The report's rc settings, and no warning about glyphs DejaVu Sans lacks: the SVG keeps text as text
    (``svg.fonttype: none``), so the browser draws it with a font that has them."""
    with mpl.rc_context(_RC), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        yield


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasSVG(fig)
    return fig


class _Marker:
    """Gives every artist of series ``i`` a unique id ``series<i>-<j>``."""

    def __init__(self) -> None:
        self._count = itertools.count()

    def __call__(self, index: int, artists: Iterable) -> None:
        for artist in artists:
            artist.set_gid(f"series{index}-{next(self._count)}")


def _log_sizes(ax, sizes: Sequence[int]) -> None:
    """A log x axis with a tick (plain number) at each ensemble size."""
    ax.set_xscale("log")
    ax.set_xticks(list(sizes), labels=[str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("ensemble size (log scale)")


@_styled
def curve_figure(curves: CurveSet) -> Drawing:
    """One panel per metric against ensemble size (the paper's Fig. 2/3 layout): a colour per configuration,
    solid with spatial smoothing and dashed without, a band of ± one std where seeds were averaged."""
    count = len(curves.metrics)
    columns = 2 if count > 1 else 1
    rows = math.ceil(count / columns)
    fig = _figure(9.0 if columns == 2 else 6.0, 3.1 * rows + 0.35 * math.ceil(len(curves.series) / 2) + 0.4)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    mark = _Marker()
    sizes = sorted({int(x) for s in curves.series for x in s.points[curves.x].dropna()})
    for ax, metric in zip(axes, curves.metrics):
        scale = _scale(metric)
        for index, series in enumerate(curves.series):
            points = series.points.dropna(subset=[metric]) if metric in series.points.columns else series.points[:0]
            if points.empty:
                continue
            x, y = points[curves.x].to_numpy(float), scale * points[metric].to_numpy(float)
            paint = colour(series.pair)
            mark(index, ax.plot(x, y, linestyle="-" if series.smoothed else "--", marker=marker(series.pair),
                                color=paint, markerfacecolor=paint if series.smoothed else "white", linewidth=1.5))
            spread = points.get(f"{metric}_std")
            if spread is not None and spread.notna().any():
                band = scale * spread.fillna(0).to_numpy(float)
                mark(index, [ax.fill_between(x, y - band, y + band, color=paint, alpha=0.15, linewidth=0)])
        _log_sizes(ax, sizes)
        ax.set_ylabel(axis_label(metric))
        ax.set_title(f"{metric}: {ORDER_TEXT[direction(metric)]}")
        ax.grid(alpha=0.3)
    for ax in axes[count:]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=colour(s.pair), marker=marker(s.pair), linestyle="-" if s.smoothed else "--",
                      markerfacecolor=colour(s.pair) if s.smoothed else "white") for s in curves.series]
    fig.legend(handles, [s.label for s in curves.series], loc="outside lower center", ncols=2, frameon=False)
    return Drawing(fig, curves.title, tuple(s.label for s in curves.series))


@_styled
def severity_figure(cells: CorruptionSet) -> Drawing:
    """Error per severity as boxes over the corruptions (one box per series), then the mean NLL and ECE per
    severity as lines (severity 0 = the clean test set)."""
    metrics = [m for m in SEVERITY_LINE_METRICS if m in cells.cells.columns]
    fig = _figure(3.6 * (1 + len(metrics)), 3.6 + 0.3 * math.ceil(len(cells.series) / 3))
    axes = fig.subplots(1, 1 + len(metrics), squeeze=False).ravel()
    mark = _Marker()
    corrupted = cells.cells[cells.cells["severity"] > 0]
    severities = [s for s in SEVERITIES if s in set(corrupted["severity"])]
    width = 0.8 / len(cells.series)
    for index, label in enumerate(cells.series):
        mine = corrupted[corrupted["series"] == label]
        data = [100 * (1 - mine.loc[mine["severity"] == s, "acc"].to_numpy(float)) for s in severities]
        kept = [(s, d) for s, d in zip(severities, data) if len(d)]
        if kept:
            offset = (index - (len(cells.series) - 1) / 2) * width
            boxes = axes[0].boxplot([d for _, d in kept], positions=[s + offset for s, _ in kept],
                                    widths=0.9 * width, patch_artist=True, manage_ticks=False,
                                    flierprops={"marker": marker(index), "markersize": 3})
            for patch in boxes["boxes"]:
                patch.set(facecolor=colour(index), alpha=0.55, edgecolor=colour(index))
            for part in ("medians", "whiskers", "caps", "fliers"):
                for artist in boxes[part]:
                    artist.set_color("black" if part == "medians" else colour(index))
            mark(index, [a for part in boxes.values() for a in part])
        means = cells.cells[cells.cells["series"] == label].groupby("severity")[metrics].mean()
        for ax, metric in zip(axes[1:], metrics):
            curve = means[metric].dropna()
            mark(index, ax.plot(curve.index, _scale(metric) * curve.to_numpy(float), marker=marker(index),
                                color=colour(index), linewidth=1.5))
    axes[0].set_xticks(severities)
    axes[0].set(xlabel="severity", ylabel="error (%)", title="error over corruptions: lower is better")
    for ax, metric in zip(axes[1:], metrics):
        ax.set_xticks(sorted(set(cells.cells["severity"].astype(int))))
        ax.set(xlabel="severity (0 = clean)", ylabel=axis_label(metric),
               title=f"mean {metric}: {ORDER_TEXT[direction(metric)]}")
    for ax in axes:
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colour(i), marker=marker(i)) for i in range(len(cells.series))]
    fig.legend(handles, list(cells.series), loc="outside lower center", ncols=min(3, len(cells.series)), frameon=False)
    return Drawing(fig, cells.title, tuple(cells.series))


@_styled
def heat_map_figure(cells: CorruptionSet) -> Drawing:
    """Corruption × series error (mean over severities 1..5), each cell labelled; colour map cividis (readable
    with any colour vision, and in grey). Series ``i`` is column ``i``."""
    table = cells.error_table()
    values = 100 * table.to_numpy(float)
    longest = max((len(str(c)) for c in table.columns), default=0)  # tick labels at 30°: room below the map
    fig = _figure(2.2 + 1.05 * table.shape[1], 1.9 + 0.32 * table.shape[0] + 0.045 * longest)
    ax = fig.subplots()
    finite = values[np.isfinite(values)]
    norm = Normalize(float(finite.min()) if finite.size else 0.0, float(finite.max()) if finite.size else 100.0)
    cmap = mpl.colormaps["cividis"]
    mark = _Marker()
    for column in range(table.shape[1]):
        artists = []
        for row in range(table.shape[0]):
            value = values[row, column]
            if not np.isfinite(value):
                continue
            fill = cmap(norm(value))
            artists.append(ax.add_patch(Rectangle((column, row), 1, 1, facecolor=fill, edgecolor="white")))
            ink = "black" if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 0.5 else "white"
            artists.append(ax.text(column + 0.5, row + 0.5, f"{value:.1f}", ha="center", va="center", color=ink,
                                   fontsize=7))
        mark(column, artists)
    ax.set(xlim=(0, table.shape[1]), ylim=(table.shape[0], 0), xlabel="model (ensemble size)", ylabel="corruption",
           title="error (%) over severities 1-5: lower is better")
    ax.set_xticks(np.arange(table.shape[1]) + 0.5, labels=list(table.columns), rotation=30, ha="right")
    ax.set_yticks(np.arange(table.shape[0]) + 0.5, labels=list(table.index))
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="error (%)")
    return Drawing(fig, cells.title, tuple(table.columns))


@_styled
def reliability_figure(tables: Sequence[ReliabilityBins]) -> Drawing:
    """One reliability diagram per ensemble size of one model: accuracy per confidence bin against the
    diagonal (perfect calibration), the gap to the bin's mean confidence hatched, ECE from the bins."""
    columns = min(_RELIABILITY_COLUMNS, len(tables))
    rows = math.ceil(len(tables) / columns)
    fig = _figure(2.35 * columns + 0.4, 2.45 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    mark = _Marker()
    for index, (ax, table) in enumerate(zip(axes, tables)):
        bins = table.bins[table.bins["count"] > 0]
        centre = 100 * ((bins["lower"] + bins["upper"]) / 2).to_numpy(float)
        width = np.maximum(100 * (bins["upper"] - bins["lower"]).to_numpy(float), 1.0)
        accuracy, confidence = 100 * bins["accuracy"].to_numpy(float), 100 * bins["confidence"].to_numpy(float)
        bars = ax.bar(centre, accuracy, width=width, color=colour(index), edgecolor="black", linewidth=0.4)
        gaps = ax.bar(centre, confidence - accuracy, bottom=accuracy, width=width, color="none", hatch="///",
                      edgecolor="#555555", linewidth=0.4)
        mark(index, list(bars) + list(gaps))
        ax.plot([0, 100], [0, 100], linestyle="--", color="grey", linewidth=1)
        total = table.bins["count"].sum()
        ece = 100 * float((bins["count"] / total * (bins["confidence"] - bins["accuracy"]).abs()).sum()) if total else 0
        ax.set(xlim=(0, 100), ylim=(0, 100), xlabel="confidence (%)", ylabel="accuracy (%)",
               title=f"size {table.ensemble_size}: ECE {ece:.2f} %")
        ax.grid(alpha=0.3)
    for ax in axes[len(tables):]:
        ax.set_visible(False)
    first = tables[0]
    return Drawing(fig, f"{first.model} on {first.dataset}/{first.split}",
                   tuple(f"size {t.ensemble_size}" for t in tables))


# ----------------------------------------------------------------------------------------------------------
# inline SVG
_TAG = re.compile(r"<[^<>]+>")
_SERIES_ID = re.compile(r'id="[^"]*-series(\d+)-\d+"')


def inline(drawing: Drawing, figure_id: str) -> str:
    """The drawing as an ``<svg>`` element for an HTML page: no XML prolog, metadata or comments, every id
    prefixed with ``figure_id`` (so several figures never share one), ``role="img"`` with the title, and each series' artists marked ``class="series"``."""
    buffer = io.StringIO()
    with _report_style():
        drawing.figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<!--.*?-->|<metadata>.*?</metadata>|<style[^>]*>.*?</style>", "", svg, flags=re.S)

    def retag(match: re.Match) -> str:
        tag = re.sub(r'\bid="([^"]*)"', rf'id="{figure_id}-\1"', match.group(0))
        tag = re.sub(r'href="#([^"]*)"', rf'href="#{figure_id}-\1"', tag)
        tag = re.sub(r"url\(#([^)]*)\)", rf"url(#{figure_id}-\1)", tag)
        series = _SERIES_ID.search(tag)
        if series is not None:
            label = html.escape(drawing.series[int(series.group(1))], quote=True)
            end = len(tag) - (2 if tag.endswith("/>") else 1)
            tag = tag[:end] + f' class="series" data-series="{series.group(1)}" data-label="{label}"' + tag[end:]
        return tag

    svg = _TAG.sub(retag, svg)
    title = html.escape(drawing.title)
    svg = svg.replace("<svg ", f'<svg class="plot" role="img" aria-labelledby="{figure_id}-title" ', 1)
    head_end = svg.index(">") + 1
    return svg[:head_end] + f'<title id="{figure_id}-title">{title}</title>' + svg[head_end:]
