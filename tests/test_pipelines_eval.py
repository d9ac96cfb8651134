"""``smoothbench eval`` end to end in subprocesses: tidy rows, files, and one-line errors with exit status 2."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import assert_one_line_error, assert_png, run_cli

pytestmark = pytest.mark.slow


def test_eval_writes_tidy_rows_and_replaces_them_on_rerun(trained_synthetic_mcdo, tmp_path):
    out = tmp_path / "eval.csv"
    args = ("eval", trained_synthetic_mcdo, "--ensembles", "1,4", "--subset", "100", "--out", out, "--quiet",
            "--seed", "5", "--plot", tmp_path / "plots", "--save-probs", tmp_path / "p.npz")
    run_cli(*args)
    first = pd.read_csv(out)
    run_cli(*args)
    second = pd.read_csv(out)
    assert len(first) == len(second) == 2
    assert list(first.ensemble_size) == [1, 4]
    for column in ("acc", "nll", "ece", "brier", "checkpoint_sha256", "data_fingerprint", "smoothbench_version",
                   "seed", "n_images", "ece_bins", "ece_mode", "precision"):
        assert column in first.columns
    assert (first.n_images == 100).all() and (first.seed == 5).all()
    pd.testing.assert_frame_equal(first, second)  # same seed: identical numbers
    stem = f"{trained_synthetic_mcdo.name}_synthetic_test_n4_reliability"
    bins = pd.read_csv(tmp_path / "plots" / f"{stem}.csv")
    assert len(bins) == 15 and bins["count"].sum() == 100  # 15 bins (the default) over the 100 images
    ece = (bins["count"] / 100 * bins["gap"].abs()).sum()  # ECE from the diagram's own table
    assert ece == pytest.approx(first.loc[first.ensemble_size == 4, "ece"].item(), abs=1e-12)
    assert_png(tmp_path / "plots" / f"{stem}.png")
    import numpy as np

    saved = np.load(tmp_path / "p.npz")
    assert saved["probs_4"].shape == (100, 10) and saved["labels"].shape == (100,)


@pytest.mark.parametrize("bad", ["0", "-1", "a", ""])
def test_eval_refuses_bad_ensembles(trained_synthetic_mcdo, bad):
    proc = run_cli("eval", trained_synthetic_mcdo, "--ensembles", bad, "--quiet", check=False)
    assert_one_line_error(proc, "--ensembles")


def test_eval_refuses_missing_checkpoint(tmp_path):
    proc = run_cli("eval", tmp_path / "nope", check=False)
    assert_one_line_error(proc, "no such model file")


def test_eval_refuses_foreign_and_broken_checkpoints(tmp_path):
    import torch

    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    proc = run_cli("eval", foreign, check=False)
    assert_one_line_error(proc, "not a smoothbench model file")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a zip file at all")
    proc = run_cli("eval", broken, check=False)
    assert_one_line_error(proc, "not a readable")


def test_eval_refuses_checkpoint_for_another_dataset(trained_synthetic_mcdo, cifar10_dir):
    proc = run_cli("eval", trained_synthetic_mcdo, "--dataset", "cifar10", "--data-dir", cifar10_dir, "--quiet",
                   check=False)
    assert_one_line_error(proc, "trained on synthetic")


def test_deterministic_model_refuses_ensembles(tmp_path):
    run_cli("train", "--arch", "resnet18", "--width", "4", "--dataset", "synthetic", "--epochs", "1",
            "--subset", "200", "--eval-subset", "50", "--out", tmp_path / "dnn", "--quiet")
    proc = run_cli("eval", tmp_path / "dnn", "--ensembles", "1,5", "--quiet", check=False)
    assert_one_line_error(proc, "deterministic")


def test_real_cifar10_train_and_eval(trained_cifar10_mcdo, cifar10_dir, tmp_path):
    """A short CPU run on the shared CIFAR-10 copy reaches well above chance, and eval agrees."""
    log = pd.read_csv(trained_cifar10_mcdo / "train_log.csv")
    assert log.train_loss.iloc[-1] < log.train_loss.iloc[0]
    out = tmp_path / "eval.json"
    run_cli("eval", trained_cifar10_mcdo, "--data-dir", cifar10_dir, "--subset", "500", "--ensembles", "1,3",
            "--out", out, "--quiet")
    rows = pd.read_json(out)
    assert len(rows) == 2 and set(rows.dataset) == {"cifar10"}
    assert (rows.acc > 0.25).all(), rows.acc  # chance is 0.10
    assert (rows.nll < 2.3).all()


def test_a_full_disk_is_one_line_and_keeps_the_previous_results(trained_synthetic_mcdo, small_disk):
    out = small_disk / "eval.csv"
    run_cli("eval", trained_synthetic_mcdo, "--subset", "20", "--out", out, "--quiet")
    before = out.read_bytes()
    free = __import__("os").statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"x" * (free.f_bavail * free.f_frsize - 512))  # leave less than a file
    proc = run_cli("eval", trained_synthetic_mcdo, "--subset", "20", "--ensembles", "1,2", "--out", out, "--quiet",
                   check=False)
    assert_one_line_error(proc, "the disk is full")
    assert "the previous file is kept" in proc.stderr and out.read_bytes() == before


def test_a_name_that_cannot_be_encoded_is_one_line(trained_synthetic_mcdo, tmp_path):
    """A run folder whose name is not valid UTF-8 (a byte 0xff) ends up in the rows' model column."""
    import os
    import shutil
    import subprocess
    import sys

    from conftest import ROOT

    odd = os.path.join(os.fsencode(tmp_path), b"run-\xff")
    shutil.copytree(os.fsencode(trained_synthetic_mcdo), odd)
    proc = subprocess.run([os.fsencode(sys.executable), b"-m", b"smoothbench", b"eval", odd, b"--subset", b"20",
                           b"--out", os.fsencode(tmp_path / "eval.csv"), b"--quiet"], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.strip()] == [
        "error: a name or path cannot be encoded or decoded as UTF-8 (surrogates not allowed); rename it with plain "
        "characters and run again"]
    assert not (tmp_path / "eval.csv").exists()
