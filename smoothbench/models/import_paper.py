"""Checkpoints of the paper's code (``xxxnell/spatial-smoothing``) → smoothbench model files.

Their ``models.save`` writes ``{"name": model.name, "state_dict": ..., ["optimizer": ...]}`` with
``torch.save``; names look like ``resnet_mcdo_smoothing_18``, ``preresnet_dnn_50``, ``vgg_mcdo_smoothing_16``
or ``alexnet_dnn_smoothing``. Our modules carry the same names as theirs (``layer0``, ``layer1.0.conv1``,
``smooth1``, ``classifier.0.dense``...), so the key mapping (:func:`paper_key_to_ours`) only strips the
``module.`` prefix that ``nn.DataParallel`` adds.

The paper's code keeps MC dropout on in eval mode; an imported ``mcdo`` model is deterministic in eval
mode until ``model.mc(True)`` (smoothbench's MC samples are explicit).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from smoothbench.errors import UserError, param
from smoothbench.fileio import atomic_open, check_writable_folder, sha256_file
from smoothbench.models.registry import create_model
from smoothbench.models.spec import ModelSpec
from smoothbench.models.store import MODEL_FILENAME, save_model, torch_load_safely

DATASETS: dict[str, dict[str, Any]] = {
    "cifar10": {"num_classes": 10, "stem": "cifar", "image_size": 32,
                "mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)},
    "cifar100": {"num_classes": 100, "stem": "cifar", "image_size": 32,
                 "mean": (0.5071, 0.4867, 0.4408), "std": (0.2675, 0.2565, 0.2761)},
    "imagenet": {"num_classes": 1000, "stem": "imagenet", "image_size": 224,
                 "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}

_NAME = re.compile(r"^(alexnet|vgg|prevgg|resnet|preresnet|resnext|wideresnet)_(dnn|mcdo)(_smoothing)?(?:_(\d+))?$")
_DEPTHS: dict[str, dict[str, str]] = {
    "vgg": {d: f"vgg{d}" for d in ("11", "13", "16", "19")},
    "prevgg": {d: f"preact_vgg{d}" for d in ("11", "13", "16", "19")},
    "resnet": {d: f"resnet{d}" for d in ("18", "34", "50", "101", "152")},
    "preresnet": {d: f"preact_resnet{d}" for d in ("18", "34", "50", "101", "152")},
    "resnext": {"50": "resnext50_32x4d", "101": "resnext101_32x8d"},
    "wideresnet": {"50": "wide_resnet50_2", "101": "wide_resnet101_2"},
}


def parse_paper_name(name: str) -> dict[str, str]:
    """``resnet_mcdo_smoothing_18`` → ``{"arch": "resnet18", "method": "mcdo", "smoothing": "tanh-blur"}``."""
    match = _NAME.match(name) if isinstance(name, str) else None
    family, method, smooth, depth = match.groups() if match else (None, None, None, None)
    if family == "alexnet" and depth is None:
        arch = "alexnet"
    else:
        arch = _DEPTHS.get(family or "", {}).get(depth or "")
    if arch is None:
        raise UserError(f"unknown model name {name!r} in the checkpoint; expected a name of the paper's get_model "
                        "such as resnet_mcdo_smoothing_18, preresnet_dnn_50, vgg_dnn_16 or alexnet_mcdo")
    return {"arch": arch, "method": method, "smoothing": "tanh-blur" if smooth else "none"}


def paper_key_to_ours(key: str) -> str:
    """The one key rename: drop ``nn.DataParallel``'s ``module.`` prefix; every other key is identical."""
    return key[len("module."):] if key.startswith("module.") else key


def _read_checkpoint(path: Path) -> dict[str, Any]:
    payload = torch_load_safely(path, "checkpoint of the paper's code")
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str) \
            or not isinstance(payload.get("state_dict"), dict):
        raise UserError(f"{path} is not a checkpoint of the paper's code (expected a dict with 'name' and "
                        "'state_dict', as written by its models.save)")
    bad = next((k for k, v in payload["state_dict"].items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise UserError(f"{path}: state_dict entry {bad!r} is not a tensor; the file is not a plain checkpoint")
    return payload


def _build_spec(paper_name: str, dataset: str, overrides: dict[str, Any] | None) -> ModelSpec:
    fields = {**parse_paper_name(paper_name), "blur": "box2-pad1", "tau": 10.0, "dataset": dataset,
              **DATASETS[dataset]}
    known = set(ModelSpec.__dataclass_fields__)
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise UserError(f"unknown override {unknown[0]!r}; overridable fields: {', '.join(sorted(known))}")
    fields.update(overrides or {})
    return ModelSpec(**fields)


def _match_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, spec: ModelSpec) -> dict:
    """Check names and shapes against ``model``; returns a complete state dict or raises UserError."""
    ours = model.state_dict()
    for key, value in ours.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):  # only a counter; absent from some old torch versions
                state[key] = value
                continue
            raise UserError(f"{path}: the checkpoint has no weight {key!r} that {spec.name} needs; "
                            "is the name in the file right for these weights?")
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(f"{path}: {key!r} has shape {tuple(state[key].shape)} in the checkpoint but "
                            f"{tuple(value.shape)} in {spec.name} ({spec.num_classes} classes, {spec.stem} stem); "
                            f"check {param('dataset')} (it sets the classes and the stem) or {param('arch')}")
    extra = next((k for k in state if k not in ours), None)
    if extra is not None:
        raise UserError(f"{path}: the checkpoint has a weight {extra!r} that {spec.name} does not have "
                        "(a non-default block or filter of the paper's code?)")
    return state


def import_paper_checkpoint(path: str | os.PathLike, *, dataset: str, out_dir: str | os.PathLike,
                            overrides: dict[str, Any] | None = None, force: bool = False) -> Path:
    """Convert a checkpoint of the paper's code into ``out_dir/model.pt`` (+ ``out_dir/config.json``).

    ``dataset`` (cifar10, cifar100, imagenet) sets classes, stem, image size and normalisation;
    ``overrides`` replaces any :class:`ModelSpec` field (e.g. ``{"num_classes": 200}``). The checkpoint is
    read with ``torch.load(weights_only=True)``; an optimizer state in it is dropped. Refuses (UserError)
    a foreign file, an unknown name, weights whose names or shapes do not match, and an existing
    ``model.pt`` unless ``force``. Returns the path of the written model file.
    """
    path = Path(path)
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r} for a paper checkpoint; choose one of {', '.join(DATASETS)}")
    if not path.is_file():
        raise UserError(f"no such checkpoint file: {path}")
    out_dir = Path(out_dir)
    model_path = out_dir / MODEL_FILENAME
    if model_path.exists() and not force:
        raise UserError(f"{model_path} already exists; use {param('force')} to overwrite it or choose another folder")
    check_writable_folder(out_dir)
    payload = _read_checkpoint(path)
    spec = _build_spec(payload["name"], dataset, overrides)
    model = create_model(spec)
    state = {paper_key_to_ours(k): v for k, v in payload["state_dict"].items()}
    model.load_state_dict(_match_weights(model, state, path, model.spec))
    sha = sha256_file(path)
    config = {
        "kind": "paper-checkpoint-import",
        "source_path": str(path.resolve()),
        "source_sha256": sha,
        "paper_name": payload["name"],
        "dataset": dataset,
        "overrides": dict(overrides or {}),
        "optimizer_dropped": "optimizer" in payload,
        "spec": model.spec.to_dict(),
    }
    with atomic_open(out_dir / "config.json", "w") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    save_model(model, model_path, extra={"dataset": dataset, "source": "paper-checkpoint",
                                         "paper_name": payload["name"], "source_sha256": sha})
    return model_path
