"""Predictions → tidy metric rows: one row per ensemble size, with model columns and provenance."""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
import torch

from smoothbench import __version__, metrics
from smoothbench.errors import UserError, param
from smoothbench.evaluation.ensembles import EnsemblePredictions, predict
from smoothbench.evaluation.calibration import Calibration
from smoothbench.evaluation.members import Members
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.fileio import atomic_open
from smoothbench.progress import Progress
from smoothbench.schema import CALIBRATED_METRICS
from smoothbench.timing import SectionTimer

Row = dict[str, object]


class Profile(SectionTimer):
    """Where an evaluation's time went (``profile``): seconds per section, summed over every cell, and the
    image-forwards done (:attr:`EnsemblePredictions.sample_forwards`).

    Sections: ``data`` (loading or generating images, batching them), ``forward`` (the models), ``metrics``
    (scoring), ``io`` (reading done cells, writing rows and files). With ``EvalSettings.profile`` on a GPU,
    :func:`~smoothbench.evaluation.ensembles.predict` waits for the device at the boundaries of ``forward``,
    so queued kernels are charged to it.
    """

    def __init__(self) -> None:
        super().__init__(("data", "forward", "metrics", "io"))
        self.sample_forwards = 0

    def add_predictions(self, predictions: EnsemblePredictions) -> None:
        """Add one :func:`evaluate` call's timings and forwards."""
        for section, seconds in predictions.timings.items():
            self.add(section, seconds)
        self.sample_forwards += predictions.sample_forwards


def provenance(settings: EvalSettings, source, members: Members) -> Row:
    """Provenance columns of every row."""
    return {
        "smoothbench_version": __version__,
        "seed": settings.seed,
        "data_fingerprint": source.fingerprint,
        "n_images": len(source),
        "subset": settings.subset if settings.subset is not None else "",
        "subset_sha256": settings.subset_sha256,
        "ece_bins": settings.ece_bins,
        "ece_mode": settings.ece_mode,
        "precision": settings.precision,
        "preprocess": source.effective(members.spec.preprocess).describe(),
    }


def size_columns(sizes: Sequence[int], n_models: int, mc_samples: int | None) -> list[Row]:
    """The ``(ensemble_size, members, mc_samples)`` columns of each requested size.

    One model: size ``k`` is ``k`` MC samples of 1 member. A deep ensemble of ``n_models``: size ``k`` is ``k``
    members of ``mc_samples`` samples each (``None`` means 1, as in
    :func:`smoothbench.evaluation.ensembles.check_plan`).
    """
    many = n_models > 1
    return [{"ensemble_size": k, "members": k if many else 1, "mc_samples": (mc_samples or 1) if many else k}
            for k in sizes]


def score(predictions: EnsemblePredictions, settings: EvalSettings) -> list[Row]:
    """Size and metric columns per requested ensemble size (see :func:`smoothbench.metrics.summarize`).

    Non-finite probabilities (a forward that overflowed) are refused with one line, not scored."""
    for size, probs in predictions.probs.items():
        bad = int((~np.isfinite(probs)).any(axis=1).sum())
        if bad:
            raise UserError(f"the model gave NaN/inf probabilities for {bad} of {len(probs)} images at ensemble size "
                            f"{size}: its forward overflowed (with {param('precision')} bf16, try fp32) or its "
                            "inputs are broken")
    return [{**cols, **metrics.summarize(predictions.probs[cols["ensemble_size"]], predictions.labels,
                                         ece_bins=settings.ece_bins, ece_mode=settings.ece_mode,
                                         members=predictions.diversity(cols["ensemble_size"]))}
            for cols in size_columns(predictions.sizes, predictions.members, predictions.mc_samples)]


def predict_with(settings: EvalSettings, models: Sequence[torch.nn.Module], source, *, seed: int | None = None,
                 index_offset: int = 0, progress: Progress | None = None, announce: bool = True,
                 calibration: Calibration | None = None, **outputs) -> EnsemblePredictions:
    """:func:`smoothbench.evaluation.ensembles.predict` with ``settings``' sampling, class mask and speed options
    (``settings.device`` must be resolved: :meth:`EvalSettings.on_device`); ``seed`` overrides the MC seed.
    ``calibration`` adds its temperature-scaled predictions; ``outputs`` asks ``predict`` for more
    (``logits``, ``member_logits``)."""
    predictions = predict(
        models, source, settings.ensembles, mc_samples=settings.mc_samples, seed=settings.seed if seed is None else seed,
        index_offset=index_offset, batch_size=settings.batch_size, mc_chunk=settings.mc_chunk, device=settings.device,
        precision=settings.precision, channels_last=settings.channels_last, progress=progress,
        profile=settings.profile, compile=settings.compile, announce=announce, class_mask=settings.class_mask,
        temperatures=None if calibration is None else calibration.member_temperatures, **outputs)
    if calibration is not None:
        calibration.apply(predictions)
    return predictions


def calibrated_columns(predictions: EnsemblePredictions, size: int, settings: EvalSettings) -> Row:
    """The ``*_ts`` twins (:data:`smoothbench.schema.CALIBRATED_METRICS`) and ``temperature`` of one size;
    nothing for uncalibrated predictions."""
    if size not in predictions.calibrated:
        return {}
    scores = metrics.summarize(predictions.calibrated[size], predictions.labels, ece_bins=settings.ece_bins,
                               ece_mode=settings.ece_mode, include=CALIBRATED_METRICS)
    return {**{f"{name}_ts": scores[name] for name in CALIBRATED_METRICS}, "temperature": predictions.temperatures[size]}


def evaluate(members: Members, source, settings: EvalSettings, *, context: Row | None = None,
             progress: Progress | None = None, announce: bool = True,
             calibration: Calibration | None = None) -> tuple[list[Row], EnsemblePredictions]:
    """Predict and score ``source``: one tidy row per ensemble size, plus the predictions themselves.

    ``context`` adds identifying columns (dataset, split, corruption, severity, source...; a provenance column
    it names, such as ``shift``'s own ``subset_sha256``, takes its value from there); ``announce`` as
    in :func:`~smoothbench.evaluation.ensembles.predict`; ``calibration`` (fitted on held-out images) adds
    the temperature-scaled columns.
    """
    predictions = predict_with(settings, members.models, source, progress=progress, announce=announce,
                               calibration=calibration)
    head = {**members.columns(), **(context or {})}
    tail = {**provenance(settings, source, members), "calibration": "" if calibration is None else calibration.column}
    tail = {key: value for key, value in tail.items() if key not in head}
    start = time.perf_counter()
    rows = [{**head, **row, **calibrated_columns(predictions, row["ensemble_size"], settings), **tail}
            for row in score(predictions, settings)]
    predictions.timings["metrics"] = time.perf_counter() - start
    return rows, predictions


def save_probs(path: str | os.PathLike, predictions: EnsemblePredictions) -> None:
    """Averaged probabilities per size (``probs_<k>``) and ``labels`` in one ``.npz``, written atomically."""
    arrays = {f"probs_{k}": predictions.probs[k] for k in predictions.sizes}
    arrays["labels"] = predictions.labels
    arrays["sizes"] = np.asarray(predictions.sizes)
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
