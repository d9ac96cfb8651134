"""``smoothbench corrupt`` end to end: real models, real corruptions, real files, the real CLI."""

from __future__ import annotations

import io
import re

import pandas as pd
import pytest

from conftest import run_cli
from smoothbench.results.baselines import load_baseline
from smoothbench.results.summaries import summarize_corruptions

pytestmark = pytest.mark.slow


def test_generated_sweep_rows_summary_and_resume(trained_synthetic_mcdo, tmp_path):
    out = tmp_path / "sweep.csv"
    args = ("corrupt", trained_synthetic_mcdo, "--dataset", "synthetic-c", "--generate", "--corruptions",
            "gaussian_noise,contrast", "--severities", "1,3", "--ensembles", "1,2", "--subset", "60", "--out", out,
            "--quiet")
    profile = run_cli(*args, "--profile").stderr
    rows = pd.read_csv(out)
    assert len(rows) == (1 + 2 * 2) * 2  # clean + 2 corruptions x 2 severities, at 2 ensemble sizes
    line = " ".join(profile[profile.index("profile:"):].split())  # rich may wrap the line
    seconds = {name: float(value) for name, value in re.findall(r"(\w+) (\d+\.\d+)s", line)}
    assert set(seconds) == {"data", "forward", "metrics", "io", "total"}, line
    assert all(value >= 0 for value in seconds.values()) and seconds["forward"] > 0
    assert sum(v for k, v in seconds.items() if k != "total") <= seconds["total"] + 0.02  # sections within the sweep
    rate = float(re.search(r"(\d+) sample-forwards/s", line).group(1))
    assert rate == pytest.approx(5 * 60 * 2 / seconds["total"], rel=0.05, abs=1)  # 5 cells x 60 images x 2 samples
    assert set(rows.severity) == {0, 1, 3} and set(rows.source) == {"clean", "generated"}
    clean = rows[rows.severity == 0].acc.mean()
    assert clean > 0.3  # the fixture model learned something (chance is 0.1)
    fingerprints = rows.groupby(["corruption", "severity"]).data_fingerprint.first()
    assert fingerprints.nunique() == 5  # every cell holds other pixels: the corruptions were applied
    summary = pd.read_csv(tmp_path / "sweep_summary.csv")
    assert set(summary.ensemble_size) == {1, 2}
    cells = rows[rows.severity > 0]
    expected = cells[cells.ensemble_size == 1].acc.mean()
    assert summary[summary.ensemble_size == 1].cAcc.iloc[0] == pytest.approx(expected)
    before = out.read_bytes()
    proc = run_cli(*args)  # every cell done: nothing recomputed, nothing duplicated
    assert pd.read_csv(out).shape == rows.shape
    assert out.read_bytes() == before, proc.stderr


def test_released_cifar10_c_sweep_with_baseline(trained_cifar10_mcdo, cifar10_dir, tmp_path):
    from smoothbench.corruptions.writer import make_cifar_c
    from smoothbench.data import get_dataset

    test = get_dataset("cifar10", str(cifar10_dir), "test", subset=50)
    c_dir = tmp_path / "CIFAR-10-C"
    make_cifar_c(test.numpy_nhwc(), test.labels.numpy(), c_dir, corruptions=["gaussian_noise", "fog"], seed=0)
    out = tmp_path / "sweep.csv"
    run_cli("corrupt", trained_cifar10_mcdo, "--dataset", "cifar10-c", "--data-dir", c_dir, "--clean-data-dir",
            cifar10_dir, "--corruptions", "gaussian_noise,fog", "--ensembles", "1", "--subset", "50", "--out", out,
            "--quiet")
    rows = pd.read_csv(out)
    assert len(rows) == 1 + 2 * 5
    assert set(rows[rows.severity > 0].source) == {"generated"}  # a make-c folder says where it came from
    assert (rows.n_images == 50).all()
    # the same sweep evaluated as a baseline of itself gives mCE = 1 exactly
    summary = summarize_corruptions(rows, load_baseline(str(out)), corruptions=["gaussian_noise", "fog"])
    assert summary.mCE.iloc[0] == pytest.approx(1.0)


SWEEP = ("--dataset", "synthetic-c", "--generate", "--corruptions", "gaussian_noise", "--severities", "2", "--ensembles",
         "1,2", "--quiet")


def test_reruns_with_other_settings_compute_and_coexist(trained_synthetic_mcdo, tmp_path):
    """A rerun into the same file with another corruption seed, ECE binning, MC seed or precision is never
    served the stored cells: its cells are computed and land beside the others."""
    out = tmp_path / "sweep.csv"
    run_cli("corrupt", trained_synthetic_mcdo, *SWEEP, "--subset", "30", "--out", out)
    first = pd.read_csv(out)
    assert len(first) == 4  # clean + gaussian noise 2, at sizes 1 and 2
    for extra in (("--corruption-seed", "5"), ("--ece-mode", "reference"), ("--seed", "3")):
        run_cli("corrupt", trained_synthetic_mcdo, *SWEEP, "--subset", "30", "--out", out, *extra)
    rows = pd.read_csv(out)
    # seed 5 adds only the generated cell (the clean cell has no corruption seed); the others add both cells
    assert len(rows) == 4 + 2 + 4 + 4
    noisy = rows[(rows.corruption == "gaussian_noise") & (rows.ensemble_size == 2)]
    assert sorted(noisy.corruption_seed.tolist()) == [0, 0, 0, 5]
    assert set(rows.ece_mode) == {"standard", "reference"} and set(rows.seed) == {0, 3}
    reseeded = noisy[noisy.corruption_seed == 5].data_fingerprint.item()
    assert reseeded not in set(noisy[noisy.corruption_seed == 0].data_fingerprint)  # other draws: other pixels
    before = out.read_bytes()
    run_cli("corrupt", trained_synthetic_mcdo, *SWEEP, "--subset", "30", "--out", out, "--seed", "3")
    assert out.read_bytes() == before  # the same settings again: every cell is done, nothing changes
    summary = pd.read_csv(tmp_path / "sweep_summary.csv")
    assert len(summary) == 4 * 2 and not summary.cAcc.isna().any()  # 4 setting variants x 2 sizes
    assert "0.0" not in (tmp_path / "sweep_summary.csv").read_text().split("\n")[1].split(",")  # whole numbers


def test_concurrent_sweeps_into_one_file_keep_every_row(trained_synthetic_mcdo, tmp_path):
    """The reported loss: two sweeps started at once into one --out (subsets 20 and 21) lost rows."""
    import subprocess
    import sys

    from conftest import ROOT

    out = tmp_path / "sweep.csv"
    env = dict(__import__("os").environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "smoothbench", "corrupt", str(trained_synthetic_mcdo), *SWEEP,
                               "--corruptions", "contrast,brightness,pixelate", "--subset", str(n), "--out",
                               str(out)], env=env, stderr=subprocess.PIPE, text=True) for n in (20, 21)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    rows = pd.read_csv(out)
    assert len(rows) == 2 * (1 + 3) * 2  # two subsets x (clean + 3 cells) x 2 sizes
    assert sorted(rows.groupby("subset").size().tolist()) == [8, 8]
    summary = pd.read_csv(tmp_path / "sweep_summary.csv")
    assert sorted(summary.subset.tolist()) == [20, 20, 21, 21] and (summary.n_corruptions == 3).all()


def test_a_cut_row_is_recomputed_not_kept(trained_synthetic_mcdo, tmp_path):
    """A sweep file whose last line was cut: the row is left out (warning), its cell computed again, the
    summary has no NaN rows, and the leaderboard ranks only whole rows."""
    out = tmp_path / "sweep.csv"
    run_cli("corrupt", trained_synthetic_mcdo, *SWEEP, "--subset", "30", "--out", out)
    whole = out.read_bytes()
    out.write_bytes(whole[: len(whole) - 40])
    proc = run_cli("corrupt", trained_synthetic_mcdo, *SWEEP, "--subset", "30", "--out", out)
    assert "warning:" in proc.stderr and "line 5" in proc.stderr and "the row is left out" in proc.stderr
    assert pd.read_csv(out).equals(pd.read_csv(io.BytesIO(whole)))  # the cell came back, computed again
    summary = pd.read_csv(tmp_path / "sweep_summary.csv")
    assert len(summary) == 2 and not summary.isna().all(axis=1).any() and not summary.cAcc.isna().any()


def test_released_labels_that_differ_from_the_clean_set_are_warned_about(trained_cifar10_mcdo, cifar10_dir,
                                                                          tmp_path):
    import numpy as np

    from smoothbench.corruptions.writer import make_cifar_c
    from smoothbench.data import get_dataset

    test = get_dataset("cifar10", str(cifar10_dir), "test", subset=40)
    c_dir = tmp_path / "mine"
    shuffled = np.random.default_rng(0).permutation(test.labels.numpy())
    make_cifar_c(test.numpy_nhwc(), shuffled, c_dir, corruptions=["contrast"], seed=0)
    proc = run_cli("corrupt", trained_cifar10_mcdo, "--dataset", "cifar10-c", "--data-dir", c_dir, "--clean-data-dir",
                   cifar10_dir, "--corruptions", "contrast", "--severities", "1", "--subset", "40", "--out",
                   tmp_path / "s.csv", "--quiet")
    text = " ".join(proc.stderr.split())
    assert "labels of" in text and "differ from the clean cifar10 test labels" in text
