"""Narrow CIFAR-10 ResNet-18 model files for the analysis tests (freshly initialised: the analyses need weights,
not accuracy)."""

from __future__ import annotations

from pathlib import Path

import torch

from smoothbench.models.registry import create_model
from smoothbench.models.store import save_model
from smoothbench.training.config import model_spec, resolve_config
from conftest import train_config


def cifar_model(method: str = "dnn", smoothing: str = "tanh-blur", width: int = 4, seed: int = 0):
    """A width-``width`` ResNet-18 for CIFAR-10 with its dataset recipe, in eval mode."""
    torch.manual_seed(seed)
    cfg = resolve_config(train_config(arch="resnet18", method=method, smoothing=smoothing, width=width,
                                      dataset="cifar10"))
    return create_model(model_spec(cfg)).eval()


def cifar_model_file(folder: Path, method: str = "dnn", smoothing: str = "tanh-blur", width: int = 4) -> Path:
    """:func:`cifar_model` saved as ``folder/<arch>-<method>-<smoothing>.pt``."""
    model = cifar_model(method, smoothing, width)
    path = folder / f"{model.spec.name}.pt"
    save_model(model, path, extra={"dataset": "cifar10"})
    return path
