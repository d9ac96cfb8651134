"""Corruption and consistency sweeps end to end: real models, real corruptions, real files, the real CLI."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from smoothbench import results
from smoothbench.ensembles import EnsemblePredictions
from smoothbench.sweeps import CorruptionSweep, EvalSettings, corruption_sweep, load_members, score, size_columns


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


def test_size_columns_of_scored_rows_match_the_sweep_keys():
    """score() and the sweeps' done-cell keys take their size columns from one rule (hand-written here)."""
    labels = np.array([0, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    settings = EvalSettings(sizes=[1, 2])
    one_model = EnsemblePredictions([1, 4], {1: probs, 4: probs}, labels, members=1, mc_samples=4)
    deep = EnsemblePredictions([1, 2], {1: probs, 2: probs}, labels, members=2, mc_samples=1)
    columns = ["ensemble_size", "members", "mc_samples"]
    assert [[r[c] for c in columns] for r in score(one_model, settings)] == [[1, 1, 1], [4, 1, 4]]
    assert [[r[c] for c in columns] for r in score(deep, settings)] == [[1, 1, 1], [2, 2, 1]]
    assert [[r[c] for c in columns] for r in size_columns([1, 2], 2, None)] == [[1, 1, 1], [2, 2, 1]]
    assert [[r[c] for c in columns] for r in size_columns([1, 2], 3, 5)] == [[1, 1, 5], [2, 2, 5]]


def test_killed_sweep_resumes_without_duplicates(trained_synthetic_mcdo, tmp_path):
    members = load_members([trained_synthetic_mcdo])
    sweep = CorruptionSweep(dataset="synthetic-c", data_dir=None, clean_data_dir=None, generate=True,
                            corruptions=["brightness", "pixelate"], severities=[2])
    settings = EvalSettings(sizes=[1, 3], subset=40)
    out = tmp_path / "sweep.json"

    class Killed(Exception):
        pass

    def kill_after_two(rows):
        if len(results.done_keys(out, results.CORRUPT_KEYS)) >= 4:
            raise Killed

    with pytest.raises(Killed):
        corruption_sweep(members, sweep, settings, out, on_cell=kill_after_two)
    partial = pd.read_json(out)
    assert len(partial) == 4  # clean + brightness, 2 sizes each; pixelate never started
    corruption_sweep(members, sweep, settings, out)
    full = pd.read_json(out)
    assert len(full) == 6 and not full.duplicated(["corruption", "severity", "ensemble_size"]).any()
    pd.testing.assert_frame_equal(full.iloc[:4].reset_index(drop=True), partial)


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
    summary = results.summarize_corruptions(rows, results.load_baseline(str(out)), corruptions=["gaussian_noise", "fog"])
    assert summary.mCE.iloc[0] == pytest.approx(1.0)


def test_consistency_command(trained_synthetic_mcdo, tmp_path):
    out = tmp_path / "consistency.csv"
    run_cli("consistency", trained_synthetic_mcdo, "--ensembles", "1,2,4", "--subset", "80", "--out", out,
            "--plot", tmp_path / "plots", "--quiet")
    rows = pd.read_csv(out)
    assert list(rows.ensemble_size) == [1, 2, 4] and set(rows.kind) == {"mc-size"}
    largest = rows[rows.ensemble_size == 4].iloc[0]
    assert largest.agreement == 1.0 and largest.tv == pytest.approx(0.0, abs=1e-7)
    assert 0.0 <= rows.seed_agreement.min() <= 1.0
    assert any((tmp_path / "plots").glob("*.png"))


def test_cifar10_p_generated_consistency(trained_cifar10_mcdo, cifar10_dir, tmp_path):
    out = tmp_path / "p.csv"
    run_cli("consistency", trained_cifar10_mcdo, "--data-dir", cifar10_dir, "--perturbations",
            "gaussian_noise,translate", "--generate", "--ensembles", "1,2", "--subset", "12", "--out", out, "--quiet")
    rows = pd.read_csv(out)
    prow = rows[rows.kind == "perturbation"]
    assert set(prow.perturbation) == {"gaussian_noise", "translate"} and len(prow) == 4
    assert prow.consistency.between(0, 1).all() and prow.flip_prob.between(0, 1).all()
    assert (prow.cec > 0).all()


def test_leaderboard_over_real_results(trained_synthetic_mcdo, tmp_path):
    from html.parser import HTMLParser

    results_dir = tmp_path / "results"
    run_cli("eval", trained_synthetic_mcdo, "--ensembles", "1,3", "--subset", "60", "--out", results_dir / "eval.csv",
            "--quiet")
    run_cli("consistency", trained_synthetic_mcdo, "--ensembles", "1,3", "--subset", "60", "--out",
            results_dir / "consistency.csv", "--quiet")
    markdown = run_cli("leaderboard", results_dir, "--sort", "nll").stdout
    assert trained_synthetic_mcdo.name in markdown
    page = tmp_path / "board.html"
    run_cli("leaderboard", results_dir, "--format", "html", "--out", page)
    HTMLParser().feed(page.read_text())
    assert "<script" in page.read_text() and trained_synthetic_mcdo.name in page.read_text()
    proc = run_cli("leaderboard", results_dir, "--format", "xml", check=False)
    assert proc.returncode == 2


def test_demo_pipeline_small(tmp_path):
    from smoothbench.demo import DemoSettings, run_demo

    result = run_demo(DemoSettings(out=tmp_path / "demo", width=4, epochs=1, train_subset=300, eval_subset=60,
                                   ensembles=(1, 3), corruptions=("contrast",), severities=(2,), corrupt_subset=30))
    assert len(result.train) == 4 and set(result.train.smoothing) == {"none", "tanh-blur"}
    assert set(result.eval.ensemble_size) == {1, 3}
    assert "resnet18w4-mcdo-tanh-blur" in result.leaderboard
    assert all(path.exists() for path in result.files.values())
