"""Figures: reliability diagrams, risk-coverage curves and metric curves over ensemble size or corruption severity.

Figures are built on :class:`matplotlib.figure.Figure` with an Agg canvas attached per figure, so no
pyplot state or global backend is touched, and written as PNG through :func:`fileio.atomic_open`.
Each function returns the figure it wrote.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open

_BIN_COLUMNS = ("lower", "upper", "count", "accuracy", "confidence")
# Narrowest bar drawn for a bin whose edges coincide (equal-mass bins of tied confidences).
_MIN_BAR_WIDTH = 0.01


def _new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _save_png(fig: Figure, path: str | os.PathLike) -> None:
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")


def _require_columns(df: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(
            f"{what}: missing column(s) {', '.join(missing)}; have {', '.join(map(str, df.columns))}"
        )
    if df.empty:
        raise UserError(f"{what}: no rows to plot; run an evaluation that produces them first")


def reliability_diagram(
    bins_df: pd.DataFrame, path: str | os.PathLike, title: str = "Reliability diagram"
) -> Figure:
    """Write a two-panel reliability diagram of ``metrics.reliability_bins`` output as a PNG.

    Left: per-bin accuracy bars against the diagonal, with the gap to the bin's mean confidence
    shaded. Right: confidence histogram, the fraction count_b / Σ count of samples per bin. Empty bins
    draw no bars.
    """
    _require_columns(bins_df, list(_BIN_COLUMNS), "reliability diagram")
    nonempty = bins_df[bins_df["count"] > 0]
    centre = ((nonempty["lower"] + nonempty["upper"]) / 2).to_numpy()
    width = np.maximum((nonempty["upper"] - nonempty["lower"]).to_numpy(), _MIN_BAR_WIDTH)
    accuracy = nonempty["accuracy"].to_numpy()
    confidence = nonempty["confidence"].to_numpy()
    fraction = (nonempty["count"] / bins_df["count"].sum()).to_numpy()

    fig, (rel, hist) = _new_figure(10, 4.2, ncols=2)
    rel.bar(centre, accuracy, width=width, color="tab:blue", edgecolor="black", label="accuracy")
    rel.bar(
        centre,
        confidence - accuracy,
        bottom=accuracy,
        width=width,
        color="tab:red",
        alpha=0.3,
        hatch="//",
        edgecolor="tab:red",
        label="gap to confidence",
    )
    rel.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    rel.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    rel.legend(loc="upper left")

    hist.bar(centre, fraction, width=width, color="tab:gray", edgecolor="black")
    hist.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="fraction of samples",
             title="Confidence histogram")
    _save_png(fig, path)
    return fig


def _plot_lines(
    df: pd.DataFrame, x: str, metric: str, line_keys: list[str], ax, marker: str = "o"
) -> None:
    curves = df.groupby(line_keys + [x], sort=True)[metric].mean().reset_index()
    for key, curve in curves.groupby(line_keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        label = str(key[0]) + "".join(f" ({name}={value})" for name, value in zip(line_keys[1:], key[1:]))
        ax.plot(curve[x], curve[metric], marker=marker, label=label)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def metric_vs_ensemble_size(
    df: pd.DataFrame, metric: str, path: str | os.PathLike, hue: str = "model", title: str | None = None
) -> Figure:
    """Write a PNG of ``metric`` over ``ensemble_size`` (log x axis), one line per ``hue`` value.

    ``df`` holds tidy result rows; rows sharing (hue, ensemble_size) (seeds, corruptions) are averaged.
    """
    _require_columns(df, [hue, "ensemble_size", metric], f"{metric} vs ensemble size")
    fig, (ax,) = _new_figure(6.5, 4.2)
    _plot_lines(df, "ensemble_size", metric, [hue], ax)
    sizes = sorted(df["ensemble_size"].unique())
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set(xlabel="ensemble size", ylabel=metric, title=title or f"{metric} vs ensemble size")
    _save_png(fig, path)
    return fig


def metric_vs_severity(
    df: pd.DataFrame, metric: str, path: str | os.PathLike, hue: str = "model", title: str | None = None
) -> Figure:
    """Write a PNG of ``metric`` over corruption ``severity`` (0 = clean … 5), mean over corruptions.

    One line per ``hue`` value, and per ``ensemble_size`` too when ``df`` has that column with several
    values.
    """
    _require_columns(df, [hue, "severity", metric], f"{metric} vs severity")
    line_keys = [hue]
    if "ensemble_size" in df.columns and hue != "ensemble_size" and df["ensemble_size"].nunique() > 1:
        line_keys.append("ensemble_size")
    fig, (ax,) = _new_figure(6.5, 4.2)
    _plot_lines(df, "severity", metric, line_keys, ax)
    ax.set_xticks(sorted(df["severity"].unique()))
    ax.set(xlabel="severity (0 = clean)", ylabel=metric, title=title or f"{metric} vs corruption severity")
    _save_png(fig, path)
    return fig


def risk_coverage_plot(
    frames_by_label: dict[str, pd.DataFrame], path: str | os.PathLike, title: str = "Risk-coverage curve"
) -> Figure:
    """Write a PNG of ``metrics.risk_coverage_curve`` tables, one step line per label (e.g. per model).

    Each curve is drawn as the step function the AURC integrates: risk_g over coverages
    (coverage_{g-1}, coverage_g], starting at coverage 0 with the most confident point's risk.
    """
    if not frames_by_label:
        raise UserError("risk-coverage plot: no curves to plot; pass at least one risk_coverage_curve table")
    fig, (ax,) = _new_figure(6.5, 4.2)
    for label, frame in frames_by_label.items():
        _require_columns(frame, ["coverage", "risk"], f"risk-coverage curve {label!r}")
        curve = frame.sort_values("coverage")
        coverage = np.concatenate(([0.0], curve["coverage"].to_numpy()))
        risk = curve["risk"].to_numpy()
        ax.plot(coverage, np.concatenate((risk[:1], risk)), drawstyle="steps-pre", label=str(label))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    ax.set(xlim=(0, 1), ylim=(0, None), xlabel="coverage", ylabel="selective risk (error rate)", title=title)
    _save_png(fig, path)
    return fig


def ood_histogram(scores_in: np.ndarray, scores_out: np.ndarray, path: str | os.PathLike,
                  title: str = "OOD score", score: str = "score") -> Figure:
    """Write a PNG of two overlaid density histograms of an OOD score: in-distribution and OOD images, on
    shared bins (50 over the pooled range), so the overlap the AUROC summarises is visible."""
    pooled = np.concatenate([scores_in, scores_out])
    if pooled.size == 0 or not np.isfinite(pooled).all():
        raise UserError(f"OOD histogram {title!r}: needs finite scores of both sets")
    low, high = float(pooled.min()), float(pooled.max())
    edges = np.linspace(low, high if high > low else low + 1.0, 51)
    fig, (ax,) = _new_figure(6.5, 4.2)
    ax.hist(scores_in, bins=edges, density=True, alpha=0.55, label=f"in-distribution ({len(scores_in):,})")
    ax.hist(scores_out, bins=edges, density=True, alpha=0.55, label=f"OOD ({len(scores_out):,})")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    ax.set(xlabel=f"{score} (higher = more in-distribution)", ylabel="density", title=title)
    _save_png(fig, path)
    return fig
