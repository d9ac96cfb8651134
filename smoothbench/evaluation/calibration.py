"""Post-hoc calibration of an evaluation: where the held-out images come from, fitting one temperature per
ensemble size on them, and applying it to the evaluated predictions (formulas: :mod:`.temperature`).

The held-out images never overlap the evaluated ones: ``calibration_split=N`` takes the **last N images of
the training split** (the test split is what gets evaluated), ``calibration_data=DIR`` an image folder with
one sub-folder per class. A model that trained on those training images is over-confident on them, so its
temperature comes out too low: train with ``--holdout N`` (the last N training images are then never seen)
or give a folder; otherwise :class:`CalibrationWarning` says so. Corrupted and OOD sets reuse the temperatures
fitted on clean held-out images, as the literature does.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from smoothbench.data import DATASETS
from smoothbench.data.imagenet import ImageFolderSource
from smoothbench.errors import SettingsWarning, UserError, param
from smoothbench.evaluation.ensembles import EnsemblePredictions
from smoothbench.evaluation.members import Members
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.evaluation.temperature import fit_mean_temperature, fit_member_temperature, scale_mean
from smoothbench.progress import Progress


class CalibrationWarning(SettingsWarning):
    """The held-out calibration images are not really held out (the model trained on them)."""


@dataclass(frozen=True)
class Calibration:
    """Fitted temperatures per ensemble size, their ``mode`` and the images they were fitted on (``fitted_on``)."""

    mode: str
    temperatures: dict[int, float]
    fitted_on: str

    @property
    def column(self) -> str:
        """The ``calibration`` column: ``<mode>:<held-out images>``."""
        return f"{self.mode}:{self.fitted_on}"

    @property
    def member_temperatures(self) -> dict[int, float] | None:
        """What :func:`~smoothbench.evaluation.ensembles.predict` scales each pass with (``temperature`` mode)."""
        return self.temperatures if self.mode == "temperature" else None

    def apply(self, predictions: EnsemblePredictions) -> None:
        """Fill ``predictions.calibrated`` (the ``temperature`` mode's come from the pass itself)."""
        if self.mode == "temperature-mean":
            predictions.calibrated = {k: scale_mean(predictions.probs[k], t).astype(np.float32)
                                      for k, t in self.temperatures.items()}
        predictions.temperatures = dict(self.temperatures)
        missing = set(self.temperatures) - set(predictions.calibrated)
        if missing:
            raise RuntimeError(f"no calibrated predictions for sizes {sorted(missing)}")


def held_out_images(members: Members, settings: EvalSettings, dataset: str, data_dir: str | os.PathLike | None, *,
                    download: bool = False, workers: int = 4):
    """The calibration images and how the ``calibration`` column names them."""
    from smoothbench.data import get_dataset

    if settings.calibration_data is not None:
        folder = ImageFolderSource(dataset, "calibration", settings.calibration_data, workers=workers,
                                   image_size=DATASETS[dataset].image_size if dataset in DATASETS else 224)
        if folder.num_classes != members.spec.num_classes:
            raise UserError(f"{param('calibration_data')} {settings.calibration_data} has {folder.num_classes} class "
                            f"folders but {members.name} predicts {members.spec.num_classes} classes; give one folder "
                            "per class, named so they sort in the model's class order")
        return folder, f"folder:{folder.fingerprint}"
    if data_dir is None and dataset != "synthetic":
        raise UserError(f"calibrating on the last {param('calibration_split')} training images needs the clean {dataset} "
                        f"folder ({param('data_dir')}); or give {param('calibration_data')}")
    train = get_dataset(dataset, None if data_dir is None else str(data_dir), "train", download=download,
                        workers=workers)
    n, total = settings.calibration_split, len(train)
    if n >= total:
        raise UserError(f"{param('calibration_split')} {n} leaves no training images: {dataset} train has {total}; "
                        f"use fewer")
    # a model from elsewhere records no hold-out: assume it trained on the whole training split, as most do
    unseen = min(getattr(m, "training_meta", {}).get("holdout") or 0 for m in members.models)
    if unseen < n:
        warnings.warn(CalibrationWarning(
            f"{members.name} trained on {n - unseen} of the {n} calibration images (the last {n} of {dataset} train), "
            f"so the fitted temperature is too low; train with {param('holdout')} {n}, or give "
            f"{param('calibration_data')}"), stacklevel=2)
    return train.select(np.arange(total - n, total)), f"{dataset}/train[{total - n}:{total}]"


def fit_calibration(members: Members, settings: EvalSettings, dataset: str, data_dir: str | os.PathLike | None, *,
                    download: bool = False, workers: int = 4, progress: Progress | None = None) -> Calibration | None:
    """Fit ``settings.calibrate``'s temperature at every requested size on held-out images (``None`` when
    no calibration is asked for). One pass over the held-out images; the ``temperature`` mode keeps every
    pass's logits in host memory (passes × images × classes floats)."""
    from smoothbench.evaluation.scoring import predict_with

    if settings.calibrate is None:
        return None
    source, fitted_on = held_out_images(members, settings, dataset, data_dir, download=download, workers=workers)
    members.check_dataset(dataset, source.num_classes)
    if progress is not None:
        progress.start(len(source), f"calibration images ({fitted_on})")
    scaled_members = settings.calibrate == "temperature"
    predictions = predict_with(settings, members.models, source, progress=progress, announce=False,
                               member_logits=scaled_members)
    labels = predictions.labels
    if scaled_members:
        per_step = 1 if predictions.members == 1 else predictions.mc_samples
        temperatures = {k: fit_member_temperature(predictions.member_logits[: k * per_step], labels)
                        for k in predictions.sizes}
    else:
        temperatures = {k: fit_mean_temperature(predictions.probs[k], labels) for k in predictions.sizes}
    return Calibration(settings.calibrate, temperatures, fitted_on)
