"""Corruption baselines: the built-in ImageNet-C AlexNet, the paper's AlexNet CSVs and sweep files.

Expected numbers come from ../shared/reference (paper.md, peers.md) or are derived by hand in the comments.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from corruption_data import MODEL, corruption_rows
from smoothbench.errors import UserError
from smoothbench.results.baselines import load_baseline
from smoothbench.results.store import write_rows
from smoothbench.results.summaries import per_corruption_table, summarize_corruptions
from smoothbench.schema import COMMON_CORRUPTIONS, CORRUPTION_ROW_KEY

BASELINE_DIR = Path(os.environ.get("SMOOTHBENCH_BASELINE_DIR",
                                   Path(__file__).resolve().parents[2] / "shared" / "data" / "baselines"))
CIFAR100_CSV = BASELINE_DIR / "cifar100_alexnet_dnn_corrupted.csv"
IMAGENET_CSV = BASELINE_DIR / "imagenet_alexnet_dnn_corrupted.csv"
needs_baselines = pytest.mark.skipif(
    not CIFAR100_CSV.is_file(), reason=f"paper AlexNet CSVs not in {BASELINE_DIR} (set SMOOTHBENCH_BASELINE_DIR)")


def test_alexnet_imagenet_c_builtin():
    base = load_baseline("alexnet-imagenet-c")
    cells = base[base["severity"] > 0]
    assert cells["corruption"].nunique() == 15 and len(cells) == 75
    # hand sum of peers.md's table: 11.834896 / 15
    assert (1 - cells["acc"]).mean() == pytest.approx(11.834896 / 15, abs=1e-9)
    # the clean row is torchvision's AlexNet (IMAGENET1K_V1), whose published top-1 accuracy ships in its metadata
    from torchvision.models import AlexNet_Weights

    published = AlexNet_Weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100
    assert base.loc[base["severity"] == 0, "acc"].item() == pytest.approx(published, abs=1e-9)
    # a model with error .5 everywhere (clean .2): CE_gauss = 2.5/(5 × .886428), rel = 1.5/(5 × (.886428 − .43478))
    cells_in = {(c, s): (0.5, 2.0, 0.1) for c in COMMON_CORRUPTIONS for s in range(1, 6)}
    rows = pd.DataFrame(corruption_rows("r50", {"acc": 0.8, "nll": 1.0, "ece": 0.05}, cells_in, dataset="imagenet-c"))
    table = per_corruption_table(rows, base).set_index("corruption")
    assert table.loc["gaussian_noise", "CE"] == pytest.approx(0.5 / 0.886428)
    assert table.loc["brightness", "relative_CE"] == pytest.approx(0.3 / (0.564592 - 0.43478))
    summary = summarize_corruptions(rows, base)
    assert summary["mCE"][0] == pytest.approx(sum(0.5 / e for e in (
        0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572, 0.819324,
        0.564592, 0.853204, 0.646056, 0.717840, 0.606500)) / 15)
    assert math.isnan(summary["mCNLL"][0]) and math.isnan(summary["mCECE"][0])  # AlexNet NLL/ECE unpublished


@needs_baselines
def test_paper_alexnet_csv_parser():
    base = load_baseline(CIFAR100_CSV)
    assert len(base) == 95 and base["corruption"].nunique() == 19
    assert set(base["severity"]) == {1, 2, 3, 4, 5} and (base["ece_mode"] == "reference").all()
    common = base[base["corruption"].isin(COMMON_CORRUPTIONS)]
    assert len(common) == 75
    # paper.md §4: CIFAR-100 AlexNet over 15 × 5: Acc 41.01 %, NLL 4.012, ECE 31.2 %, Brier 0.879
    assert common["acc"].mean() == pytest.approx(0.4101, abs=5e-5)
    assert common["nll"].mean() == pytest.approx(4.012, abs=5e-4)
    assert common["ece"].mean() == pytest.approx(0.312, abs=5e-4)
    assert common["brier"].mean() == pytest.approx(0.879, abs=5e-4)
    # per-corruption normalisers (paper.md): gaussian 71.3 / 6.64 / 46.8
    gauss = common[common["corruption"] == "gaussian_noise"]
    assert (1 - gauss["acc"].mean(), gauss["nll"].mean(), gauss["ece"].mean()) == pytest.approx(
        (0.713, 6.64, 0.468), abs=6e-3)
    imagenet = load_baseline(IMAGENET_CSV)
    assert len(imagenet) == 75 and imagenet["acc"].mean() == pytest.approx(0.1946, abs=5e-5)
    assert imagenet["nll"].mean() == pytest.approx(4.893, abs=5e-4)
    # the built-in name reads the same file from a folder (an override of the packaged copy); a folder
    # without the file explains what to do
    named = load_baseline("paper-alexnet-cifar100", baseline_dir=BASELINE_DIR)
    pd.testing.assert_frame_equal(named, base)
    with pytest.raises(UserError, match="not found"):
        load_baseline("paper-alexnet-cifar100", baseline_dir=Path("/nonexistent"))
    # the AlexNet rows against themselves: every ratio is 1; no clean row → relative mCE unknown
    rows = base.assign(model="alexnet", dataset="cifar100-c", ensemble_size=1, source="released")
    summary = summarize_corruptions(rows, base)
    assert summary["mCE"][0] == pytest.approx(1.0) and summary["mCNLL"][0] == pytest.approx(1.0)
    assert summary["mCECE"][0] == pytest.approx(1.0) and math.isnan(summary["relative_mCE"][0])
    assert summary["cAcc"][0] == pytest.approx(common["acc"].mean())


def test_smoothbench_sweep_file_as_baseline(tmp_path):
    path = tmp_path / "sweep.csv"
    rows = [r | {"split": "test", "members": 1, "mc_samples": 1, "subset": "", "corruption_params": "cifar"}
            for r in MODEL + corruption_rows("other", {"acc": 0.5, "nll": 2.0, "ece": 0.2}, {("fog", 1): (0.4, 2.5, 0.3)})]
    write_rows(path, rows, key_columns=CORRUPTION_ROW_KEY)
    with pytest.raises(UserError, match="exactly one model"):
        load_baseline(path)
    base = load_baseline(path, model="m")
    assert base["baseline_name"][0] == "m" and len(base) == 5
    summary = summarize_corruptions(pd.DataFrame(MODEL), base)  # a model against itself
    assert summary["mCE"][0] == pytest.approx(1.0) and summary["relative_mCE"][0] == pytest.approx(1.0)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UserError, match="neither"):
        load_baseline(foreign)
    with pytest.raises(UserError, match="neither a built-in"):
        load_baseline("alexnet-cifar10")
