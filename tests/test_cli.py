"""The command line itself, in subprocesses: outputs, usage errors and one-line errors with exit status 2."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest

import smoothbench
from smoothbench.training.loop import TIMED_SECTIONS

from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow


def test_models_csv_lists_every_combination_with_paper_counts():
    proc = run_cli("models", "--num-classes", "10", "--format", "csv")
    table = pd.read_csv(pd.io.common.StringIO(proc.stdout))
    assert list(table.columns) == ["arch", "method", "smoothing", "head", "params"]
    assert set(table[table.arch == "vgg16"]["head"]) == {"mlp"} and set(table[table.arch == "resnet18"]["head"]) == {"gap"}
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


# ----------------------------------------------------------------------------------------------------------
# usage errors, help, and one line for every expected failure
@pytest.mark.parametrize("args, message", [
    ((), "COMMAND [ARGS]"), (("bogus",), "No such command 'bogus'"), (("eval",), "Missing argument 'runs'"),
    (("eval", "--batch-size", "abc", "x"), "Invalid value for '--batch-size'"),
    (("eval", "--nope", "x"), "No such option: --nope"),
])
def test_usage_errors_show_typers_usage_and_exit_2(args, message):
    proc = run_cli(*args, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert message in output and "Usage:" in output
    assert "Traceback" not in output and "click" not in output


def test_help_texts_say_what_each_flag_does():
    make_c = " ".join(run_cli("data", "make-c", "--help").stdout.split())
    assert "Corrupt only N test images (the class-balanced sample eval --subset N evaluates)" in make_c
    assert "Evaluate N images only" not in make_c and "first N" not in make_c
    evaluate = " ".join(run_cli("eval", "--help").stdout.split())
    assert "a class-balanced random sample" in evaluate and "--subset-file" in evaluate and "first N" not in evaluate
    shift = " ".join(run_cli("shift", "--help").stdout.split())
    assert "--subset-file <list[str]> SET=FILE" in shift and "--subset-file <path>" not in shift  # its own flag
    corrupt = " ".join(run_cli("corrupt", "--help").stdout.split())
    assert "--no-verify" in corrupt and "--profile" in corrupt
    consistency = " ".join(run_cli("consistency", "--help").stdout.split())
    assert "--profile" not in consistency and "--ece-mode" not in consistency  # they would do nothing there


def _model_file(path, **spec_changes):
    """A real (untrained) width-4 ResNet-18 MC-dropout model file for the synthetic set."""
    from smoothbench import create_model
    from smoothbench.data import NORMALIZATION
    from smoothbench.models.store import save_model

    mean, std = NORMALIZATION["synthetic"]
    model = create_model("resnet18", method="mcdo", width=4, num_classes=10, dataset="synthetic", mean=mean, std=std)
    save_model(model, path)
    if spec_changes:
        import torch

        payload = torch.load(path, weights_only=True)
        payload["spec"].update(spec_changes)
        torch.save(payload, path)
    return path


def test_broken_model_files_are_one_line_each(tmp_path):
    import torch

    wrong = _model_file(tmp_path / "wrong.pt", width=8)  # the weights are width 4's
    assert_one_line_error(run_cli("eval", wrong, "--quiet", check=False), "weights do not fit its spec")
    nan = _model_file(tmp_path / "nan.pt")
    payload = torch.load(nan, weights_only=True)
    payload["state_dict"]["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(payload, nan)
    assert_one_line_error(run_cli("eval", nan, "--quiet", check=False), "the model's weights contain NaN/inf")


def test_outputs_are_checked_before_any_work(tmp_path):
    """The model named here does not exist: the output error comes first, so nothing was loaded or computed."""
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "other.csv").write_text("name,value\nx,1\n")
    absent = tmp_path / "absent.pt"
    cases = [(("eval", absent, "--out", "/sys/eval.csv"), "cannot write /sys/eval.csv"),
             (("eval", absent, "--out", tmp_path / "notes.txt" / "eval.csv"), "is a file, not a folder"),
             (("eval", absent, "--out", tmp_path / "other.csv"), "is not a smoothbench table of this kind"),
             (("eval", absent, "--out", tmp_path / "eval.txt"), "cannot tell the format"),
             (("eval", absent, "--save-probs", tmp_path), "is a folder; give a file name"),
             (("eval", absent, "--plot", tmp_path / "notes.txt"), "is a file, not a folder"),
             (("corrupt", absent, "--dataset", "cifar10-c", "--generate", "--out", tmp_path / "ok.csv",
               "--summary-out", tmp_path / "other.csv"), "is not a smoothbench table of this kind"),
             (("consistency", absent, "--out", "/sys/c.csv"), "cannot write /sys/c.csv"),
             (("leaderboard", tmp_path, "--out", tmp_path / "notes.txt" / "b.md"), "is a file, not a folder"),
             (("train", "--dataset", "synthetic", "--out", tmp_path / "notes.txt"), "is a file; give a folder"),
             (("train", "--dataset", "synthetic", "--resume", "--out", tmp_path / "typo"),
              "there is no run folder")]
    for args, fragment in cases:
        assert_one_line_error(run_cli(*args, "--quiet" if args[0] != "leaderboard" else "--sort=nll", check=False),
                              fragment)
    assert (tmp_path / "other.csv").read_text() == "name,value\nx,1\n" and not (tmp_path / "typo").exists()


def test_dataset_files_with_bad_labels_name_the_file(tmp_path, cifar10_dir):
    """A CIFAR batch whose labels are not class indices: one line naming that batch file."""
    import pickle
    import shutil

    from smoothbench.data.unpickle import load_pickle

    for labels, message in (([0.5] * 10000, "holds float64 values labels, not integer class indices"),
                            ([12] * 10000, "holds labels in 12..12, outside the 10 classes 0..9")):
        folder = tmp_path / "data" / "cifar-10-batches-py"
        shutil.rmtree(folder.parent, ignore_errors=True)
        shutil.copytree(cifar10_dir / "cifar-10-batches-py", folder)
        batch = load_pickle(folder / "test_batch")
        batch[b"labels"] = labels
        with open(folder / "test_batch", "wb") as handle:
            pickle.dump(batch, handle)
        model = _model_file(tmp_path / "m.pt", dataset="cifar10", mean=[0.5] * 3, std=[0.25] * 3)
        proc = run_cli("eval", model, "--data-dir", tmp_path / "data", "--quiet", check=False)
        assert proc.returncode == 2 and "test_batch " + message in proc.stderr.replace("\n", " "), proc.stderr
        assert "Traceback" not in proc.stderr


def test_unexpected_exceptions_keep_one_traceback_and_ask_for_a_report(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    script = ("import sys, smoothbench.pipelines.eval as e, smoothbench.cli as c\n"
              "def boom(*a, **k): raise RuntimeError('an internal mistake')\n"
              "e.run_eval = boom\n"
              "sys.argv = ['smoothbench', 'eval', 'x.pt', '--quiet']\n"
              "c.main()\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback") == 1 and "RuntimeError: an internal mistake" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("this is a bug in smoothbench")
