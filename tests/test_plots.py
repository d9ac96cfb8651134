"""Figures written as real PNG files from metrics output and tidy result rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from smoothbench import metrics, plots
from smoothbench.errors import UserError


def read_png(path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def bins_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.where(rng.random(400) < 0.6, probs.argmax(axis=1), rng.integers(0, 10, 400))
    return metrics.reliability_bins(probs, labels, bins=10)


def test_reliability_diagram_png_and_bars(tmp_path):
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    table = bins_table()
    assert (table["count"] == 0).any(), "the case should have an empty bin"
    fig = plots.reliability_diagram(table, tmp_path / "rel.png", title="test")
    pixels = read_png(tmp_path / "rel.png")
    assert pixels.shape == (420, 1000, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # not a blank canvas
    assert [p.name for p in tmp_path.iterdir()] == ["rel.png"]  # no temp file left
    assert plt.get_fignums() == open_before  # no pyplot figure created

    nonempty = table[table["count"] > 0]
    rel_ax, hist_ax = fig.axes
    accuracy_bars = rel_ax.containers[0].patches
    assert [b.get_height() for b in accuracy_bars] == pytest.approx(nonempty["accuracy"].tolist())
    assert [b.get_x() + b.get_width() / 2 for b in accuracy_bars] == pytest.approx(
        ((nonempty["lower"] + nonempty["upper"]) / 2).tolist()
    )
    gap_bars = rel_ax.containers[1].patches
    assert [b.get_y() + b.get_height() for b in gap_bars] == pytest.approx(nonempty["confidence"].tolist())
    hist_bars = hist_ax.containers[0].patches
    assert [b.get_height() for b in hist_bars] == pytest.approx((nonempty["count"] / 400).tolist())


def test_reliability_diagram_follows_table(tmp_path):
    table = bins_table()
    plots.reliability_diagram(table, tmp_path / "a.png")
    changed = table.copy()
    changed["accuracy"] = changed["accuracy"] * 0.5
    plots.reliability_diagram(changed, tmp_path / "b.png")
    assert not np.array_equal(read_png(tmp_path / "a.png"), read_png(tmp_path / "b.png"))


def test_reliability_diagram_rejects_wrong_table(tmp_path):
    with pytest.raises(UserError, match="missing column"):
        plots.reliability_diagram(pd.DataFrame({"count": [1]}), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_metric_vs_ensemble_size(tmp_path):
    rows = [
        {"model": name, "ensemble_size": size, "seed": seed, "nll": base / size + seed * 0.1}
        for name, base in (("mcdo", 1.0), ("mcdo+smooth", 0.8))
        for size in (1, 2, 5, 50)
        for seed in (0, 1)
    ]
    fig = plots.metric_vs_ensemble_size(pd.DataFrame(rows), "nll", tmp_path / "size.png")
    pixels = read_png(tmp_path / "size.png")
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"mcdo", "mcdo+smooth"}
    assert list(lines["mcdo"].get_xdata()) == [1, 2, 5, 50]
    # mean over seeds: 1/size + 0.05
    assert list(lines["mcdo"].get_ydata()) == pytest.approx([1.05, 0.55, 0.25, 0.07])


def test_metric_vs_severity_means_over_corruptions(tmp_path):
    rows = []
    for size in (1, 4):
        for severity in range(6):
            corruptions = ["none"] if severity == 0 else ["gaussian_noise", "fog"]
            for i, corruption in enumerate(corruptions):
                acc = 0.9 - 0.1 * severity - 0.02 * i + 0.01 * size
                rows.append({"model": "resnet18", "ensemble_size": size, "corruption": corruption,
                             "severity": severity, "acc": acc})
    fig = plots.metric_vs_severity(pd.DataFrame(rows), "acc", tmp_path / "sev.png")
    read_png(tmp_path / "sev.png")
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert set(lines) == {"resnet18 (ensemble_size=1)", "resnet18 (ensemble_size=4)"}
    # severity 0: .9 + .01; severity s ≥ 1: mean of (.9 − .1s + .01) and (.9 − .1s − .02 + .01)
    expected = [0.91] + [0.9 - 0.1 * s + 0.01 - 0.01 for s in range(1, 6)]
    assert list(lines["resnet18 (ensemble_size=1)"].get_ydata()) == pytest.approx(expected)


def test_metric_plots_reject_missing_metric(tmp_path):
    df = pd.DataFrame({"model": ["a"], "ensemble_size": [1], "acc": [0.5]})
    with pytest.raises(UserError, match="nll"):
        plots.metric_vs_ensemble_size(df, "nll", tmp_path / "x.png")
    with pytest.raises(UserError, match="severity"):
        plots.metric_vs_severity(df, "acc", tmp_path / "x.png")
    with pytest.raises(UserError, match="no rows"):
        plots.metric_vs_ensemble_size(df.iloc[:0], "acc", tmp_path / "x.png")
