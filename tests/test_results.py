"""Result tables (atomic, de-duplicated writes), corruption summaries and baselines.

Expected numbers are derived by hand in the comments, or come from ../shared/reference (paper.md, peers.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from smoothbench import results
from smoothbench.errors import UserError

BASELINE_DIR = Path(os.environ.get("SMOOTHBENCH_BASELINE_DIR",
                                   Path(__file__).resolve().parents[2] / "shared" / "data" / "baselines"))
CIFAR100_CSV = BASELINE_DIR / "cifar100_alexnet_dnn_corrupted.csv"
IMAGENET_CSV = BASELINE_DIR / "imagenet_alexnet_dnn_corrupted.csv"
needs_baselines = pytest.mark.skipif(
    not CIFAR100_CSV.is_file(), reason=f"paper AlexNet CSVs not in {BASELINE_DIR} (set SMOOTHBENCH_BASELINE_DIR)")
KEYS = ("model", "ensemble_size", "subset")


# ---------------------------------------------------------------------------------------------------------
# writing tables
@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_write_rows_replaces_same_key_and_keeps_column_order(tmp_path, suffix):
    path = tmp_path / f"out.{suffix}"
    results.write_rows(path, [{"model": "a", "ensemble_size": 1, "subset": None, "acc": 0.5, "nll": 1.0},
                              {"model": "b", "ensemble_size": 1, "subset": None, "acc": 0.6, "nll": 0.9}],
                       key_columns=KEYS)
    # b is rewritten with an equal key in other types (1.0 / ""), c is new and brings a new column;
    # c appears twice in this batch: the last one wins
    results.write_rows(path, [{"model": "b", "ensemble_size": 1.0, "subset": "", "acc": 0.7, "nll": 0.8, "top5": 0.9},
                              {"model": "c", "ensemble_size": 5, "subset": None, "acc": 0.1, "nll": 2.0, "top5": 0.3},
                              {"model": "c", "ensemble_size": 5, "subset": None, "acc": 0.2, "nll": 1.9, "top5": 0.4}],
                       key_columns=KEYS)
    # rows without a key column count as empty there: this replaces a
    results.write_rows(path, pd.DataFrame([{"model": "a", "ensemble_size": 1, "acc": 0.55}]), key_columns=KEYS)
    table = results.read_results(path)
    assert list(table.columns) == ["model", "ensemble_size", "subset", "acc", "nll", "top5", "result_file"]
    assert list(table["model"]) == ["a", "b", "c"]  # b replaced in place, c appended once
    assert list(table["acc"]) == [0.55, 0.7, 0.2]
    assert math.isnan(table["top5"][0])
    if suffix == "json":
        raw = json.loads(path.read_text())
        assert raw[0]["top5"] is None and raw[0]["subset"] is None  # NaN written as null


def test_write_rows_is_atomic_when_writing_fails(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("boom")

    for name in ("out.csv", "out.json"):
        path = tmp_path / name
        results.write_rows(path, [{"model": "a", "ensemble_size": 1, "subset": None, "acc": 0.5}], key_columns=KEYS)
        before = path.read_bytes()
        bad = [{"model": "b", "ensemble_size": 1, "subset": None, "acc": 0.6},
               {"model": "c", "ensemble_size": 1, "subset": None, "acc": Unprintable()}]
        with pytest.raises((RuntimeError, TypeError)):
            results.write_rows(path, bad, key_columns=KEYS)
        assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.json"]  # no temp files left


def test_write_rows_refuses_a_foreign_file(tmp_path):
    foreign = tmp_path / "notes.csv"
    foreign.write_text("name,value\nx,1\n")
    garbage = tmp_path / "blob.json"
    garbage.write_bytes(b"\x00\xff not json")
    for path in (foreign, garbage):
        before = path.read_bytes()
        with pytest.raises(UserError, match="give another"):
            results.write_rows(path, [{"model": "a", "ensemble_size": 1, "subset": None, "acc": 0.5}], key_columns=KEYS)
        with pytest.raises(UserError):
            results.done_keys(path, KEYS)
        assert path.read_bytes() == before
    with pytest.raises(UserError, match="cannot tell the format"):
        results.write_rows(tmp_path / "out.txt", [{"model": "a", "ensemble_size": 1, "subset": None}], key_columns=KEYS)


def test_append_cell_and_done_keys_let_a_sweep_resume(tmp_path):
    path = tmp_path / "corrupt.csv"
    assert results.done_keys(path, results.CORRUPT_KEYS) == set()
    cell = {"model": "r18", "checkpoint_sha256": "0123456789", "dataset": "cifar10-c", "split": "test",
            "ensemble_size": 5, "members": 1, "mc_samples": 5, "subset": "", "corruption": "fog", "severity": 3,
            "corruption_params": "cifar", "source": "released", "acc": 0.7}
    results.append_cell(path, [cell], results.CORRUPT_KEYS)
    results.append_cell(path, [cell | {"acc": 0.71}], results.CORRUPT_KEYS)  # a rerun replaces, never duplicates
    assert len(pd.read_csv(path)) == 1
    done = results.done_keys(path, results.CORRUPT_KEYS)
    # a probe built before the cell runs: subset comes from the settings (None == ""), ints vs floats agree
    probe = {k: v for k, v in cell.items() if k not in ("subset", "acc")} | {"ensemble_size": 5.0}
    assert results.row_key(probe, results.CORRUPT_KEYS, SimpleNamespace(subset=None)) in done
    assert results.row_key(probe | {"severity": 4}, results.CORRUPT_KEYS, SimpleNamespace(subset=None)) not in done
    assert pd.read_csv(path, dtype=str)["checkpoint_sha256"][0] == "0123456789"


def test_read_results_over_folders_matches_reading_the_files(tmp_path):
    eval_file = tmp_path / "runs" / "a" / "eval.csv"
    corrupt_file = tmp_path / "runs" / "b" / "nested" / "corrupt.json"
    results.write_rows(eval_file, [{"model": "a", "ensemble_size": k, "subset": None, "acc": 0.9 - k / 100}
                                   for k in (1, 5)], key_columns=KEYS)
    results.write_rows(corrupt_file, [{"model": "b", "ensemble_size": 1, "subset": None, "corruption": "fog",
                                       "severity": 1, "acc": 0.5}], key_columns=KEYS)
    (tmp_path / "runs" / "notes.csv").write_text("name,value\nx,1\n")  # not a result table: skipped
    (tmp_path / "runs" / "b" / "config.json").write_text('{"lr": 0.1}')  # neither
    (tmp_path / "runs" / "b" / "broken.csv").write_bytes(b"\xff\xfe\x00")
    corrupt_rows = pd.DataFrame(MODEL)  # derived tables next to the results are not read as results
    results.write_rows(tmp_path / "runs" / "b" / "summary.csv", results.summarize_corruptions(corrupt_rows),
                       key_columns=results.SUMMARY_KEYS)
    results.write_rows(tmp_path / "runs" / "b" / "per_corruption.csv", results.per_corruption_table(corrupt_rows),
                       key_columns=("model", "corruption"))
    by_dir = results.read_results(tmp_path / "runs")
    by_files = results.read_results([eval_file, corrupt_file])
    mixed = results.read_results([tmp_path / "runs" / "a", corrupt_file])
    for other in (by_files, mixed):
        pd.testing.assert_frame_equal(by_dir.sort_values(["model", "ensemble_size"]).reset_index(drop=True),
                                      other.sort_values(["model", "ensemble_size"]).reset_index(drop=True))
    assert len(by_dir) == 3
    assert set(by_dir["result_file"]) == {str(eval_file), str(corrupt_file)}
    with pytest.raises(UserError, match="not a smoothbench result table"):
        results.read_results(tmp_path / "runs" / "notes.csv")
    with pytest.raises(UserError, match="does not exist"):
        results.read_results(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no smoothbench result tables"):
        results.read_results(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------------
# corruption summaries
def _cells(model: str, clean: dict, cells: dict, **extra) -> list[dict]:
    """Corruption rows: ``cells[(corruption, severity)] = (acc, nll, ece)``; ``clean = {acc, nll, ece}``."""
    common = {"model": model, "checkpoint_sha256": model * 4, "dataset": "cifar100-c", "ensemble_size": 1, **extra}
    rows = [{**common, "corruption": "clean", "severity": 0, "source": "clean", **clean}]
    for (corruption, severity), (acc, nll, ece) in cells.items():
        rows.append({**common, "corruption": corruption, "severity": severity, "source": "released", "acc": acc,
                     "nll": nll, "ece": ece, "data_fingerprint": f"{corruption}{severity}"})
    return rows


MODEL = _cells("m", {"acc": 0.9, "nll": 0.4, "ece": 0.03},
               {("fog", 1): (0.8, 0.5, 0.05), ("fog", 2): (0.6, 1.0, 0.10),
                ("snow", 1): (0.7, 0.8, 0.08), ("snow", 2): (0.5, 1.2, 0.16)})
BASELINE = pd.DataFrame([
    {"corruption": "clean", "severity": 0, "acc": 0.65, "nll": 1.5, "ece": 0.1},
    {"corruption": "fog", "severity": 1, "acc": 0.5, "nll": 2.0, "ece": 0.2},
    {"corruption": "fog", "severity": 2, "acc": 0.3, "nll": 3.0, "ece": 0.3},
    {"corruption": "snow", "severity": 1, "acc": 0.4, "nll": 2.5, "ece": 0.25},
    {"corruption": "snow", "severity": 2, "acc": 0.2, "nll": 3.5, "ece": 0.35},
]).assign(baseline_name="hand")


def test_mce_relative_mce_mcnll_mcece_by_hand():
    summary = results.summarize_corruptions(pd.DataFrame(MODEL), BASELINE)
    assert len(summary) == 1
    row = summary.iloc[0]
    # errors: model fog .2,.4  snow .3,.5, clean .1; baseline fog .5,.7  snow .6,.8, clean .35
    # CE: fog .6/1.2 = .5, snow .8/1.4 = 4/7  → mCE = (.5 + 4/7) / 2
    assert row["mCE"] == pytest.approx((0.5 + 4 / 7) / 2)
    # relative: fog (.1+.3)/(.15+.35) = .8, snow (.2+.4)/(.25+.45) = 6/7
    assert row["relative_mCE"] == pytest.approx((0.8 + 6 / 7) / 2)
    # NLL: fog 1.5/5 = .3, snow 2/6 = 1/3;  ECE: fog .15/.5 = .3, snow .24/.6 = .4
    assert row["mCNLL"] == pytest.approx((0.3 + 1 / 3) / 2)
    assert row["mCECE"] == pytest.approx(0.35)
    assert row["cAcc"] == pytest.approx(0.65) and row["cNLL"] == pytest.approx(0.875)
    assert row["cAcc_s1"] == pytest.approx(0.75) and row["cAcc_s2"] == pytest.approx(0.55)
    assert math.isnan(row["cAcc_s3"])
    assert row["clean_acc"] == pytest.approx(0.9)
    assert (row["n_corruptions"], row["corruptions"], row["n_cells"]) == (2, "snow,fog", 4)
    assert row["baseline"] == "hand" and row["source"] == "released"
    table = results.per_corruption_table(pd.DataFrame(MODEL), BASELINE).set_index("corruption")
    assert table.loc["fog", "CE"] == pytest.approx(0.5) and table.loc["snow", "relative_CE"] == pytest.approx(6 / 7)
    assert table.loc["fog", "err"] == pytest.approx(0.3) and table.loc["snow", "n_severities"] == 2


def test_summary_refuses_corruptions_the_baseline_lacks_unless_restricted():
    rows = pd.DataFrame(MODEL + _cells("m", {"acc": 0.9, "nll": 0.4, "ece": 0.03},
                                       {("spatter", 1): (0.7, 0.9, 0.1)})[1:])
    with pytest.raises(UserError, match="spatter"):
        results.summarize_corruptions(rows, BASELINE, corruptions="all")
    for selection in ("common", ["fog", "snow"]):  # spatter is an extra corruption: not in "common"
        summary = results.summarize_corruptions(rows, BASELINE, corruptions=selection)
        assert summary["n_corruptions"][0] == 2 and summary["mCE"][0] == pytest.approx((0.5 + 4 / 7) / 2)
    assert results.summarize_corruptions(rows, corruptions="all")["n_corruptions"][0] == 3
    with pytest.raises(UserError, match="no fog severity 3"):
        more = pd.concat([rows, rows.iloc[[1]].assign(severity=3)], ignore_index=True)
        results.summarize_corruptions(more, BASELINE)


def test_ece_settings_mismatch_leaves_mcece_unknown():
    rows = pd.DataFrame(MODEL).assign(ece_mode="standard", ece_bins=15)
    summary = results.summarize_corruptions(rows, BASELINE.assign(ece_mode="reference", ece_bins=10))
    assert math.isnan(summary["mCECE"][0])
    assert summary["mCNLL"][0] == pytest.approx((0.3 + 1 / 3) / 2)
    same = results.summarize_corruptions(rows, BASELINE.assign(ece_mode="standard", ece_bins=15))
    assert same["mCECE"][0] == pytest.approx(0.35)


# ---------------------------------------------------------------------------------------------------------
# baselines
def test_alexnet_imagenet_c_builtin():
    base = results.load_baseline("alexnet-imagenet-c")
    cells = base[base["severity"] > 0]
    assert cells["corruption"].nunique() == 15 and len(cells) == 75
    # hand sum of peers.md's table: 11.834896 / 15
    assert (1 - cells["acc"]).mean() == pytest.approx(11.834896 / 15, abs=1e-9)
    # the clean row is torchvision's AlexNet (IMAGENET1K_V1), whose published top-1 accuracy ships in its metadata
    from torchvision.models import AlexNet_Weights

    published = AlexNet_Weights.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100
    assert base.loc[base["severity"] == 0, "acc"].item() == pytest.approx(published, abs=1e-9)
    # a model with error .5 everywhere (clean .2): CE_gauss = 2.5/(5 × .886428), rel = 1.5/(5 × (.886428 − .43478))
    cells_in = {(c, s): (0.5, 2.0, 0.1) for c in results.COMMON_CORRUPTIONS for s in range(1, 6)}
    rows = pd.DataFrame(_cells("r50", {"acc": 0.8, "nll": 1.0, "ece": 0.05}, cells_in, dataset="imagenet-c"))
    table = results.per_corruption_table(rows, base).set_index("corruption")
    assert table.loc["gaussian_noise", "CE"] == pytest.approx(0.5 / 0.886428)
    assert table.loc["brightness", "relative_CE"] == pytest.approx(0.3 / (0.564592 - 0.43478))
    summary = results.summarize_corruptions(rows, base)
    assert summary["mCE"][0] == pytest.approx(sum(0.5 / e for e in (
        0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572, 0.819324,
        0.564592, 0.853204, 0.646056, 0.717840, 0.606500)) / 15)
    assert math.isnan(summary["mCNLL"][0]) and math.isnan(summary["mCECE"][0])  # AlexNet NLL/ECE unpublished


@needs_baselines
def test_paper_alexnet_csv_parser():
    base = results.load_baseline(CIFAR100_CSV)
    assert len(base) == 95 and base["corruption"].nunique() == 19
    assert set(base["severity"]) == {1, 2, 3, 4, 5} and (base["ece_mode"] == "reference").all()
    common = base[base["corruption"].isin(results.COMMON_CORRUPTIONS)]
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
    imagenet = results.load_baseline(IMAGENET_CSV)
    assert len(imagenet) == 75 and imagenet["acc"].mean() == pytest.approx(0.1946, abs=5e-5)
    assert imagenet["nll"].mean() == pytest.approx(4.893, abs=5e-4)
    # the built-in name reads the same file from a folder; without the folder it explains what to do
    named = results.load_baseline("paper-alexnet-cifar100", baseline_dir=BASELINE_DIR)
    pd.testing.assert_frame_equal(named, base)
    with pytest.raises(UserError, match="not shipped"):
        results.load_baseline("paper-alexnet-cifar100", baseline_dir=Path("/nonexistent"))
    # the AlexNet rows against themselves: every ratio is 1; no clean row → relative mCE unknown
    rows = base.assign(model="alexnet", dataset="cifar100-c", ensemble_size=1, source="released")
    summary = results.summarize_corruptions(rows, base)
    assert summary["mCE"][0] == pytest.approx(1.0) and summary["mCNLL"][0] == pytest.approx(1.0)
    assert summary["mCECE"][0] == pytest.approx(1.0) and math.isnan(summary["relative_mCE"][0])
    assert summary["cAcc"][0] == pytest.approx(common["acc"].mean())


def test_smoothbench_sweep_file_as_baseline(tmp_path):
    path = tmp_path / "sweep.csv"
    rows = [r | {"split": "test", "members": 1, "mc_samples": 1, "subset": "", "corruption_params": "cifar"}
            for r in MODEL + _cells("other", {"acc": 0.5, "nll": 2.0, "ece": 0.2}, {("fog", 1): (0.4, 2.5, 0.3)})]
    results.write_rows(path, rows, key_columns=results.CORRUPT_KEYS)
    with pytest.raises(UserError, match="exactly one model"):
        results.load_baseline(path)
    base = results.load_baseline(path, model="m")
    assert base["baseline_name"][0] == "m" and len(base) == 5
    summary = results.summarize_corruptions(pd.DataFrame(MODEL), base)  # a model against itself
    assert summary["mCE"][0] == pytest.approx(1.0) and summary["relative_mCE"][0] == pytest.approx(1.0)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(UserError, match="neither"):
        results.load_baseline(foreign)
    with pytest.raises(UserError, match="neither a built-in"):
        results.load_baseline("alexnet-cifar10")
