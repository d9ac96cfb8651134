"""Model files: ``model.pt`` = spec + weights, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from smoothbench.errors import UserError
from smoothbench.fileio import atomic_torch_save, sha256_file
from smoothbench.models.spec import ModelSpec

MODEL_FORMAT = "smoothbench-model"
MODEL_FORMAT_VERSION = 1
MODEL_FILENAME = "model.pt"


def save_model(model, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Write ``model`` (with its ``.spec``) atomically; ``extra`` holds plain metadata (dataset, seed...)."""
    from smoothbench import __version__

    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "smoothbench_version": __version__,
        "spec": model.spec.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(extra or {}),
    }
    atomic_torch_save(payload, path)


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A run folder means its ``model.pt``; a file means itself."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILENAME
        if not path.exists():
            raise UserError(f"{path.parent} has no {MODEL_FILENAME}: is it a finished `smoothbench train` run?")
    elif not path.exists():
        raise UserError(f"no such model file or run folder: {path}")
    return path


def torch_load_safely(path: str | os.PathLike, what: str = "file") -> Any:
    """``torch.load(weights_only=True)`` on CPU; anything that needs more is refused with a clear line."""
    import torch

    with open(path, "rb") as handle:
        magic = handle.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # zip (torch >= 1.6) or a legacy pickle
        raise UserError(f"{path} is not a readable {what} (not a torch file)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing: one line is ours
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        needed = re.search(r"GLOBAL (\S+)", str(err))
        if needed is None:
            raise UserError(f"{path} is not a readable {what} (truncated or corrupt, or a pickle that cannot be "
                            "read without running code)") from None
        raise UserError(f"{path} is not a plain-weights {what}: refused, loading it would run code ({needed.group(1)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise UserError(f"{path} is not a readable {what} (truncated or corrupt: {str(err).split('.')[0]})") from None


def load_model_file(path: str | os.PathLike):
    """Load a model file or run folder; returns ``(model, payload)`` with the model in eval mode, MC off."""
    from smoothbench.models.registry import create_model

    path = resolve_model_path(path)
    payload = torch_load_safely(path, "smoothbench model file")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(
            f"{path} is not a smoothbench model file; a checkpoint of the paper's code can be converted with "
            "`smoothbench import-checkpoint`"
        )
    if payload.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer smoothbench (format {payload['format_version']}); upgrade smoothbench")
    try:
        spec = ModelSpec.from_dict(payload["spec"])
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path} has a broken model spec: {err}") from None
    model = create_model(spec)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{path} has no state_dict of weights; it is not a complete smoothbench model file")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a tensor of another shape: the file was written for another configuration
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        raise UserError(f"{path}: its weights do not fit its spec {spec.name} ({detail.rstrip('.')}); the file is "
                        "broken or was edited: retrain or re-export it") from None
    if missing or unexpected:
        raise UserError(
            f"{path}: weights do not match {spec.name} ({len(missing)} missing, {len(unexpected)} unexpected keys, "
            f"e.g. {(missing or unexpected)[0]})"
        )
    import torch

    broken = [k for k, v in state.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(v.isfinite().all())]
    if broken:
        raise UserError(f"{path}: the model's weights contain NaN/inf (in {len(broken)} tensors, e.g. {broken[0]}); "
                        "the training diverged or the file is damaged: retrain or take an earlier checkpoint")
    model.eval()
    model.mc(False)
    model.checkpoint_sha256 = sha256_file(path)
    model.source_path = str(path)
    meta = payload.get("meta")
    model.training_meta = dict(meta) if isinstance(meta, dict) else {}
    return model, payload


def load(path: str | os.PathLike):
    """``smoothbench.load(PATH)``: the model of a run folder or model file, in eval mode, MC dropout off.

    ``model.spec`` holds arch, method, smoothing, classes and normalisation.
    """
    return load_model_file(path)[0]
