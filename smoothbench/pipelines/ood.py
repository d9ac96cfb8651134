"""``run_ood``: how well a model's uncertainty separates its test set from out-of-distribution sets, at several
ensemble sizes, one MC pass per set.

Rows (:data:`smoothbench.schema.OOD_ROW_KEY`): one per (model, in-set, OOD set, score, ensemble size), with
``auroc_ood``, ``aupr_in``, ``aupr_out`` and ``fpr95`` (:func:`smoothbench.metrics.ood_metrics`; the
in-distribution images are the positive class and every score is "higher = more in-distribution").

Scores (:data:`smoothbench.schema.OOD_SCORES`): ``msp`` max p̄; ``entropy`` −H(p̄); ``max_logit`` and ``energy``
(logsumexp) of the members' **mean logits** (logits are averaged only for these two scores); ``mutual_information``
and ``variation_ratio`` negated, from the members' running sums. With ``calibrate``, ``msp`` and ``entropy`` use
the temperature-scaled p̄ (fitted on clean held-out images) and ``energy`` becomes T·logsumexp(z̄/T); the other
scores do not depend on a temperature that is the same for every image (their ranking is unchanged).

Resumable: an OOD set whose rows are all in ``out`` already is skipped before it is loaded; each finished set
is written at once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from smoothbench import distributed, plots
from smoothbench.data import get_dataset
from smoothbench.data.ood import NOISE_IMAGES, get_ood_set, parse_ood_sets
from smoothbench.errors import UserError, param
from smoothbench.evaluation.calibration import Calibration, fit_calibration
from smoothbench.evaluation.ensembles import EnsemblePredictions
from smoothbench.evaluation.members import Members, load_members
from smoothbench.evaluation.scoring import Profile, Row, predict_with, provenance, size_columns
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.fileio import atomic_open, check_writable_folder
from smoothbench.metrics import ood as ood_scores
from smoothbench.metrics.ood import ood_metrics
from smoothbench.models.sources import ModelOptions, for_dataset
from smoothbench.progress import Progress
from smoothbench.results import store
from smoothbench.schema import DEFAULT_OOD_SCORES, OOD_ROW_KEY, OOD_SCORES

PathLike = str | os.PathLike


def parse_scores(text: str | Sequence[str]) -> list[str]:
    """``"msp,energy"`` → the score names (each in :data:`smoothbench.schema.OOD_SCORES`)."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n).strip() for n in text]
    names = list(dict.fromkeys(n for n in names if n))
    unknown = [n for n in names if n not in OOD_SCORES]
    if unknown or not names:
        raise UserError(f"{param('scores')} must name scores from {', '.join(OOD_SCORES)}, got {text!r}")
    return names


@dataclass
class OodRequest:
    """One OOD evaluation: ``models`` (one, or several for a deep ensemble) on the test split of ``dataset``
    (default: the checkpoint's, from ``data_dir``) against every set of ``ood_sets`` (``svhn``, ``cifar10``,
    ``cifar100``, ``textures``, ``noise``, ``noise-gaussian``, ``folder:PATH``; :mod:`smoothbench.data.ood`),
    read from ``ood_dir`` (default ``data_dir``), under each of ``scores``. ``settings.subset`` limits the
    in-distribution images (the class-balanced sample of N test images every command evaluates, after
    ``settings.subset_file`` if given) and every OOD set (a random N of a larger set, drawn from
    ``settings.seed``). ``out``: the rows
    (CSV or JSON, resumable); ``plot``: a folder for score histograms (largest ensemble size).
    """

    models: Sequence[PathLike]
    ood_sets: str | Sequence[str] = "noise"
    scores: str | Sequence[str] = DEFAULT_OOD_SCORES
    settings: EvalSettings = field(default_factory=EvalSettings)
    model_options: ModelOptions = field(default_factory=ModelOptions)
    dataset: str | None = None
    data_dir: PathLike | None = None
    ood_dir: PathLike | None = None
    download: bool = False
    workers: int = 4
    out: PathLike | None = None
    format: str | None = None
    plot: PathLike | None = None

    def __post_init__(self) -> None:
        self.ood_sets = parse_ood_sets(self.ood_sets)
        self.scores = parse_scores(self.scores)
        if self.format not in (None, "csv", "json"):
            raise UserError(f"{param('format')} must be csv or json, got {self.format!r}")


@dataclass
class OodResult:
    """The rows of this call (sets already done are not recomputed), files written, where the time went."""

    model: str
    dataset: str
    rows: pd.DataFrame
    skipped: list[str]
    files: list[Path]
    profile: Profile
    seconds: float


def score_images(name: str, predictions: EnsemblePredictions, size: int) -> np.ndarray:
    """Per-image OOD score ``name`` of the ensemble of ``size`` (calibrated p̄ and T where the predictions have
    them)."""
    probs = predictions.calibrated.get(size, predictions.probs[size])
    temperature = predictions.temperatures.get(size, 1.0)
    if name == "msp":
        return ood_scores.msp(probs)
    if name == "entropy":
        return ood_scores.entropy_score(probs)
    if name == "max_logit":
        return ood_scores.max_logit(predictions.mean_logits[size])
    if name == "energy":
        return ood_scores.energy(predictions.mean_logits[size], temperature)
    members = predictions.diversity(size)
    if name == "mutual_information":
        return ood_scores.mutual_information_score(members)
    return ood_scores.variation_ratio_score(members)


def _sample(source, n: int | None, seed: int):
    """``source``, or a seeded random ``n`` of its images (in their order) when it has more."""
    if n is None or len(source) <= n:
        return source
    return source.select(np.sort(np.random.default_rng(seed).choice(len(source), size=n, replace=False)))


def run_ood(request: OodRequest, *, progress: Progress | None = None) -> OodResult:
    """Predict the in-distribution test set once, then each OOD set not yet in ``request.out``, and score
    every (set, score, size); rows of each set are written when it is done."""
    if request.out is not None:
        store.check_results_file(request.out, OOD_ROW_KEY, request.format)
    if request.plot is not None:
        check_writable_folder(request.plot)
    settings = request.settings.on_device()
    members = load_members(request.models, for_dataset(request.model_options, request.dataset))
    dataset = request.dataset or members.spec.dataset
    members.check_dataset(dataset)
    data_dir = None if request.data_dir is None else str(request.data_dir)
    ood_dir = request.ood_dir if request.ood_dir is not None else request.data_dir
    profile = Profile()
    start = time.perf_counter()
    calibration = fit_calibration(members, settings, dataset, data_dir, download=request.download,
                                  workers=request.workers)
    head = {**members.columns(), "dataset": dataset, "split": "test",
            "calibration": "" if calibration is None else calibration.column}
    sizes = size_columns(settings.ensembles, len(members.models), settings.mc_samples)
    with profile.section("io"):
        done = store.done_keys(request.out, OOD_ROW_KEY) if request.out is not None else set()
    todo = [name for name in request.ood_sets
            if not all(store.row_key({**head, "ood_set": name, "score": score, **size}, OOD_ROW_KEY, settings) in done
                       for score in request.scores for size in sizes)]
    skipped = [name for name in request.ood_sets if name not in todo]
    rows: list[Row] = []
    files: list[Path] = []
    if todo:
        with distributed.main_first(), profile.section("data"):
            in_source = get_dataset(dataset, data_dir, "test", download=request.download, subset=settings.subset,
                                    subset_file=settings.subset_file, workers=request.workers)
        members.check_dataset(dataset, in_source.num_classes)
        if progress is not None:
            progress.start(len(in_source), f"ood {members.name}: {dataset} test")
        in_preds = _predict(members, in_source, settings, calibration, progress, profile)
        for name in todo:
            with profile.section("data"):
                source = _sample(get_ood_set(name, dataset, ood_dir, download=request.download,
                                             count=min(len(in_source), NOISE_IMAGES), seed=settings.seed,
                                             workers=request.workers), settings.subset, settings.seed)
            if progress is not None:
                progress.start(len(source), f"ood {members.name}: {name}")
            # OOD images are keyed after the in-distribution ones, so no MC mask is shared between the sets
            out_preds = _predict(members, source, settings, calibration, progress, profile, offset=len(in_source))
            with profile.section("metrics"):
                new = _rows(head, name, source, in_source, in_preds, out_preds, request.scores, sizes, settings,
                            members)
            with profile.section("io"):
                if request.out is not None and distributed.is_main_process():
                    store.write_rows(request.out, new, key_columns=OOD_ROW_KEY, fmt=request.format)
                if request.plot is not None and distributed.is_main_process():
                    files += _histograms(Path(request.plot), members.name, dataset, name, in_preds, out_preds,
                                         request.scores)
            rows += new
    if request.out is not None:
        files.insert(0, Path(request.out))
    return OodResult(members.name, dataset, pd.DataFrame(rows), skipped, files, profile, time.perf_counter() - start)


def _predict(members: Members, source, settings: EvalSettings, calibration: Calibration | None,
             progress: Progress | None, profile: Profile, offset: int = 0) -> EnsemblePredictions:
    predictions = predict_with(settings, members.models, source, progress=progress, calibration=calibration,
                               index_offset=offset, logits=True)
    profile.add_predictions(predictions)
    return predictions


def _rows(head: Row, name: str, source, in_source, in_preds: EnsemblePredictions, out_preds: EnsemblePredictions,
          scores: Sequence[str], sizes: list[Row], settings: EvalSettings, members: Members) -> list[Row]:
    tail = {**provenance(settings, in_source, members), "n_ood": len(source), "ood_fingerprint": source.fingerprint}
    rows = []
    for size in sizes:
        k = size["ensemble_size"]
        for score in scores:
            found = ood_metrics(score_images(score, in_preds, k), score_images(score, out_preds, k))
            rows.append({**head, "ood_set": name, "score": score, **size,
                         "auroc_ood": found["auroc"], "aupr_in": found["aupr_in"], "aupr_out": found["aupr_out"],
                         "fpr95": found["fpr95"],
                         **({"temperature": in_preds.temperatures[k]} if k in in_preds.temperatures else {}),
                         **tail})
    return rows


def _histograms(folder: Path, model: str, dataset: str, name: str, in_preds: EnsemblePredictions,
                out_preds: EnsemblePredictions, scores: Sequence[str]) -> list[Path]:
    """Score histograms (PNG) and the scores themselves (CSV) at the largest ensemble size."""
    folder.mkdir(parents=True, exist_ok=True)
    size = max(in_preds.sizes)
    stem = f"{model}_{dataset}_vs_{name.replace('folder:', 'folder-').replace('/', '_')}_n{size}"
    table = {}
    written = []
    for score in scores:
        s_in, s_out = score_images(score, in_preds, size), score_images(score, out_preds, size)
        path = folder / f"{stem}_{score}.png"
        plots.ood_histogram(s_in, s_out, path, title=f"{model}: {dataset} vs {name}, size {size}", score=score)
        written.append(path)
        table[score] = np.concatenate([s_in, s_out])
    frame = pd.DataFrame({"set": ["in"] * len(in_preds.labels) + ["ood"] * len(out_preds.labels), **table})
    with atomic_open(folder / f"{stem}_scores.csv") as handle:
        frame.to_csv(handle, index=False)
    return written + [folder / f"{stem}_scores.csv"]
