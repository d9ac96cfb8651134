"""Evaluation subsets (issue 13 §4): ``--subset N`` of a test split is a class-balanced sample drawn from a fixed
seed, the same images for every command and every MC-dropout seed; ``--subset-file`` evaluates the images a
published list names, and its SHA-256 keys the rows.

The model is an untrained narrow MC-dropout ResNet-18 on the embedded synthetic set: the numbers mean nothing,
but every comparison here is exact (same images, same settings, same masks → same rows).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_one_line_error, run_cli
from smoothbench import create_model
from smoothbench.corruptions import corrupt
from smoothbench.data import NORMALIZATION, ResidentImages, get_dataset
from smoothbench.data.subset import EVAL_SUBSET_SEED, sample_indices, stratified_indices
from smoothbench.errors import UserError
from smoothbench.evaluation.corruption_cells import CorruptionSweep
from smoothbench.evaluation.members import load_members
from smoothbench.evaluation.scoring import evaluate
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.models.store import save_model
from smoothbench.pipelines.consistency import ConsistencyRequest, run_consistency
from smoothbench.pipelines.corrupt import SweepRequest, run_corruption_sweep
from smoothbench.pipelines.eval import EvalRequest, run_eval
from smoothbench.pipelines.ood import OodRequest, run_ood
from smoothbench.schema import METRICS

#: Metric columns every eval row has (compared exactly between a pipeline and a by-hand evaluation).
ROW_METRICS = ("acc", "top5", "nll", "brier", "entropy", "ece", "ece_signed", "auroc_misclf", "aurc",
               "mutual_information", "expected_entropy", "disagreement")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An untrained MC-dropout ResNet-18 (width 4) for the synthetic set, saved as a model file."""
    torch.manual_seed(0)
    mean, std = NORMALIZATION["synthetic"]
    model = create_model("resnet18", method="mcdo", width=4, num_classes=10, dataset="synthetic", mean=mean, std=std)
    path = tmp_path_factory.mktemp("subset-model") / "mcdo.pt"
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def test_set():
    return get_dataset("synthetic", None, "test")


def settings(**changes) -> EvalSettings:
    return EvalSettings(**({"ensembles": "1,3", "batch_size": 64, "device": "cpu"} | changes))


def eval_rows(model_file, **changes) -> pd.DataFrame:
    return run_eval(EvalRequest([model_file], settings(**changes))).rows


def by_hand(model_file, source, **changes) -> pd.DataFrame:
    """The rows of ``source`` (images picked by hand) evaluated directly, as ``eval`` would."""
    rows, _ = evaluate(load_members([model_file]), source, settings(**changes).on_device(),
                       context={"dataset": "synthetic", "split": "test"})
    return pd.DataFrame(rows)


def assert_same_metrics(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert got["ensemble_size"].tolist() == want["ensemble_size"].tolist()
    for column in ROW_METRICS + ("data_fingerprint", "n_images"):
        np.testing.assert_array_equal(got[column].to_numpy(), want[column].to_numpy(), err_msg=column)  # NaN == NaN


def test_row_metrics_exist():
    assert set(ROW_METRICS) <= set(METRICS)


# ---------------------------------------------------------------------------------------------------------
# --subset N


def test_subset_is_one_balanced_ordered_sample_for_every_command_and_mc_seed(model_file, test_set, tmp_path):
    n = 35
    kept = sample_indices(test_set.labels.numpy(), n, 10, "synthetic test")
    assert kept.tolist() == sorted(kept) and kept.tolist() != list(range(n))
    counts = test_set.labels[kept].bincount(minlength=10).tolist()
    assert max(counts) - min(counts) <= 1 and counts == [4] * 5 + [3] * 5
    assert kept.tolist() == stratified_indices(test_set.labels.numpy(), n, 10, EVAL_SUBSET_SEED, "x").tolist()
    expected = by_hand(model_file, test_set.select(kept))

    rows = eval_rows(model_file, subset=n)
    assert_same_metrics(rows, expected)
    assert (rows["subset"] == n).all() and (rows["subset_sha256"] == "").all()
    # another MC seed: other masks, the same images
    other = eval_rows(model_file, subset=n, seed=5)
    assert other["data_fingerprint"].tolist() == rows["data_fingerprint"].tolist()
    assert other["nll"].tolist() != rows["nll"].tolist()
    assert_same_metrics(other, by_hand(model_file, test_set.select(kept), seed=5))

    # corrupt's clean cell (and its generated cells) are the same images: the clean rows equal eval's
    sweep = CorruptionSweep("synthetic-c", generate=True, corruptions="contrast", severities="1")
    swept = run_corruption_sweep(SweepRequest([model_file], sweep, settings(subset=n), out=tmp_path / "c.csv"))
    clean = swept.rows[swept.rows["severity"] == 0].reset_index(drop=True)
    assert_same_metrics(clean, rows)
    cell = swept.rows[swept.rows["severity"] == 1]
    pixels = corrupt(test_set.select(kept).numpy_nhwc(), "contrast", 1, params="cifar", seed=0)
    made = ResidentImages.from_numpy("synthetic-c", "test", pixels, test_set.labels[kept].numpy(), test_set.classes)
    assert (cell["data_fingerprint"] == made.fingerprint).all()

    # consistency, ood's in-distribution set and the analyses read the same images
    consistency = run_consistency(ConsistencyRequest([model_file], settings(subset=n), out=tmp_path / "k.csv")).rows
    assert (consistency["data_fingerprint"] == rows["data_fingerprint"].iloc[0]).all()
    ood = run_ood(OodRequest([model_file], "noise", "msp", settings(subset=n))).rows
    assert (ood["data_fingerprint"] == rows["data_fingerprint"].iloc[0]).all() and (ood["n_images"] == n).all()


def test_a_full_size_subset_is_the_whole_set(model_file, test_set):
    rows = eval_rows(model_file, subset=len(test_set), ensembles="1")
    assert rows["data_fingerprint"].item() == test_set.fingerprint and rows["n_images"].item() == len(test_set)


# ---------------------------------------------------------------------------------------------------------
# --subset-file


def write_list(path, positions, header="# a published image list\n"):
    path.write_text(header + "\n".join(map(str, positions)) + "\n")
    return path


def test_subset_file_rows_carry_its_sha256_and_evaluate_exactly_its_images(model_file, test_set, tmp_path):
    labels = test_set.labels.numpy()
    picks = [int(i) for c in (3, 0, 7, 1, 9, 2, 8, 4, 6, 5) for i in np.flatnonzero(labels == c)[:3]][::-1]
    listing = write_list(tmp_path / "ids.txt", picks)
    digest = hashlib.sha256(listing.read_bytes()).hexdigest()
    out = tmp_path / "eval.csv"
    result = run_eval(EvalRequest([model_file], settings(subset_file=listing), out=out))
    rows = result.rows
    assert (rows["subset_sha256"] == digest).all() and (rows["subset"] == "").all()
    assert result.n_images == len(picks) and result.predictions.labels.tolist() == labels[picks].tolist()
    assert_same_metrics(rows, by_hand(model_file, test_set.select(picks)))

    # --subset N then samples N of the listed images (class-balanced, in the file's order)
    both = run_eval(EvalRequest([model_file], settings(subset=10, subset_file=listing), out=out)).rows
    chosen = [picks[i] for i in sample_indices(labels[picks], 10, 10, "list")]
    assert sorted(labels[chosen].tolist()) == list(range(10))
    assert_same_metrics(both, by_hand(model_file, test_set.select(chosen)))
    assert (both["subset_sha256"] == digest).all() and (both["subset"] == 10).all()

    # the digest keys the rows: another list (or none) adds rows, the same list replaces its own
    other = write_list(tmp_path / "other.txt", picks[:20], header="")
    run_eval(EvalRequest([model_file], settings(subset_file=other), out=out))
    run_eval(EvalRequest([model_file], settings(subset=20), out=out))
    run_eval(EvalRequest([model_file], settings(subset_file=listing), out=out))
    table = pd.read_csv(out, dtype={"subset_sha256": str}, keep_default_na=False)
    assert len(table) == 4 * 2
    assert table["subset_sha256"].tolist() == [digest] * 4 + [hashlib.sha256(other.read_bytes()).hexdigest()] * 2 + [""] * 2

    # corrupt: the clean cell is the listed images, the generated cells corrupt exactly them
    sweep = CorruptionSweep("synthetic-c", generate=True, corruptions="contrast", severities="1")
    swept = run_corruption_sweep(SweepRequest([model_file], sweep, settings(subset_file=listing),
                                              out=tmp_path / "c.csv"))
    assert (swept.rows["subset_sha256"] == digest).all() and (swept.summary["subset_sha256"] == digest).all()
    clean = swept.rows[swept.rows["severity"] == 0].reset_index(drop=True)
    assert_same_metrics(clean, rows)
    pixels = corrupt(test_set.select(picks).numpy_nhwc(), "contrast", 1, params="cifar", seed=0)
    made = ResidentImages.from_numpy("synthetic-c", "test", pixels, labels[picks], test_set.classes)
    assert (swept.rows.loc[swept.rows["severity"] == 1, "data_fingerprint"] == made.fingerprint).all()
    # resuming with the same list recomputes nothing; without the list the cells are other cells
    again = run_corruption_sweep(SweepRequest([model_file], sweep, settings(subset_file=listing),
                                              out=tmp_path / "c.csv"))
    assert again.rows.empty
    fresh = run_corruption_sweep(SweepRequest([model_file], sweep, settings(subset=len(picks)),
                                              out=tmp_path / "c.csv"))
    assert len(fresh.rows) == 4


@pytest.mark.parametrize("text, message", [
    ("5\n2000\n", r"subset_file .*ids.txt:2: position 2000 is out of range: synthetic has 2000 images "
                  r"\(0..1999\); list positions in that range"),
    ("5\n7\n5\n", r"ids.txt:3: '5' repeats the image of line 1; list each image once"),
    ("# nothing listed\n", r"subset_file .*ids.txt lists no images; give one position or file name per line"),
    ("n01440764/x.JPEG\n", r"ids.txt:1: 'n01440764/x.JPEG' is a file name, but synthetic is an array set"),
])
def test_bad_subset_files_are_refused_before_any_forward(model_file, tmp_path, text, message):
    (tmp_path / "ids.txt").write_text(text)
    with pytest.raises(UserError, match=message):
        eval_rows(model_file, subset_file=tmp_path / "ids.txt")


def test_a_missing_subset_file_is_refused_when_the_settings_are_made(tmp_path):
    with pytest.raises(UserError, match=r"subset_file .*none.txt not found; give the path of an image list"):
        settings(subset_file=tmp_path / "none.txt")
    write_list(tmp_path / "ids.txt", [3, 1, 2])
    with pytest.raises(UserError, match=r"subset 4 is out of range: the list .*ids.txt has 3 images; use 1..3"):
        get_dataset("synthetic", None, "test", subset=4, subset_file=tmp_path / "ids.txt")


@pytest.mark.slow
def test_cli_subset_file_on_eval_and_corrupt(model_file, test_set, tmp_path):
    picks = [int(i) for i in np.flatnonzero(test_set.labels.numpy() == 4)[:6]] + [11, 0]
    listing = write_list(tmp_path / "ids.txt", picks)
    digest = hashlib.sha256(listing.read_bytes()).hexdigest()
    common = ("--ensembles", "1,2", "--device", "cpu", "--quiet")
    run_cli("eval", model_file, "--subset-file", listing, "--out", tmp_path / "eval.csv", *common)
    run_cli("corrupt", model_file, "--dataset", "synthetic-c", "--generate", "--corruptions", "contrast",
            "--severities", "2", "--subset-file", listing, "--out", tmp_path / "c.csv", *common)
    rows = pd.read_csv(tmp_path / "eval.csv", dtype={"subset_sha256": str})
    cells = pd.read_csv(tmp_path / "c.csv", dtype={"subset_sha256": str})
    assert (rows["subset_sha256"] == digest).all() and (cells["subset_sha256"] == digest).all()
    assert (rows["n_images"] == len(picks)).all() and (cells["n_images"] == len(picks)).all()
    clean = cells[cells["severity"] == 0].reset_index(drop=True)
    assert clean["data_fingerprint"].tolist() == rows["data_fingerprint"].tolist()
    assert clean["acc"].tolist() == rows["acc"].tolist()
    assert rows["data_fingerprint"].iloc[0] == test_set.select(picks).fingerprint
    for args, message in ((("--subset-file", tmp_path / "none.txt"),
                           f"--subset-file {tmp_path / 'none.txt'} not found; give the path of an image list"),
                          (("--subset-file", listing, "--subset", "9"), "--subset 9 is out of range: the list")):
        proc = run_cli("eval", model_file, *args, *common, check=False)
        assert_one_line_error(proc, message)


def test_released_perturbation_sequences_follow_the_clean_subsets_positions(model_file):
    """CIFAR-10-P sequences are in the clean test order: ``positions`` picks the sequences of the images a
    subset keeps, exactly as if only those sequences had been given."""
    from smoothbench.evaluation.consistency_rows import perturbation_rows

    sequences = np.random.default_rng(0).integers(0, 256, (12, 4, 32, 32, 3), dtype=np.uint8)
    members, chosen = load_members([model_file]), np.array([9, 2, 5, 11])
    run = settings(ensembles="1,2").on_device()
    picked = perturbation_rows(members, lambda p: sequences, ["brightness"], run, source_kind="released",
                               positions=chosen, chunk_sequences=3)
    given = perturbation_rows(members, lambda p: sequences[chosen], ["brightness"], run, source_kind="released")
    assert pd.DataFrame(picked).drop(columns="smoothbench_version").equals(
        pd.DataFrame(given).drop(columns="smoothbench_version"))
    assert pd.DataFrame(picked)["n_images"].tolist() == [4, 4]
    with pytest.raises(UserError, match=r"the brightness sequences number 12, fewer than the clean test images"):
        perturbation_rows(members, lambda p: sequences, ["brightness"], run, source_kind="released",
                          positions=[3, 12])
