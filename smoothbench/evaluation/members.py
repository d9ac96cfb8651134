"""The model(s) one evaluation runs: a single run or a deep ensemble, loaded and checked against the data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from smoothbench.errors import UserError
from smoothbench.models.spec import ModelSpec
from smoothbench.models.store import load_model_file


@dataclass
class Members:
    """The loaded model(s) of one evaluation: a single run or a deep ensemble, in the order given."""

    models: list[torch.nn.Module]
    paths: list[str]

    @property
    def spec(self) -> ModelSpec:
        return self.models[0].spec

    @property
    def name(self) -> str:
        names = [display_name(p) for p in self.paths]
        return names[0] if len(names) == 1 else "ensemble(" + "+".join(names) + ")"

    @property
    def checkpoint_sha256(self) -> str:
        """The members' file hashes joined with ``+`` (the ``checkpoint_sha256`` column)."""
        return "+".join(m.checkpoint_sha256 for m in self.models)

    def columns(self) -> dict[str, object]:
        """Model-describing columns shared by every row of these members."""
        spec = self.spec
        return {
            "model": self.name,
            "arch": spec.arch,
            "method": spec.method,
            "smoothing": spec.smoothing,
            "blur": spec.blur,
            "tau": spec.tau,
            "dropout_rate": spec.dropout_rate,
            "width": spec.width,
            "checkpoint_sha256": self.checkpoint_sha256,
        }

    def check_dataset(self, dataset: str, num_classes: int | None = None) -> None:
        """Refuse data the checkpoint was not trained for (another dataset, or another label space).

        ``dataset`` is the clean dataset's name (``cifar10`` for CIFAR-10-C and CIFAR-10-P); call it once
        before loading any data and again with ``num_classes`` once the data are loaded.
        """
        spec = self.spec
        if spec.dataset is not None and dataset != spec.dataset:
            raise UserError(f"{self.name} was trained on {spec.dataset}, not {dataset}; evaluate it on {spec.dataset} "
                            f"(or its corrupted versions)")
        if num_classes is not None and num_classes != spec.num_classes:
            raise UserError(f"{self.name} predicts {spec.num_classes} classes but {dataset} has {num_classes}")


def display_name(path: str | os.PathLike) -> str:
    """A run folder's name, or a model file's stem (its folder's name for ``model.pt``)."""
    path = Path(path)
    if path.is_dir() or path.name == "model.pt":
        return (path if path.is_dir() else path.parent).resolve().name
    return path.stem


def load_members(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> Members:
    """Load one or more runs / model files; members of a deep ensemble must share dataset and classes."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise UserError("give at least one run folder or model file")
    models = [load_model_file(p)[0] for p in paths]
    datasets = {m.spec.dataset for m in models}
    if len(datasets) > 1:
        raise UserError(f"the members were trained on different datasets ({', '.join(map(str, sorted(datasets, key=str)))})")
    archs = {(m.spec.arch, m.spec.method, m.spec.smoothing) for m in models}
    if len(archs) > 1:
        raise UserError("deep-ensemble members must share arch, method and smoothing; evaluate them separately")
    return Members(models, [str(p) for p in paths])
