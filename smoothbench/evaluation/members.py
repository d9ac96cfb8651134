"""The model(s) one evaluation runs: a single run or a deep ensemble, loaded and checked against the data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from smoothbench.errors import UserError, param
from smoothbench.models.sources import ModelOptions, for_dataset, resolve_model, source_of, split_ref
from smoothbench.models.spec import ModelSpec

#: Model-describing columns of every row, from the members' specs.
SPEC_COLUMNS = ("arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width")


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
        """Model-describing columns shared by every row of these members (a deep ensemble of differing
        members joins their values with ``+``)."""
        return {"model": self.name, **{field: self._joined(field) for field in SPEC_COLUMNS},
                "checkpoint_sha256": self.checkpoint_sha256}

    def _joined(self, field: str) -> object:
        values = [getattr(m.spec, field) for m in self.models]
        distinct = list(dict.fromkeys(values))
        return distinct[0] if len(distinct) == 1 else "+".join(str(v) for v in values)

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
            raise UserError(f"{self.name} predicts {spec.num_classes} classes but {dataset} has {num_classes}; "
                            f"give the model's classes to keep with {param('class_indices')} (or the builder's "
                            f"num_classes in {param('model_kwargs')})")


def display_name(path: str | os.PathLike) -> str:
    """A run folder's name, or a model file's stem (its folder's name for ``model.pt``); for a model from
    elsewhere its reference (``torchvision:resnet18``, with ``@`` and the weights file's stem if given)."""
    text, weights = split_ref(os.fspath(path))
    if source_of(text) is not None:
        return text + (f"@{Path(weights).stem}" if weights else "")
    path = Path(path)
    if path.is_dir() or path.name == "model.pt":
        return (path if path.is_dir() else path.parent).resolve().name
    return path.stem


def load_members(paths: Sequence[str | os.PathLike] | str | os.PathLike, options: ModelOptions | None = None) -> Members:
    """Load one or more models (run folders, model files, ``torchvision:``/``timm:``/builder references, see
    :func:`smoothbench.models.sources.resolve_model`; ``options`` apply to the models from elsewhere). The
    members of a deep ensemble may come from anywhere but must share dataset, classes and input recipe."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise UserError("give at least one run folder, model file or model reference")
    options = options or ModelOptions()
    if options.changes_models and all(source_of(split_ref(os.fspath(p))[0]) is None for p in paths):
        raise UserError("the model options (weights, MC dropout, smoothing, stem, classes) are for torchvision, "
                        "timm and builder models; smoothbench models carry their own: train them with those settings")
    natives = {p: resolve_model(p) for p in paths if source_of(split_ref(os.fspath(p))[0]) is None}
    known = next((m.spec.dataset for m in natives.values() if m.spec.dataset), None)
    options = for_dataset(options, known)  # models from elsewhere in an ensemble are for the same data
    models = [natives[p] if p in natives else resolve_model(p, options) for p in paths]
    datasets = {m.spec.dataset for m in models}
    if len(datasets) > 1:
        raise UserError(f"the members were trained on different datasets ({', '.join(map(str, sorted(datasets, key=str)))})")
    recipes = {m.spec.preprocess for m in models}
    if len(recipes) > 1:
        shown = "; ".join(r.describe() if r is not None else "the dataset's" for r in recipes)
        raise UserError(f"deep-ensemble members must share one input recipe, got {shown}; give the same "
                        f"{param('resize')}, {param('crop')}, {param('mean')} and {param('std')}")
    return Members(models, [str(p) for p in paths])
