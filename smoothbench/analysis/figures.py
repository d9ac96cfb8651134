"""The analyses' figures: landscape contour and slices, the eigenvalue spectrum, statistics against depth.

Built like :mod:`smoothbench.plots` (a Figure with its own Agg canvas, written atomically as PNG); each
function returns the figure it wrote.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from smoothbench.plots import _new_figure, _save_png

#: Shading of smoothing and downsampling positions in depth plots (the authors shade pools blue).
_SMOOTHING_COLOUR, _DOWNSAMPLE_COLOUR = "tab:gray", "tab:blue"


def _grid(rows: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(xs, ys, Z[y, x])`` of ``metric`` from one ensemble size's landscape rows."""
    table = rows.pivot(index="y", columns="x", values=metric).sort_index().sort_index(axis=1)
    return table.columns.to_numpy(float), table.index.to_numpy(float), table.to_numpy(float)


def landscape_contour(rows: pd.DataFrame, path: str | os.PathLike, *, metric: str = "loss", title: str = "") -> Figure:
    """Filled contours of ``metric`` over the (x, y) grid, the trained weights marked at (0, 0)."""
    xs, ys, z = _grid(rows, metric)
    fig, (ax,) = _new_figure(5.6, 4.6)
    finite = z[np.isfinite(z)]
    levels = np.linspace(finite.min(), finite.max(), 25) if finite.size and np.ptp(finite) > 0 else 25
    filled = ax.contourf(xs, ys, z, levels=levels, cmap="viridis")
    ax.contour(xs, ys, z, levels=levels, colors="white", linewidths=0.4, alpha=0.6)
    fig.colorbar(filled, ax=ax, label=metric)
    ax.plot([0], [0], marker="+", color="red", markersize=12, mew=2, label="trained weights")
    ax.set(xlabel="x (direction 1)", ylabel="y (direction 2)", title=title or f"{metric} landscape", aspect="equal")
    ax.legend(loc="upper right", fontsize="small")
    _save_png(fig, path)
    return fig


def landscape_slices(rows: pd.DataFrame, path: str | os.PathLike, *, metrics: tuple[str, ...] = ("loss", "acc"),
                     title: str = "") -> Figure:
    """1-D slices through the centre: each metric along x at the y nearest 0, and along y at the x nearest 0."""
    fig, axes = _new_figure(5.0 * len(metrics), 4.0, ncols=len(metrics))
    for ax, metric in zip(axes, metrics):
        xs, ys, z = _grid(rows, metric)
        ax.plot(xs, z[np.abs(ys).argmin(), :], marker="o", markersize=3, label="along x (y = 0)")
        ax.plot(ys, z[:, np.abs(xs).argmin()], marker="s", markersize=3, label="along y (x = 0)")
        ax.axvline(0.0, color="gray", linestyle=":", linewidth=1)
        ax.set(xlabel="distance from the trained weights", ylabel=metric, title=title or f"{metric}, 1-D slices")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    _save_png(fig, path)
    return fig


def eigenvalue_spectrum(histogram: pd.DataFrame, path: str | os.PathLike, *, title: str = "") -> Figure:
    """Histogram of the per-batch top Hessian eigenvalues (the "max eigenvalue spectrum")."""
    fig, (ax,) = _new_figure(6.5, 4.2)
    widths = (histogram["upper"] - histogram["lower"]).to_numpy()
    ax.bar(histogram["lower"], histogram["count"], width=widths, align="edge", color="tab:blue", edgecolor="black")
    ax.axvline(0.0, color="gray", linestyle=":", linewidth=1)
    ax.set(xlabel="top Hessian eigenvalue of a mini-batch", ylabel="mini-batches",
           title=title or "Hessian max eigenvalue spectrum")
    ax.grid(alpha=0.3, axis="y")
    _save_png(fig, path)
    return fig


def feature_depth(rows: pd.DataFrame, path: str | os.PathLike, *,
                  metrics: tuple[str, ...] = ("fmap_variance", "mc_variance", "fourier_high"), title: str = "") -> Figure:
    """Each statistic against normalised depth, smoothing positions shaded gray and downsampling ones blue
    (a span of one position ending at it, as the authors shade pooling layers)."""
    fig = Figure(figsize=(7.0, 2.6 * len(metrics)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    step = 1.0 / max(len(rows) - 1, 1)
    for ax, metric in zip(axes, metrics):
        for _, row in rows.iterrows():
            for flag, colour in (("smoothing", _SMOOTHING_COLOUR), ("downsample", _DOWNSAMPLE_COLOUR)):
                if row[flag]:
                    ax.axvspan(row["depth"] - step, row["depth"], color=colour, alpha=0.2, lw=0)
        ax.plot(rows["depth"], rows[metric], marker="o", color="black", markersize=4)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0].set_title(title or "feature maps along depth", fontsize="medium")
    axes[0].legend(handles=[Patch(color=_SMOOTHING_COLOUR, alpha=0.4, label="smoothing"),
                            Patch(color=_DOWNSAMPLE_COLOUR, alpha=0.4, label="downsampling")], fontsize="small")
    axes[-1].set(xlabel="normalised depth", xlim=(0.0, 1.0))
    _save_png(fig, path)
    return fig
