"""The training loop: learning, the run folder it writes, bit-exact resume, and a short real CIFAR-10 run."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest
import torch

import smoothbench
from conftest import RecordingProgress, train_config
from smoothbench.data import NORMALIZATION, get_dataset
from smoothbench.errors import UserError
from smoothbench.training import TrainConfig, run_training
from smoothbench.training.loop import validate
from smoothbench.training.run_folder import LOG_COLUMNS

LN10 = math.log(10)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


class Killed(Exception):
    """Stands in for a crash or Ctrl-C at a chosen moment of a run."""


def tiny(out, **changes) -> TrainConfig:
    """An MC-dropout + tanh-blur ResNet-18 of width 4 on 200 synthetic images: 1 warm-up + 2 main epochs."""
    settings = dict(arch="resnet18", method="mcdo", smoothing="tanh-blur", width=4, dataset="synthetic",
                    subset=200, eval_subset=100, batch_size=25, warmup_epochs=1, epochs=2, lr=0.05,
                    milestones=(1,), gamma=0.1, seed=3, device="cpu", workers=0, out=str(out))
    return train_config(**(settings | changes))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run: (config, result)."""
    cfg = tiny(tmp_path_factory.mktemp("train") / "reference")
    return cfg, run_training(cfg)


def assert_same_weights(run_a, run_b) -> None:
    a = smoothbench.load(run_a).state_dict()
    b = smoothbench.load(run_b).state_dict()
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ: {different[:5]}"


def test_loss_decreases_on_synthetic(tmp_path):
    cfg = train_config(arch="resnet18", width=8, dataset="synthetic", subset=1000, eval_subset=100, batch_size=32,
                       warmup_epochs=0, epochs=3, lr=0.01, device="cpu", workers=0, out=str(tmp_path / "run"))
    losses = [row["train_loss"] for row in run_training(cfg).log]
    assert losses[0] > losses[1] > losses[2], losses
    assert losses[2] < LN10, losses  # below the loss of a uniform guess over 10 classes


def test_run_folder_contents(reference):
    cfg, result = reference
    run = result.run_dir
    log = pd.read_csv(run / "train_log.csv")
    assert tuple(log.columns) == LOG_COLUMNS
    assert log["epoch"].tolist() == [1, 2, 3]
    # last warm-up step runs at the base rate; main epoch 1 is past milestone 1
    assert log["lr"].tolist() == pytest.approx([0.05, 0.05, 0.005])
    assert (log["images_per_s"] > 0).all() and (log["seconds"] > 0).all()

    config = json.loads((run / "config.json").read_text())
    settings = config["settings"]
    assert settings["milestones"] == [1] and settings["weight_decay"] == 5e-4 and settings["subset"] == 200
    assert settings["model"]["arch"] == "resnet18" and settings["model"]["width"] == 4
    assert config["spec"]["dataset"] == "synthetic" and config["spec"]["dropout_rate"] == 0.3
    assert {"torch", "torchvision", "numpy", "python"} <= set(config["packages"])
    assert config["seed"] == 3 and config["smoothbench_version"] == smoothbench.__version__
    assert config["data_fingerprint"]["train"] == get_dataset("synthetic", None, "train", subset=200, seed=3).fingerprint
    assert config["device"].startswith("cpu") and config["iterations_per_epoch"] == 8

    checkpoint = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 3
    assert [row["test_acc"] for row in checkpoint["log"]] == log["test_acc"].tolist()

    model = smoothbench.load(run)
    mean, std = NORMALIZATION["synthetic"]
    assert model.spec.dataset == "synthetic" and model.spec.mean == mean and model.spec.std == std
    assert (model.spec.num_classes, model.spec.stem, model.spec.image_size, model.spec.width) == (10, "cifar", 32, 4)
    meta = torch.load(run / "model.pt", map_location="cpu", weights_only=True)["meta"]
    assert meta["dataset"] == "synthetic" and meta["seed"] == 3 and meta["epochs"] == 3
    assert meta["test_acc"] == result.test_acc == log["test_acc"].iloc[-1]
    # The logged test accuracy is the deterministic (MC-off) one: evaluating the saved model reproduces it.
    test = get_dataset("synthetic", None, "test", subset=100)
    acc, nll = validate(model, test, model.spec, batch_size=64, device=torch.device("cpu"), precision="fp32",
                        channels_last=False)
    assert acc == result.test_acc and nll == pytest.approx(result.test_nll, rel=1e-6)


def test_resume_after_a_kill_between_epochs_is_bit_identical(reference, tmp_path):
    _, result = reference
    out = tmp_path / "run"

    def die_after_first_epoch(row):
        raise Killed(f"killed after epoch {row['epoch']}")

    with pytest.raises(Killed, match="killed after epoch 1"):
        run_training(tiny(out), on_epoch=die_after_first_epoch)
    saved = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1 and not (out / "model.pt").exists()
    with pytest.raises(UserError, match="holds an unfinished run; add resume"):
        run_training(tiny(out))
    with pytest.raises(UserError, match="lr was 0.05 and is now 0.1"):
        run_training(tiny(out, lr=0.1, resume=True))

    resumed = run_training(tiny(out, resume=True))
    assert resumed.resumed_from_epoch == 1
    assert_same_weights(result.run_dir, out)
    columns = ["epoch", "lr", "train_loss", "train_acc", "test_acc", "test_nll"]
    assert pd.read_csv(out / "train_log.csv")[columns].equals(pd.read_csv(result.run_dir / "train_log.csv")[columns])


def test_resume_after_a_kill_mid_epoch_is_bit_identical(reference, tmp_path):
    _, result = reference
    out = tmp_path / "run"
    batches = []

    def die_in_third_epoch(images, text):
        batches.append(images)
        if len(batches) == 8 + 8 + 3:  # 8 batches per epoch; crash in the 3rd batch of epoch 3
            raise Killed(f"killed at {text}")

    with pytest.raises(Killed, match="killed at epoch 3/3"):
        run_training(tiny(out), progress=RecordingProgress(die_in_third_epoch))
    checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 2 and len(pd.read_csv(out / "train_log.csv")) == 2

    planned = RecordingProgress()
    resumed = run_training(tiny(out, resume=True), progress=planned)
    assert planned.starts == [(200, "train resnet18-mcdo-tanh-blur")] and resumed.resumed_from_epoch == 2
    assert sum(planned.units) == 200  # one epoch of 200 images left
    assert_same_weights(result.run_dir, out)


def test_finished_run_is_kept_unless_forced(reference, tmp_path):
    _, result = reference
    out = tmp_path / "copy"
    shutil.copytree(result.run_dir, out)
    (out / "notes.txt").write_text("mine")
    before = (out / "model.pt").read_bytes()
    for resume in (False, True):
        with pytest.raises(UserError, match="holds a finished run; use force"):
            run_training(tiny(out, resume=resume))
    assert (out / "model.pt").read_bytes() == before

    forced = run_training(tiny(out, force=True, warmup_epochs=0, epochs=1, seed=5))
    assert forced.epochs == 1 and len(pd.read_csv(out / "train_log.csv")) == 1
    assert (out / "model.pt").read_bytes() != before
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.filterwarnings("ignore:cifar10.*differ from the official files")
def test_short_cifar10_run_learns(cifar10_dir, tmp_path):
    cfg = train_config(arch="resnet18", method="dnn", width=8, dataset="cifar10", data_dir=str(cifar10_dir),
                       subset=2000, eval_subset=500, batch_size=32, warmup_epochs=0, epochs=3, lr=0.01,
                       milestones=(2,), device="cpu", workers=0, out=str(tmp_path / "cifar"))
    result = run_training(cfg)
    assert result.test_acc > 0.25, result.log
    assert result.train_loss < LN10
