"""The packaged AlexNet corruption baselines (paper-alexnet-cifar10/-cifar100/-imagenet) and the 17-column CSV.

Expected numbers are those stated in ../shared/reference/paper.md §4 and ../shared/data/baselines/README.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED
from smoothbench.errors import UserError
from smoothbench.results.baselines import PAPER_BASELINE_FILES, load_baseline
from smoothbench.results.summaries import summarize_corruptions
from smoothbench.schema import COMMON_CORRUPTIONS

PACKAGED = Path(__file__).resolve().parents[1] / "smoothbench" / "results" / "data"


@pytest.fixture(autouse=True)
def packaged_only(monkeypatch):
    """The built-in names read the packaged copies unless an override folder is set: unset it here."""
    monkeypatch.delenv("SMOOTHBENCH_BASELINE_DIR", raising=False)


@pytest.mark.parametrize("filename", sorted(PAPER_BASELINE_FILES.values()))
def test_packaged_files_are_the_authors_bytes(filename):
    shared = SHARED / "data" / "baselines" / filename
    if not shared.is_file():
        pytest.skip(f"no shared copy of {filename} to compare with")
    assert (PACKAGED / filename).read_bytes() == shared.read_bytes()


def test_cifar10_baseline_has_17_columns_with_the_signed_ece():
    base = load_baseline("paper-alexnet-cifar10")
    # baselines README: 15 corruptions x 5 severities = 75 rows, 17 columns (the 16 + a last `ecse`)
    assert len(base) == 75 and set(base["corruption"]) == set(COMMON_CORRUPTIONS)
    assert set(base["severity"]) == {1, 2, 3, 4, 5} and (base["ece_mode"] == "reference").all()
    assert "ece_signed" in base.columns and base["baseline_name"][0] == "cifar10_alexnet_dnn_corrupted"
    # "here it repeats or nearly repeats ece": never above it, and within about a tenth of a point
    assert (base["ece_signed"] <= base["ece"] + 1e-12).all()
    assert (base["ece"] - base["ece_signed"]).abs().max() < 2e-3
    first = base.iloc[0]  # the file's first line: severity 1 gaussian_noise, acc 0.8062, nll 0.71917
    assert (first["corruption"], first["severity"], first["acc"]) == ("gaussian_noise", 1, 0.8062)
    assert first["nll"] == pytest.approx(0.7191694673797993)
    # the AlexNet against itself: every ratio is 1
    rows = base.assign(model="alexnet", dataset="cifar10-c", ensemble_size=1, source="released")
    summary = summarize_corruptions(rows, base)
    assert summary[["mCE", "mCNLL", "mCECE"]].iloc[0].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_packaged_cifar100_and_imagenet_baselines_match_the_paper_notes():
    base = load_baseline("paper-alexnet-cifar100")
    assert len(base) == 95 and base["corruption"].nunique() == 19 and "ece_signed" not in base.columns
    common = base[base["corruption"].isin(COMMON_CORRUPTIONS)]
    # paper.md §4: CIFAR-100 AlexNet over 15 x 5: Acc 41.01 %, NLL 4.012, ECE 31.2 %; gaussian 71.3 / 6.64 / 46.8
    assert (common["acc"].mean(), common["nll"].mean(), common["ece"].mean()) == pytest.approx(
        (0.4101, 4.012, 0.312), abs=5e-4)
    gauss = common[common["corruption"] == "gaussian_noise"]
    assert (1 - gauss["acc"].mean(), gauss["nll"].mean(), gauss["ece"].mean()) == pytest.approx(
        (0.713, 6.64, 0.468), abs=6e-3)
    imagenet = load_baseline("paper-alexnet-imagenet")  # 75 rows; Acc 19.46 %, NLL 4.893, brightness err 59.6 %
    assert len(imagenet) == 75 and imagenet["acc"].mean() == pytest.approx(0.1946, abs=5e-5)
    assert imagenet["nll"].mean() == pytest.approx(4.893, abs=5e-4)
    bright = imagenet[imagenet["corruption"] == "brightness"]
    assert 1 - bright["acc"].mean() == pytest.approx(0.596, abs=5e-4)


def test_override_folder_and_17_column_file(tmp_path, monkeypatch):
    lines = (PACKAGED / "cifar10_alexnet_dnn_corrupted.csv").read_text().splitlines(keepends=True)
    fields = lines[0].split(",")
    fields[5] = "0.5"  # acc of severity 1 gaussian_noise
    (tmp_path / "cifar10_alexnet_dnn_corrupted.csv").write_text(",".join(fields) + "".join(lines[1:]))
    monkeypatch.setenv("SMOOTHBENCH_BASELINE_DIR", str(tmp_path))
    assert load_baseline("paper-alexnet-cifar10")["acc"][0] == 0.5  # the override folder wins
    with pytest.raises(UserError, match="cifar100_alexnet_dnn_corrupted.csv not found"):
        load_baseline("paper-alexnet-cifar100")  # an override folder without the file says so
    given = load_baseline(tmp_path / "cifar10_alexnet_dnn_corrupted.csv")  # a 17-column file given by path
    assert len(given) == 75 and given["acc"][0] == 0.5 and "ece_signed" in given.columns
    cut = tmp_path / "cut.csv"
    cut.write_text(",".join(fields[:17]) + "\n" + ",".join(fields[:16]) + "\n")
    with pytest.raises(UserError, match="16- or 17-column"):
        load_baseline(cut)
    pd.testing.assert_frame_equal(load_baseline("paper-alexnet-cifar10", baseline_dir=PACKAGED),
                                  load_baseline(PACKAGED / "cifar10_alexnet_dnn_corrupted.csv"))
