"""``reproduce``'s parts: the paper's figure readings, the scales, the ours-vs-paper table, the figure, bad input.

Expected readings are those of ../shared/reference/paper.md §6 (Fig. 2 & 3 and Fig. 9 of the paper).
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from conftest import assert_png
from smoothbench.errors import UserError
from smoothbench.pipelines.reproduce import ReproduceRequest
from smoothbench.reproduce.compare import TABLE_COLUMNS, compare, curves, paper_readings
from smoothbench.reproduce.draw import draw_figure
from smoothbench.reproduce.grid import FIGURES, SCALES, Cell, grid, train_config
from smoothbench.training.config import resolve_config


def test_fig2_readings_are_the_papers():
    readings = paper_readings("paper-fig2", "cifar100")
    assert len(readings) == 2 * 3 + 2 * 8 * 3  # deterministic at N = 1; MC dropout at 8 sizes; NLL, Acc, ECE
    assert readings["source"].str.startswith("readings of the published figure").all()
    point = readings.set_index(["method", "smoothing", "ensemble_size", "metric"])["value"]
    assert point[("mcdo", "none", 50, "nll")] == 0.850 and point[("mcdo", "none", 50, "acc")] == 77.4
    assert point[("mcdo", "tanh-blur", 2, "acc")] == 78.2 and point[("mcdo", "tanh-blur", 1, "ece")] == 5.2
    assert point[("dnn", "tanh-blur", 1, "nll")] == 0.863 and point[("dnn", "none", 1, "ece")] == 5.1
    assert sorted(readings.loc[readings["method"] == "mcdo", "ensemble_size"].unique()) == [1, 2, 3, 4, 5, 10, 30, 50]
    percent = readings["unit"] == "%"
    assert (readings.loc[percent, "precision"] == 0.3).all() and set(readings.loc[~percent, "metric"]) == {"nll"}
    assert paper_readings("paper-fig2", "cifar10").empty and paper_readings("paper-fig9", "cifar10").empty


def test_fig9_readings_are_the_papers():
    readings = paper_readings("paper-fig9", "cifar100")
    point = readings.set_index(["method", "smoothing", "ensemble_size", "metric"])["value"]
    assert [point[("mcdo", "none", n, "mCE")] for n in (1, 2, 50)] == [90.6, 88.7, 86.8]
    assert [point[("mcdo", "tanh-blur", n, "mCECE")] for n in (1, 50)] == [48.1, 33.5]
    assert point[("dnn", "tanh-blur", 1, "mCNLL")] == 62.1 and point[("dnn", "none", 1, "mCE")] == 86.5
    assert len(readings) == 20 and (readings["unit"] == "%").all() and (readings["precision"] == 0.3).all()


def test_full_scale_is_the_papers_recipe_and_tiny_says_what_it_shrinks(tmp_path):
    full = resolve_config(train_config(Cell("mcdo", "tanh-blur", 2), SCALES["full"], dataset="cifar100",
                                       data_dir=None, run_dir=tmp_path))
    assert (full.warmup_epochs, full.epochs, full.milestones, full.gamma) == (1, 200, (60, 120, 160), 0.2)
    assert (full.batch_size, full.lr, full.weight_decay, full.subset, full.seed) == (128, 0.1, 5e-4, None, 2)
    assert full.model.width is None and full.resume  # the family's width, 64
    assert "x1/8" in SCALES["tiny"].describe() and "x1/50" in SCALES["tiny"].describe()
    assert [c.name("cifar10", SCALES["tiny"]) for c in grid(2)][::4] == [
        "cifar10-tiny-resnet18-dnn-none-seed0", "cifar10-tiny-resnet18-dnn-none-seed1"]
    from smoothbench.cli_workflows import reproduce  # its --help states the scales (without importing them: it stays cheap)

    for scale in (SCALES["tiny"], SCALES["small"]):
        assert f"{scale.name}: width {scale.width} " in reproduce.__doc__
        assert f"1 + {scale.epochs} epochs" in reproduce.__doc__ and f"{scale.train_subset:,} training" in reproduce.__doc__
    assert ", ".join(SCALES["tiny"].corruptions.split(",")) in reproduce.__doc__


def _points(figure: str) -> pd.DataFrame:
    """Two seeds of every model at the figure's sizes (fractions, as result rows hold them)."""
    spec = FIGURES[figure]
    rows = []
    for cell in grid(2):
        for n in spec.sizes if cell.method == "mcdo" else (1,):
            base = 0.7 + 0.01 * cell.seed + 0.001 * n
            rows.append({"method": cell.method, "smoothing": cell.smoothing, "train_seed": cell.seed,
                         "ensemble_size": n, **{m.column: base for m in spec.metrics}})
    return pd.DataFrame(rows)


def test_curves_and_the_table_against_the_paper(tmp_path):
    figure = FIGURES["paper-fig2"]
    ours = curves(_points("paper-fig2"), figure)
    table = compare(ours, paper_readings("paper-fig2", "cifar100"), figure="paper-fig2", dataset="cifar100",
                    scale="tiny")
    assert list(table.columns) == TABLE_COLUMNS
    acc = table.set_index(["method", "smoothing", "ensemble_size", "metric"]).loc[("mcdo", "none", 50, "acc")]
    # seeds 0 and 1: 0.75 and 0.76 → 75.5 % ± 0.7071 (sample std), against the paper's 77.4
    assert (acc["ours_mean"], acc["ours_std"], acc["n_seeds"]) == pytest.approx((75.5, math.sqrt(0.5), 2))
    assert acc["difference"] == pytest.approx(75.5 - 77.4) and acc["paper_precision"] == 0.3
    nll = table[(table["metric"] == "nll") & (table["method"] == "dnn") & (table["smoothing"] == "none")]
    assert nll["ours_mean"].item() == pytest.approx(0.706) and nll["unit"].item() == "nats"  # not scaled
    twenty = table[(table["ensemble_size"] == 20) & (table["method"] == "mcdo")]
    assert len(twenty) == 6 and twenty["paper"].isna().all()  # N = 20 is not in the paper's figure
    assert table["paper"].notna().sum() == 54  # every reading is matched
    one_seed = curves(_points("paper-fig2").query("train_seed == 0"), figure)
    assert one_seed["ours_std"].isna().all() and (one_seed["n_seeds"] == 1).all()
    path = tmp_path / "fig2.png"
    draw_figure(table, figure, path, title="test", note="a note")
    assert_png(path)
    fig9 = FIGURES["paper-fig9"]
    table9 = compare(curves(_points("paper-fig9"), fig9), paper_readings("paper-fig9", "cifar10"),
                     figure="paper-fig9", dataset="cifar10", scale="tiny")
    assert table9["paper"].isna().all() and len(table9) == 3 * (2 + 2 * 8)  # no CIFAR-10 readings: ours only
    draw_figure(table9, fig9, tmp_path / "fig9.png", title="test")
    assert_png(tmp_path / "fig9.png")


@pytest.mark.parametrize(("changes", "message"), [
    ({"figure": "paper-fig3"}, "unknown figure 'paper-fig3'; choose paper-fig2 or paper-fig9"),
    ({"scale": "huge"}, "unknown scale 'huge'; choose tiny, small, full"),
    ({"seeds": 0}, "seeds must be at least 1, got 0"),
    ({"subset": 0}, "subset must be at least 1, got 0"),
    ({"dataset": "imagenet"}, "dataset must be cifar10 or cifar100"),
    ({"c_data_dir": "CIFAR-10-C"}, "c_data_dir is for paper-fig9"),
])
def test_bad_requests_are_one_line(changes, message):
    settings = {"figure": "paper-fig2", "scale": "tiny", **changes}
    with pytest.raises(UserError, match=message):
        ReproduceRequest(**settings)
