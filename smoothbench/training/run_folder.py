"""Run folders: the files of one training run, the checkpoint format and the epoch log.

A run folder holds

- ``config.json``: every resolved setting, the model spec, package versions, data fingerprints, device;
- ``checkpoint.pt``: model, optimiser, scheduler, RNG states, completed epochs and the log so far, written
  atomically at the end of every epoch (loadable with ``torch.load(weights_only=True)``);
- ``train_log.csv``: one row per epoch (columns :data:`LOG_COLUMNS`): ``lr`` is the rate of the epoch's
  last step; ``train_loss``/``train_acc`` average over the epoch's augmented images as trained (dropout
  on, weights changing); ``seconds`` is the epoch's wall time with validation, ``images_per_s`` the
  training images over the training time alone;
- ``model.pt``: the final model (:func:`smoothbench.models.store.save_model`); its presence marks the run
  finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from smoothbench.distributed import is_main_process
from smoothbench.errors import UserError, param
from smoothbench.fileio import atomic_open, atomic_torch_save, check_writable_folder
from smoothbench.models.store import MODEL_FILENAME, save_model, torch_load_safely

CONFIG_FILENAME = "config.json"
CHECKPOINT_FILENAME = "checkpoint.pt"
LOG_FILENAME = "train_log.csv"
RUN_FILES = (CONFIG_FILENAME, CHECKPOINT_FILENAME, LOG_FILENAME, MODEL_FILENAME)
CHECKPOINT_FORMAT = "smoothbench-checkpoint"
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "test_nll", "seconds", "images_per_s")


class RunFolder:
    """The files of one run; every write goes through here and happens on the main process only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.writes = is_main_process()

    def file(self, name: str) -> Path:
        return self.path / name

    def claim(self, *, resume: bool, force: bool) -> dict[str, Any] | None:
        """Check the folder against resume/force; return the checkpoint to resume from, or None.

        A finished run (``model.pt`` present) is kept unless ``force``; an unfinished one (``checkpoint.pt``
        only) needs ``resume`` or ``force``. ``resume`` needs the folder to exist (a mistyped path must not
        start a new run); in an existing folder without a checkpoint it starts the run. The folder must be
        writable. Nothing is deleted here (see :meth:`clear`).
        """
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{param('out')} {self.path} is a file; give a folder for the run")
        if resume and not self.path.exists():
            raise UserError(f"there is no run folder {self.path} to resume; check {param('out')}, or leave out "
                            f"{param('resume')} to start a new run there")
        check_writable_folder(self.path)
        if force:
            return None
        if self.file(MODEL_FILENAME).exists():
            raise UserError(f"{self.path} holds a finished run; use {param('force')} to train it again or choose another "
                            f"{param('out')}")
        checkpoint = self.file(CHECKPOINT_FILENAME)
        if not checkpoint.exists():
            return None
        if not resume:
            raise UserError(f"{self.path} holds an unfinished run; add {param('resume')} to continue it or {param('force')} "
                            "to start over")
        payload = torch_load_safely(checkpoint, "training checkpoint")
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{checkpoint} is not a smoothbench training checkpoint; use {param('force')} to start over")
        return payload

    def clear(self) -> None:
        """Delete our own files (and temporaries left by a killed atomic write); anything else stays."""
        if self.writes:
            for name in RUN_FILES:
                self.file(name).unlink(missing_ok=True)
                for temporary in self.path.glob(f".{name}.*.tmp"):
                    temporary.unlink()

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if self.writes:
            with atomic_open(self.file(name), "w") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.write("\n")

    def write_log(self, rows: list[dict[str, float]]) -> None:
        if self.writes:
            with atomic_open(self.file(LOG_FILENAME), "w", newline="") as handle:
                handle.write(",".join(LOG_COLUMNS) + "\n")
                for row in rows:
                    handle.write(",".join(_csv_value(row[c]) for c in LOG_COLUMNS) + "\n")

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        if self.writes:
            atomic_torch_save(payload, self.file(CHECKPOINT_FILENAME))

    def save_model(self, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
        if self.writes:
            save_model(model, self.file(MODEL_FILENAME), extra=meta)
        return self.file(MODEL_FILENAME)


def _csv_value(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))
