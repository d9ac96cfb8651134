"""Our curves (mean ± std over training seeds) and their comparison with the paper's figure readings."""

from __future__ import annotations

from importlib import resources

import pandas as pd

from smoothbench.reproduce.grid import Figure

#: The columns that identify one point of a curve.
POINT = ["method", "smoothing", "ensemble_size", "metric"]
#: The columns of the ours-vs-paper table, in order.
TABLE_COLUMNS = ["figure", "dataset", "scale", *POINT, "unit", "ours_mean", "ours_std", "n_seeds", "paper",
                 "paper_precision", "difference"]


def paper_readings(figure: str, dataset: str) -> pd.DataFrame:
    """The packaged readings of the paper's ``figure`` for ``dataset`` (``data/README.md`` says where they come
    from and how precise they are); empty where the paper has none (e.g. CIFAR-10)."""
    name = figure.replace("-", "_") + ".csv"
    with resources.files("smoothbench.reproduce").joinpath("data", name).open("r", encoding="utf-8") as handle:
        readings = pd.read_csv(handle)
    return readings[readings["dataset"] == dataset].reset_index(drop=True)


def curves(points: pd.DataFrame, figure: Figure) -> pd.DataFrame:
    """Mean, sample std (NaN for one seed) and seed count per model, ensemble size and metric, in the
    figure's units.

    ``points`` holds one row per (method, smoothing, train_seed, ensemble_size) with the figure's metric
    columns as fractions (result rows or corruption summaries)."""
    long = points.melt(id_vars=["method", "smoothing", "train_seed", "ensemble_size"],
                       value_vars=[m.column for m in figure.metrics], var_name="metric", value_name="value")
    factor = {m.column: m.factor for m in figure.metrics}
    long["value"] = pd.to_numeric(long["value"], errors="coerce") * long["metric"].map(factor)
    stats = long.groupby(POINT, sort=False)["value"].agg(ours_mean="mean", ours_std="std", n_seeds="count")
    out = stats.reset_index()
    out["unit"] = out["metric"].map({m.column: m.unit for m in figure.metrics})
    return out


def compare(ours: pd.DataFrame, readings: pd.DataFrame, *, figure: str, dataset: str, scale: str) -> pd.DataFrame:
    """The ours-vs-paper table: every point we measured and every point the paper's figure gives, with
    ``difference`` = ours − paper (in the figure's units) where both exist."""
    paper = readings.rename(columns={"value": "paper", "precision": "paper_precision"})
    table = ours.merge(paper[POINT + ["unit", "paper", "paper_precision"]], on=POINT, how="outer",
                       suffixes=("", "_paper"))
    table["unit"] = table["unit"].fillna(table.pop("unit_paper"))
    table["difference"] = table["ours_mean"] - table["paper"]
    table["n_seeds"] = table["n_seeds"].fillna(0).astype(int)
    table = table.assign(figure=figure, dataset=dataset, scale=scale)
    order = {metric: i for i, metric in enumerate(dict.fromkeys(ours["metric"]))}
    table = table.sort_values(["method", "smoothing", "metric", "ensemble_size"],
                              key=lambda c: c.map(order) if c.name == "metric" else c)
    return table[TABLE_COLUMNS].reset_index(drop=True)
