"""The command line itself, in subprocesses: outputs, usage errors and one-line errors with exit status 2."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest

import smoothbench
from smoothbench.training.loop import TIMED_SECTIONS

from conftest import run_cli

pytestmark = pytest.mark.slow


def test_models_csv_lists_every_combination_with_paper_counts():
    proc = run_cli("models", "--num-classes", "10", "--format", "csv")
    table = pd.read_csv(pd.io.common.StringIO(proc.stdout))
    assert list(table.columns) == ["arch", "method", "smoothing", "params"]
    row = table[(table.arch == "resnet18") & (table.method == "dnn") & (table.smoothing == "none")]
    assert int(row.params.iloc[0]) == 11_173_962
    alex = table[(table.arch == "alexnet") & (table.method == "mcdo") & (table.smoothing == "tanh-blur")]
    assert int(alex.params.iloc[0]) == 23_467_722  # smoothing and dropout add no parameters
    assert len(table) == table.arch.nunique() * 2 * 4


def test_train_refuses_to_overwrite_a_finished_run(trained_synthetic_mcdo):
    before = (trained_synthetic_mcdo / "model.pt").read_bytes()
    proc = run_cli("train", "--arch", "resnet18", "--width", "4", "--dataset", "synthetic", "--epochs", "1",
                   "--out", trained_synthetic_mcdo, "--quiet", check=False)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (trained_synthetic_mcdo / "model.pt").read_bytes() == before


def test_train_profile_reports_sections_that_fit_the_wall_time(tmp_path):
    out = tmp_path / "run"
    start = time.perf_counter()
    proc = run_cli("train", "--arch", "resnet18", "--width", "4", "--dataset", "synthetic", "--epochs", "2",
                   "--warmup-epochs", "0", "--subset", "100", "--eval-subset", "50", "--batch-size", "25",
                   "--device", "cpu", "--out", out, "--quiet", "--profile")
    wall = time.perf_counter() - start
    line = next(line for line in proc.stderr.splitlines() if line.startswith("profile:"))
    sections = {name: float(value) for name, value in re.findall(r"(\w+) (\d+\.\d+)s", line)}
    assert list(sections) == [*TIMED_SECTIONS, "total"], line
    total = sections.pop("total")
    assert all(value >= 0 for value in sections.values()), line
    assert sections["step"] > 0 and sections["validation"] > 0  # 8 steps, 2 validations: well over 0.01 s
    assert sum(sections.values()) <= total + 0.01 * len(sections)  # each figure is rounded to 0.01 s
    assert total <= wall
    images_per_s = float(re.search(r"(\d+) images/s", line).group(1))  # 2 epochs of 100 images
    assert images_per_s == pytest.approx(200 / (sections["data"] + sections["step"]), rel=0.05, abs=1)
    model = smoothbench.load(out)  # the run finished with a loadable model
    assert (model.spec.dataset, model.spec.width) == ("synthetic", 4)
