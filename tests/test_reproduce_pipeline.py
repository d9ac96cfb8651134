"""``smoothbench reproduce`` end to end on the real CIFAR-10 copy: real training at tiny scale, real files.

The command's own ``--scale tiny`` with one seed and ``--subset`` keeps these tests short; its numbers are
noise, so the tests check the pipeline, the files and the figure, not the paper's effect.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from conftest import RecordingProgress, assert_one_line_error, assert_png, run_cli
from smoothbench.errors import UserError
from smoothbench.pipelines.reproduce import ReproduceRequest, run_reproduce
from smoothbench.reproduce.grid import Scale

pytestmark = pytest.mark.slow

RUNS = [f"cifar10-tiny-resnet18-{m}-{s}-seed0" for m, s in
        (("dnn", "none"), ("dnn", "tanh-blur"), ("mcdo", "none"), ("mcdo", "tanh-blur"))]


@pytest.fixture(scope="module")
def fig2(tmp_path_factory, cifar10_dir) -> tuple[Path, str, float]:
    """``reproduce paper-fig2 --scale tiny --seeds 1`` through the CLI: its folder, output and wall time."""
    out = tmp_path_factory.mktemp("reproduce") / "out"
    start = time.perf_counter()
    proc = run_cli("reproduce", "paper-fig2", "--dataset", "cifar10", "--data-dir", cifar10_dir, "--scale", "tiny",
                   "--seeds", "1", "--subset", "32", "--out", out, "--device", "cpu", "--quiet")
    return out, proc.stdout + proc.stderr, time.perf_counter() - start


def test_fig2_end_to_end(fig2):
    out, output, seconds = fig2
    print(f"reproduce paper-fig2 --scale tiny --seeds 1 --subset 32: {seconds:.0f}s")
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(RUNS)
    assert all((out / "runs" / run / "model.pt").is_file() for run in RUNS)
    rows = pd.read_csv(out / "eval.csv")
    sizes = rows.groupby("model")["ensemble_size"].apply(sorted).to_dict()
    assert sizes == {**{r: [1] for r in RUNS[:2]}, **{r: [1, 2, 3, 4, 5, 10, 20, 30, 50] for r in RUNS[2:]}}
    assert (rows["n_images"] == 32).all() and (rows["subset"] == 32).all() and (rows["ece_mode"] == "reference").all()
    table = pd.read_csv(out / "paper-fig2-cifar10-tiny-subset32-vs-paper.csv")
    assert len(table) == 3 * (1 + 1 + 9 + 9) and (table["n_seeds"] == 1).all()
    assert table["paper"].isna().all() and table["difference"].isna().all()  # the paper has no CIFAR-10 readings
    acc = table[(table["metric"] == "acc") & (table["method"] == "mcdo") & (table["smoothing"] == "none")]
    mcdo = rows[rows["model"] == RUNS[2]].sort_values("ensemble_size")
    assert acc.sort_values("ensemble_size")["ours_mean"].tolist() == pytest.approx((100 * mcdo["acc"]).tolist())
    assert_png(out / "paper-fig2-cifar10-tiny-subset32.png")
    assert "no readings for cifar10" in output and "tiny scale: a check of the pipeline" in output


def test_fig9_reuses_the_runs_with_generated_corruptions(fig2, cifar10_dir):
    out, _, _ = fig2
    trained = {run: (out / "runs" / run / "model.pt").stat().st_mtime_ns for run in RUNS}
    start = time.perf_counter()
    proc = run_cli("reproduce", "paper-fig9", "--dataset", "cifar10", "--data-dir", cifar10_dir, "--scale", "tiny",
                   "--seeds", "1", "--subset", "16", "--out", out, "--device", "cpu", "--quiet")
    print(f"reproduce paper-fig9 --scale tiny --seeds 1 --subset 16 (runs reused): {time.perf_counter() - start:.0f}s")
    assert {run: (out / "runs" / run / "model.pt").stat().st_mtime_ns for run in RUNS} == trained
    cells = pd.read_csv(out / "corrupt.csv")
    assert set(cells["corruption"]) == {"clean", "gaussian_noise", "defocus_blur", "fog", "contrast"}
    assert set(cells.loc[cells["severity"] > 0, "source"]) == {"generated"} and set(cells["severity"]) == {0, 3}
    assert len(cells) == 5 * (1 + 1 + 8 + 8) and (cells["n_images"] == 16).all()
    table = pd.read_csv(out / "paper-fig9-cifar10-tiny-subset16-vs-paper.csv")
    assert set(table["metric"]) == {"mCE", "mCNLL", "mCECE"} and len(table) == 3 * (1 + 1 + 8 + 8)
    assert (table["ours_mean"] > 0).all()  # every ratio against the packaged CIFAR-10 AlexNet is known
    summary = pd.read_csv(out / "corrupt_summary.csv")
    assert set(summary["baseline"]) == {"cifar10_alexnet_dnn_corrupted"}
    assert_png(out / "paper-fig9-cifar10-tiny-subset16.png")
    assert "generated on the fly" in proc.stderr + proc.stdout


class Killed(Exception):
    """Stands for a kill: raised from inside the pipeline by the progress callback."""


def test_a_killed_reproduction_continues_where_it_stopped(tmp_path, cifar10_dir):
    scale = Scale("check", width=4, warmup_epochs=1, epochs=1, milestones=(), train_subset=256, test_subset=24)
    request = ReproduceRequest("paper-fig2", scale, dataset="cifar10", data_dir=cifar10_dir, seeds=1,
                               out=tmp_path, device="cpu")
    runs = [tmp_path / "runs" / f"cifar10-check-resnet18-{m}-seed0" for m in
            ("dnn-none", "dnn-tanh-blur", "mcdo-none", "mcdo-tanh-blur")]

    def kill_in_second_epoch_of_second_run(units: int, text: str) -> None:
        if len(progress.starts) == 2 and len(progress.advances) == 4 + 3:  # run 1: 2 epochs of 2 batches
            raise Killed  # the first batch of run 2's second epoch

    progress = RecordingProgress(kill_in_second_epoch_of_second_run)
    with pytest.raises(Killed):
        run_reproduce(request, progress=progress)
    assert (runs[0] / "model.pt").is_file() and not (runs[1] / "model.pt").exists()
    assert (runs[1] / "checkpoint.pt").is_file() and not runs[2].exists()
    first = (runs[0] / "model.pt").stat().st_mtime_ns

    result = run_reproduce(request)
    assert result.trained == [r.name for r in runs[1:]]  # the finished run is reused, the killed one continued
    assert (runs[0] / "model.pt").stat().st_mtime_ns == first
    resumed = pd.read_csv(runs[1] / "train_log.csv")
    assert resumed["epoch"].tolist() == [1, 2]
    assert '"resumed_from_epoch": 1' in (runs[1] / "config.json").read_text()
    rows = pd.read_csv(tmp_path / "eval.csv")
    assert len(rows) == 2 + 2 * 9 and not rows.duplicated(["model", "ensemble_size"]).any()

    again = RecordingProgress()
    evaluated = (tmp_path / "eval.csv").stat().st_mtime_ns
    result = run_reproduce(request, progress=again)
    assert result.trained == [] and again.starts == []  # nothing trained or evaluated again
    assert (tmp_path / "eval.csv").stat().st_mtime_ns == evaluated
    assert len(result.table) == 3 * (1 + 1 + 9 + 9)
    wider = ReproduceRequest("paper-fig2", replace(scale, width=8), dataset="cifar10", data_dir=cifar10_dir,
                             seeds=1, out=tmp_path, device="cpu")
    with pytest.raises(UserError, match=r"holds a finished run trained with other settings \(width\)"):
        run_reproduce(wider)  # a run folder of the same name but other settings is never reused


def test_plan_prints_the_grid_and_creates_nothing(tmp_path):
    out = tmp_path / "planned"
    proc = run_cli("reproduce", "paper-fig2", "--scale", "tiny", "--dataset", "cifar10", "--seeds", "2", "--out", out,
                   "--plan", "--device", "cpu")
    text = proc.stdout + proc.stderr
    assert text.count("to train") == 8 and "tanh-blur" in text and "estimated total" in text
    assert not out.exists()


def test_bad_input_is_one_line(tmp_path):
    assert_one_line_error(run_cli("reproduce", "paper-fig3", "--scale", "tiny", check=False),
                          "unknown FIGURE 'paper-fig3'; choose paper-fig2 or paper-fig9")
    assert_one_line_error(run_cli("reproduce", "paper-fig2", "--scale", "tiny", "--seeds", "0", check=False),
                          "--seeds must be at least 1, got 0")
    assert_one_line_error(run_cli("reproduce", "paper-fig2", "--scale", "tiny", "--dataset", "cifar10", "--data-dir",
                                  tmp_path, "--out", tmp_path / "out", check=False), "cifar-10-batches-py")
    assert not (tmp_path / "out").exists()  # missing data is found before any folder is made
