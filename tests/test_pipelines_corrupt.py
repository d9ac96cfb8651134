"""``smoothbench corrupt`` end to end: real models, real corruptions, real files, the real CLI."""

from __future__ import annotations

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
