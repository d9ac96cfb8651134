"""What each section of a report shows, computed from the rows: plain tables and curves, no HTML, no drawing.

Figures never mix rows that the leaderboard would not rank together: the ensemble-size curves come from
the leaderboard's own comparability groups, the corruption and consistency figures from rows that share
their data and settings. Seeds of one configuration are averaged, as on the leaderboard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Iterable, Sequence

import pandas as pd

from smoothbench import __version__
from smoothbench.errors import UserError
from smoothbench.leaderboard.build import VIEWS, Leaderboard, build_leaderboard
from smoothbench.leaderboard.render import group_title
from smoothbench.report.inputs import ReliabilityBins, ReportInputs, RunConfig
from smoothbench.results.store import canonical
from smoothbench.schema import METRICS

#: The paper's Fig. 2/3 metrics, one panel each, against ensemble size.
SIZE_METRICS = ("nll", "acc", "ece", "brier")
#: Per-severity panels: error as boxes over corruptions, then these means as lines.
SEVERITY_LINE_METRICS = ("nll", "ece")
#: Most configurations (smoothed and not count as one) in one figure: beyond this, colours repeat.
PAIRS_PER_FIGURE = 8
#: Most series in one corruption figure (box plots and heat-map columns stay readable).
SERIES_PER_FIGURE = 8

#: What the overview says about each model: its configuration, then its preprocessing (the input recipe, where
#: rows record one, and the normalisation).
_MODEL_COLUMNS = ("arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width", "preprocess", "normalization")
#: The columns that make two configurations a "with and without smoothing" pair (one colour in a figure).
_PAIR_COLUMNS = ("dataset", "arch", "method", "dropout_rate", "width")


@dataclass(frozen=True)
class Series:
    """One series of a figure: its label, its colour (``pair``: configurations that differ only in
    smoothing share one), whether it is smoothed (solid) or not (dashed), and its points (``x`` and metric
    columns, with ``<metric>_std`` where seeds were averaged)."""

    label: str
    pair: int
    smoothed: bool
    points: pd.DataFrame


@dataclass(frozen=True)
class CurveSet:
    """Curves of ``metrics`` against ``x`` for one figure (one comparability group, one part of it)."""

    title: str
    x: str
    metrics: tuple[str, ...]
    series: list[Series]


@dataclass(frozen=True)
class CorruptionSet:
    """Corruption cells of one sweep setting for one figure: ``cells`` has ``series`` (a label),
    ``corruption``, ``severity`` (1..5, and 0 for the clean rows) and the metric means over replicates."""

    title: str
    series: list[str]
    cells: pd.DataFrame

    def error_table(self) -> pd.DataFrame:
        """Corruption × series: the error (1 − accuracy) averaged over severities 1..5."""
        corrupted = self.cells[self.cells["severity"] > 0]
        table = (1 - corrupted.groupby(["corruption", "series"], sort=False)["acc"].mean()).unstack("series")
        return table.reindex(columns=[s for s in self.series if s in table.columns])


def text(value: Any) -> str:
    """A cell as text (empty for missing values)."""
    return canonical(value)


def _first_text(frame: pd.DataFrame, column: str) -> str:
    """The distinct values of ``column`` in ``frame``, joined (empty if absent)."""
    if column not in frame.columns:
        return ""
    return ", ".join(dict.fromkeys(v for v in frame[column].map(text) if v))


def _is_smoothed(row: pd.Series | dict) -> bool:
    return text(row.get("smoothing")) not in ("", "none")


def _pair_key(row: pd.Series | dict) -> str:
    """Configurations with this key differ at most in smoothing; without an ``arch`` each name is its own."""
    if not text(row.get("arch")):
        return "\x1f".join((text(row.get("dataset")), text(row.get("name", row.get("model")))))
    return "\x1f".join(text(row.get(c)) for c in _PAIR_COLUMNS)


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)] or [items]


def _part(title: str, index: int, count: int) -> str:
    return title if count == 1 else f"{title} (part {index + 1} of {count})"


def default_sort(rows: pd.DataFrame) -> str:
    """The metric to rank by when none is asked for: NLL of clean evaluations, else of the corruption
    sweeps, else agreement across ensemble sizes, else CIFAR-10-P consistency (what the rows have)."""
    consistency = rows["kind"].map(text) if "kind" in rows.columns else pd.Series("", index=rows.index)
    corrupted = consistency.eq("") & rows.get("corruption", pd.Series(index=rows.index, dtype=object)).notna()
    clean = consistency.eq("") & ~corrupted
    for metric, chosen in (("nll", clean), ("cNLL", corrupted), ("agreement", consistency.eq("mc-size"))):
        if chosen.any():
            return metric
    return "consistency"


# ----------------------------------------------------------------------------------------------------------
# overview
def model_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, checkpoint): its configuration, preprocessing, checkpoint hash, the datasets it
    was measured on and the ensemble sizes (columns the rows lack are left out)."""
    keys = [c for c in ("model", "checkpoint_sha256") if c in rows.columns]
    records = []
    for _, frame in rows.groupby([rows[c].map(text) for c in keys], sort=False):
        record = {c: _first_text(frame, c) for c in ("model",) + _MODEL_COLUMNS + ("checkpoint_sha256", "dataset")
                  if c in rows.columns}
        sizes = sorted({int(s) for s in pd.to_numeric(frame["ensemble_size"], errors="coerce").dropna()})
        record["ensemble_sizes"] = ", ".join(map(str, sizes))
        records.append(record)
    return pd.DataFrame(records)


def dataset_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, split, source): the data fingerprints, image counts and subsets, and how many
    result rows measured it (a corrupted set has one fingerprint per cell, so those are counted)."""
    keys = [c for c in ("dataset", "split", "source") if c in rows.columns]
    records = []
    for _, frame in rows.groupby([rows[c].map(text) for c in keys], sort=False):
        prints = list(dict.fromkeys(v for v in frame.get("data_fingerprint", pd.Series(dtype=object)).map(text) if v))
        shown = ", ".join(prints[:3]) + (f" … ({len(prints)} in all)" if len(prints) > 3 else "")
        records.append({"dataset": _first_text(frame, "dataset"), "split": _first_text(frame, "split"),
                        "source": _first_text(frame, "source"), "data_fingerprint": shown,
                        "n_images": _first_text(frame, "n_images"), "subset": _first_text(frame, "subset"),
                        "rows": len(frame)})
    return pd.DataFrame(records)


def _installed(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def version_table(rows: pd.DataFrame, runs: Iterable[RunConfig]) -> pd.DataFrame:
    """Which smoothbench and torch versions produced what: the result rows (which record smoothbench's
    version only), each run folder found among the inputs (its training environment) and this report."""
    records = [{"what": "result rows", "smoothbench": _first_text(rows, "smoothbench_version") or "not recorded",
                "torch": "not recorded in result rows", "python": "", "device": ""}]
    for run in runs:
        records.append({"what": f"run {run.name}", "smoothbench": run.packages.get("smoothbench", ""),
                        "torch": run.packages.get("torch", ""), "python": run.packages.get("python", ""),
                        "device": run.device})
    records.append({"what": "this report", "smoothbench": __version__, "torch": _installed("torch"),
                    "python": "", "device": ""})
    return pd.DataFrame(records)


def sampling_notes(rows: pd.DataFrame) -> list[str]:
    """How far a difference in accuracy can be noise: the binomial standard error of an accuracy near the
    median one, on the fewest test images of each dataset's clean evaluations."""
    clean = rows[rows["acc"].notna()] if "acc" in rows.columns else rows.iloc[:0]
    for column in ("corruption", "kind"):
        if column in clean.columns:
            clean = clean[clean[column].isna()]
    notes = []
    for dataset, frame in clean.groupby(clean.get("dataset", pd.Series("", index=clean.index)).map(text)):
        counts = pd.to_numeric(frame.get("n_images", pd.Series(dtype=float)), errors="coerce").dropna()
        if counts.empty or counts.min() <= 0:
            continue
        n, p = int(counts.min()), float(frame["acc"].median())
        error = 100 * math.sqrt(max(p * (1 - p), 1e-12) / n)
        notes.append(f"{dataset or 'unnamed dataset'}: {n} test images, so an accuracy near {100 * p:.1f} % has a "
                     f"standard error of about {error:.1f} points; differences under about {2 * error:.1f} points "
                     "are not evidence of an effect.")
    return notes


# ----------------------------------------------------------------------------------------------------------
# ensemble-size curves (the paper's Fig. 2/3): from the leaderboard, per comparability group
def _series_of(frame: pd.DataFrame, label_column: str, x: str, metrics: Sequence[str]) -> list[Series]:
    """One :class:`Series` per ``label_column`` value, coloured by :func:`_pair_key`, points sorted by ``x``."""
    pairs: dict[str, int] = {}
    series = []
    for label, part in frame.groupby(frame[label_column].map(text), sort=False):
        first = part.iloc[0]
        pair = pairs.setdefault(_pair_key(first), len(pairs))
        columns = [x] + [c for m in metrics for c in (m, f"{m}_std") if c in part.columns]
        points = part[columns].assign(**{x: pd.to_numeric(part[x], errors="coerce")}).sort_values(x)
        series.append(Series(label, pair, _is_smoothed(first), points.reset_index(drop=True)))
    return series


def _split_by_pair(series: list[Series], title: str, x: str, metrics: tuple[str, ...]) -> list[CurveSet]:
    """Curve sets of at most :data:`PAIRS_PER_FIGURE` colours each (pairs kept together)."""
    pairs = list(dict.fromkeys(s.pair for s in series))
    parts = _chunks(pairs, PAIRS_PER_FIGURE)
    return [CurveSet(_part(title, i, len(parts)), x, metrics, [s for s in series if s.pair in part])
            for i, part in enumerate(parts)]


def size_curves(board: Leaderboard) -> list[CurveSet]:
    """NLL, accuracy, ECE and Brier against ensemble size per comparability group (groups where every row
    is at one size are left out: there is no curve to draw)."""
    metrics = tuple(m for m in SIZE_METRICS if m in board.table.columns and board.table[m].notna().any())
    sets = []
    for number, frame in board.table.groupby("group", sort=True):
        frame = frame[frame[list(metrics)].notna().any(axis=1)] if metrics else frame.iloc[:0]
        if frame.empty or frame["ensemble_size"].nunique() < 2:
            continue
        series = _series_of(frame, "name", "ensemble_size", metrics)
        sets += _split_by_pair(series, group_title(board, int(number)), "ensemble_size", metrics)
    return sets


# ----------------------------------------------------------------------------------------------------------
# corruption cells, consistency curves and reliability bins: from the rows, per shared data and settings
_CORRUPTION_SETTING = ("dataset", "n_images", "precision", "ece_mode", "ece_bins")
_CONSISTENCY_SETTING = ("dataset", "n_images", "precision")


def _setting_groups(rows: pd.DataFrame, columns: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """``rows`` split by the values of ``columns`` (those present), each with a ``k=v`` title."""
    present = [c for c in columns if c in rows.columns]
    if not present:
        return [("", rows)] if len(rows) else []
    groups = []
    for values, frame in rows.groupby([rows[c].map(text) for c in present], sort=False):
        values = values if isinstance(values, tuple) else (values,)
        groups.append((", ".join(f"{c}={v}" for c, v in zip(present, values) if v), frame))
    return groups


def _size_label(row: pd.Series) -> str:
    return f"{text(row['model'])} (size {text(row['ensemble_size'])})"


def corruption_sets(rows: pd.DataFrame) -> list[CorruptionSet]:
    """Corruption cells per sweep setting (data, precision, ECE settings, and the corrupted cells' source),
    one series per (model, ensemble size), replicates averaged; the clean rows (severity 0) of the same
    setting join each set."""
    if not {"corruption", "severity", "acc"} <= set(rows.columns):
        return []
    cells = rows[rows["corruption"].notna() & rows["severity"].notna()]
    if "kind" in cells.columns:
        cells = cells[cells["kind"].isna()]
    if cells.empty:
        return []
    cells = cells.assign(series=cells.apply(_size_label, axis=1), severity=pd.to_numeric(cells["severity"]))
    sets = []
    for title, frame in _setting_groups(cells, _CORRUPTION_SETTING):
        clean, cells_only = frame[frame["severity"] == 0], frame[frame["severity"] > 0]
        sources = cells_only.get("source", pd.Series("", index=cells_only.index)).map(text)
        for source, corrupted in cells_only.groupby(sources, sort=False):
            chosen = pd.concat([clean[clean["series"].isin(corrupted["series"])], corrupted])
            metrics = [m for m in ("acc", "nll", "ece") if m in chosen.columns]
            means = chosen.groupby(["series", "corruption", "severity"], sort=False)[metrics].mean().reset_index()
            labels = list(dict.fromkeys(corrupted["series"]))
            parts = _chunks(labels, SERIES_PER_FIGURE)
            heading = ", ".join(t for t in (title, f"source={source}" if source else "") if t)
            for i, part in enumerate(parts):
                sets.append(CorruptionSet(_part(heading, i, len(parts)), list(part),
                                          means[means["series"].isin(part)].reset_index(drop=True)))
    return sets


def agreement_curves(rows: pd.DataFrame) -> list[CurveSet]:
    """Agreement with the largest ensemble against ensemble size, one series per model, per data setting
    (``mc-size`` consistency rows)."""
    if "kind" not in rows.columns or "agreement" not in rows.columns:
        return []
    sizes = rows[rows["kind"].map(text) == "mc-size"]
    carried = [c for c in _PAIR_COLUMNS + ("smoothing",) if c in sizes.columns]
    sets = []
    for title, frame in _setting_groups(sizes, _CONSISTENCY_SETTING):
        grouped = frame.assign(model=frame["model"].map(text)).groupby(["model", "ensemble_size"], sort=False)
        means = grouped[carried].first().join(grouped["agreement"].mean()).reset_index()
        series = _series_of(means, "model", "ensemble_size", ("agreement",))
        sets += _split_by_pair(series, title, "ensemble_size", ("agreement",))
    return sets


def extra_metrics(rows: pd.DataFrame, board: Leaderboard, views: dict[str, Leaderboard]) -> pd.DataFrame:
    """Metrics of the schema that the rows hold but no leaderboard view ranks (consistency accuracy, say):
    their mean per (model, dataset, kind, ensemble size), so that every measured number appears in the
    report. Rows of the other views (OOD, shift) are theirs alone: averaging over OOD sets means nothing."""
    ranked = set(board.metrics())
    for name, other in views.items():
        ranked |= set(other.metrics())
        if VIEWS[name].rows != "evaluation":
            column = "ood_set" if VIEWS[name].rows == "ood" else "shift"
            rows = rows[~rows[column].map(text).isin(set(rows[column].map(text)) - {"", "clean"})]
    metrics = [m for m in METRICS if m in rows.columns and m not in ranked and rows[m].notna().any()]
    if not metrics:
        return pd.DataFrame()
    keys = [c for c in ("model", "dataset", "kind", "ensemble_size") if c in rows.columns]
    measured = rows[rows[metrics].notna().any(axis=1)]
    frame = measured.assign(**{c: measured[c].map(text) for c in keys if c != "ensemble_size"})
    return frame.groupby(keys, sort=False, dropna=False)[metrics].mean().reset_index()


def files_by_checkpoint(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Checkpoint hash → the result files that hold its rows (the leaderboard rows' provenance)."""
    if not {"checkpoint_sha256", "result_file"} <= set(rows.columns):
        return {}
    pairs = rows[["checkpoint_sha256", "result_file"]].dropna().drop_duplicates()
    return {sha: sorted(part["result_file"]) for sha, part in pairs.groupby("checkpoint_sha256")}


def reliability_groups(tables: Iterable[ReliabilityBins]) -> list[list[ReliabilityBins]]:
    """Reliability tables per (model, dataset, split), each list sorted by ensemble size."""
    groups: dict[tuple[str, str, str], list[ReliabilityBins]] = {}
    for table in tables:
        groups.setdefault((table.model, table.dataset, table.split), []).append(table)
    return [sorted(g, key=lambda t: t.ensemble_size) for g in groups.values()]


@dataclass(frozen=True)
class ReportData:
    """Everything a report's sections show."""

    inputs: ReportInputs
    board: Leaderboard
    models: pd.DataFrame
    datasets: pd.DataFrame
    versions: pd.DataFrame
    sampling: list[str]
    sizes: list[CurveSet]
    corruptions: list[CorruptionSet]
    agreement: list[CurveSet]
    reliability: list[list[ReliabilityBins]]
    extra: pd.DataFrame
    files: dict[str, list[str]]
    views: dict[str, Leaderboard]


def other_views(rows: pd.DataFrame) -> dict[str, Leaderboard]:
    """The leaderboards of the views besides ``paper`` that the rows hold (selective prediction where rows
    have ``aurc``, OOD detection, natural shifts), at every ensemble size, by each view's default sort."""
    boards = {}
    for name in VIEWS:
        if name == "paper" or (name == "selective" and "aurc" not in rows.columns):
            continue
        try:
            boards[name] = build_leaderboard(rows, view=name, ensemble_size="all")
        except UserError:  # the rows hold nothing this view ranks
            continue
    return boards


def report_data(inputs: ReportInputs, board: Leaderboard) -> ReportData:
    """The sections' data from what was read and the leaderboard built from it."""
    rows = inputs.rows
    views = other_views(rows)
    return ReportData(inputs, board, model_table(rows), dataset_table(rows), version_table(rows, inputs.runs),
                      sampling_notes(rows), size_curves(board), corruption_sets(rows), agreement_curves(rows),
                      reliability_groups(inputs.reliability), extra_metrics(rows, board, views),
                      files_by_checkpoint(rows), views)
