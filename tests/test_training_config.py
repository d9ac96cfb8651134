"""Training settings: the paper's recipes, validation of every setting, and the learning-rate schedule."""

from __future__ import annotations

import pytest
import torch

from conftest import train_config
from smoothbench.errors import UserError
from smoothbench.training.config import resolve_config
from smoothbench.training.loop import make_optimizer


def test_recipe_defaults_follow_the_paper():
    cifar = resolve_config(train_config(dataset="cifar100"))
    assert (cifar.batch_size, cifar.lr, cifar.momentum, cifar.weight_decay) == (128, 0.1, 0.9, 5e-4)
    assert (cifar.warmup_epochs, cifar.epochs, cifar.schedule, cifar.milestones, cifar.gamma) == (
        1, 200, "multistep", (60, 120, 160), 0.2)
    imagenet = resolve_config(train_config(dataset="imagenet", lr=0.2))
    assert (imagenet.batch_size, imagenet.lr, imagenet.weight_decay, imagenet.epochs, imagenet.milestones,
            imagenet.gamma) == (256, 0.2, 1e-4, 90, (30, 60, 80), 0.1)
    assert resolve_config(train_config(dataset="cifar10", seed=4)).out.endswith("resnet18-dnn-seed4")


@pytest.mark.parametrize("changes, word", [
    ({"epochs": 0}, "epochs must be at least 1"), ({"lr": 0.0}, "lr must be positive"),
    ({"milestones": (60, 30)}, "milestones must be positive and strictly increasing"),
    ({"schedule": "step"}, "unknown schedule 'step'"), ({"gamma": 1.5}, r"gamma must be in \(0, 1\]"),
    ({"precision": "fp16"}, "unknown precision 'fp16'"), ({"dataset": "mnist"}, "unknown dataset 'mnist'"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
])
def test_bad_settings_are_user_errors(changes, word):
    with pytest.raises(UserError, match=word):
        resolve_config(train_config(**changes))


def lrs_per_step(steps: int, **changes) -> list[float]:
    """The lr of every optimiser step, read off the optimiser exactly as the training loop drives it."""
    cfg = resolve_config(train_config(dataset="cifar10", **changes))
    layer = torch.nn.Linear(2, 2)
    optimizer, scheduler = make_optimizer(layer, cfg, iters_per_epoch=4)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_warmup_per_iteration_then_multistep_per_epoch():
    # 4 iterations per epoch, 1 warm-up epoch: lr = 0.2 k / 4 for k = 1..4; then main epochs 0, 1, 2 at
    # 0.2, 0.2·0.5 (milestone 1 reached), 0.2·0.5² (milestone 2 reached).
    got = lrs_per_step(16, lr=0.2, warmup_epochs=1, epochs=3, milestones=(1, 2), gamma=0.5)
    expected = [0.05, 0.1, 0.15, 0.2] + [0.2] * 4 + [0.1] * 4 + [0.05] * 4
    assert got == pytest.approx(expected, rel=1e-12)


def test_cosine_over_main_epochs_only():
    # 2 warm-up epochs (8 steps of 0.1 k / 8), then cosine over 4 main epochs: 0.1 (1 + cos(π e / 4)) / 2.
    got = lrs_per_step(24, lr=0.1, warmup_epochs=2, epochs=4, schedule="cosine")
    expected = [0.1 * k / 8 for k in range(1, 9)]
    for factor in (1.0, (1 + 2**-0.5) / 2, 0.5, (1 - 2**-0.5) / 2):
        expected += [0.1 * factor] * 4
    assert got == pytest.approx(expected, rel=1e-12)


def test_trajectory_keeps_the_flat_keys_of_older_checkpoints():
    """A resume compares the trajectory stored in a checkpoint; 0.1.0 stored flat keys, so they must stay (the
    model's source is new: an older checkpoint without it counts as None, a smoothbench architecture)."""
    trajectory = resolve_config(train_config(method="mcdo", width=8, dataset="cifar10")).trajectory()
    assert list(trajectory) == ["arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width", "head", "source",
                                "dataset", "subset", "holdout", "epochs", "warmup_epochs", "batch_size", "lr", "momentum",
                                "weight_decay", "schedule", "milestones", "gamma", "seed", "precision", "sync_bn"]
    assert (trajectory["method"], trajectory["width"], trajectory["milestones"]) == ("mcdo", 8, [60, 120, 160])
