"""The reproduced figure: one panel per metric against the MC ensemble size, our mean ± std over seeds as a
line with a band, the paper's readings as markers with their precision as error bars."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as MplFigure
from matplotlib.lines import Line2D

from smoothbench.plots import _new_figure, _save_png
from smoothbench.report.svg import PALETTE
from smoothbench.reproduce.grid import MODELS, Figure

#: Colour and marker of each model (Okabe–Ito: plain nets in warm colours, smoothed ones in blues; each
#: also has its own marker, so the figure reads in grey too).
STYLE = {("dnn", "none"): (PALETTE[4], "s"), ("dnn", "tanh-blur"): (PALETTE[5], "D"),
         ("mcdo", "none"): (PALETTE[1], "o"), ("mcdo", "tanh-blur"): (PALETTE[0], "^")}


def _label(method: str, smoothing: str) -> str:
    return {"dnn": "deterministic", "mcdo": "MC dropout"}[method] + (" + smoothing" if smoothing != "none" else "")


def draw_figure(table: pd.DataFrame, figure: Figure, path: str | os.PathLike, *, title: str,
                note: str | None = None) -> MplFigure:
    """Write the figure of ``table`` (:func:`smoothbench.reproduce.compare.compare`) as a PNG.

    MC-dropout nets are lines over N; a deterministic net has one prediction (N = 1), drawn as a dashed
    horizontal line across the axis, as the paper does. ``note`` is printed under the title (e.g. that a
    tiny-scale figure is a pipeline check).
    """
    sizes = sorted(set(table["ensemble_size"].dropna().astype(int)))
    fig, axes = _new_figure(5.0 * len(figure.metrics), 4.4, ncols=len(figure.metrics))
    for ax, metric in zip(axes, figure.metrics):
        rows = table[table["metric"] == metric.column]
        for method, smoothing in MODELS:
            colour, marker = STYLE[(method, smoothing)]
            mine = rows[(rows["method"] == method) & (rows["smoothing"] == smoothing)].sort_values("ensemble_size")
            ours = mine[mine["n_seeds"] > 0]
            if len(ours):
                x = ours["ensemble_size"].to_numpy(float)
                mean = ours["ours_mean"].to_numpy(float)
                spread = np.nan_to_num(ours["ours_std"].to_numpy(float))
                if method == "dnn":  # one value, drawn across every N
                    x, mean, spread = np.array([sizes[0], sizes[-1]]), np.repeat(mean[:1], 2), np.repeat(spread[:1], 2)
                ax.plot(x, mean, color=colour, marker=None if method == "dnn" else marker,
                        linestyle="--" if method == "dnn" else "-", linewidth=1.6)
                ax.fill_between(x, mean - spread, mean + spread, color=colour, alpha=0.1 if method == "dnn" else 0.2,
                                linewidth=0)
            paper = mine[mine["paper"].notna()]
            if len(paper):
                ax.errorbar(paper["ensemble_size"], paper["paper"], yerr=paper["paper_precision"], color=colour,
                            marker=marker, markerfacecolor="white", markersize=7, linestyle="none", capsize=3)
        ax.set_xscale("log")
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.set(xlabel="ensemble size N (MC-dropout samples)", ylabel=metric.label)
    handles = [Line2D([], [], color=STYLE[m][0], marker=None if m[0] == "dnn" else STYLE[m][1],
                      linestyle="--" if m[0] == "dnn" else "-", label=_label(*m) + (" (N = 1)" if m[0] == "dnn" else ""))
               for m in MODELS]
    handles += [Line2D([], [], color="grey", linewidth=8, alpha=0.3, label="ours: mean ± std over seeds")]
    if table["paper"].notna().any():
        handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="white", linestyle="none",
                              label="paper: figure reading ± precision"))
    axes[-1].legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize="medium")
    _save_png(fig, path)
    return fig
