"""``run_eval``: a model (or deep ensemble) on a clean test set at several ensemble sizes, rows and files out."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from smoothbench import distributed, metrics, plots
from smoothbench.data import get_dataset
from smoothbench.errors import UserError, param
from smoothbench.evaluation.calibration import fit_calibration
from smoothbench.evaluation.ensembles import EnsemblePredictions
from smoothbench.evaluation.members import Members, load_members
from smoothbench.evaluation.scoring import Profile, evaluate, save_probs
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.fileio import atomic_open, check_writable_file, check_writable_folder
from smoothbench.models.sources import ModelOptions, for_dataset
from smoothbench.progress import Progress
from smoothbench.results.store import check_results_file, write_rows
from smoothbench.schema import EVAL_ROW_KEY

PathLike = str | os.PathLike


@dataclass
class EvalRequest:
    """What ``smoothbench eval`` does.

    ``models``: run folders, model files or model references (``torchvision:resnet18``, ``timm:...``,
    ``py:file.py:builder``; several form a deep ensemble, in the order given); ``model_options`` applies to
    the models from elsewhere (weights, MC dropout, smoothing, input recipe).
    ``dataset``: the dataset to evaluate on (default: the checkpoint's), read from ``data_dir``
    (``download`` fetches CIFAR if absent); ``split``: ``test`` or ``train``. Files: ``out`` (CSV or JSON
    results; ``format`` overrides the suffix; rows of the same key are replaced), ``save_probs`` (averaged
    probabilities + labels, ``.npz``), ``plot`` (a folder for reliability diagrams, PNG + CSV per size, and the risk-coverage curves: CSV per
    size, one PNG of all sizes).
    """

    models: Sequence[PathLike]
    settings: EvalSettings = field(default_factory=EvalSettings)
    model_options: ModelOptions = field(default_factory=ModelOptions)
    dataset: str | None = None
    data_dir: PathLike | None = None
    download: bool = False
    split: str = "test"
    out: PathLike | None = None
    format: str | None = None
    save_probs: PathLike | None = None
    plot: PathLike | None = None

    def __post_init__(self) -> None:
        if self.format not in (None, "csv", "json"):
            raise UserError(f"{param('format')} must be csv or json, got {self.format!r}")


@dataclass
class EvalResult:
    """Rows (one per ensemble size), the predictions behind them, the files written and where the time went.

    ``seconds`` runs from the first forward to the last file written; ``profile`` holds its sections.
    """

    model: str
    dataset: str
    split: str
    n_images: int
    rows: pd.DataFrame
    predictions: EnsemblePredictions
    files: list[Path]
    profile: Profile
    seconds: float


def run_eval(request: EvalRequest, *, progress: Progress | None = None) -> EvalResult:
    """Evaluate ``request.models`` at every requested ensemble size in one pass, and write the files asked for.

    Every output is checked before any work. Under torchrun every process computes its shard and gets every
    row; rank 0 alone writes files.
    """
    _check_outputs(request)
    settings = request.settings.on_device()
    members = load_members(request.models, for_dataset(request.model_options, request.dataset))
    name = request.dataset or members.spec.dataset
    members.check_dataset(name)
    with distributed.main_first():  # rank 0 downloads first
        source = get_dataset(name, None if request.data_dir is None else str(request.data_dir), request.split,
                             download=request.download, subset=settings.subset, subset_file=settings.subset_file)
    members.check_dataset(name, source.num_classes)
    if progress is not None:
        passes = settings.largest * (1 if len(members.models) == 1 else (settings.mc_samples or 1))
        progress.start(len(source), f"eval {members.name} ({passes} passes)")
    start = time.perf_counter()
    calibration = fit_calibration(members, settings, name, request.data_dir, download=request.download,
                                  progress=progress)
    if progress is not None and calibration is not None:
        progress.start(len(source), f"eval {members.name} ({passes} passes)")
    rows, predictions = evaluate(members, source, settings, context={"dataset": name, "split": request.split},
                                 progress=progress, calibration=calibration)
    io_start = time.perf_counter()
    files = _write_files(request, members, name, settings, rows, predictions) if distributed.is_main_process() else []
    predictions.timings["io"] = time.perf_counter() - io_start
    profile = Profile()
    profile.add_predictions(predictions)
    return EvalResult(members.name, name, request.split, len(source), pd.DataFrame(rows), predictions, files,
                      profile, time.perf_counter() - start)


def _check_outputs(request: EvalRequest) -> None:
    """The files asked for can be written (and an existing results file takes these rows)."""
    if request.out is not None:
        check_results_file(request.out, EVAL_ROW_KEY, request.format)
    if request.save_probs is not None:
        check_writable_file(request.save_probs)
    if request.plot is not None:
        check_writable_folder(request.plot)


def _write_files(request: EvalRequest, members: Members, dataset: str, settings: EvalSettings, rows: list[dict],
                 predictions: EnsemblePredictions) -> list[Path]:
    """The results table, the probabilities and the reliability diagrams asked for; returns their paths."""
    files = []
    if request.out is not None:
        write_rows(request.out, rows, key_columns=EVAL_ROW_KEY, fmt=request.format)
        files.append(Path(request.out))
    if request.save_probs is not None:
        save_probs(request.save_probs, predictions)
        files.append(Path(request.save_probs))
    if request.plot is not None:
        folder = Path(request.plot)
        folder.mkdir(parents=True, exist_ok=True)
        curves = {}
        for size in predictions.sizes:
            bins = metrics.reliability_bins(predictions.probs[size], predictions.labels, bins=settings.ece_bins,
                                            mode=settings.ece_mode)
            stem = f"{members.name}_{dataset}_{request.split}_n{size}"
            with atomic_open(folder / f"{stem}_reliability.csv") as handle:
                bins.to_csv(handle, index=False)
            plots.reliability_diagram(bins, folder / f"{stem}_reliability.png",
                                      title=f"{members.name} on {dataset}, size {size}")
            curve = metrics.risk_coverage_curve(predictions.probs[size], predictions.labels)
            with atomic_open(folder / f"{stem}_risk_coverage.csv") as handle:
                curve.to_csv(handle, index=False)
            curves[f"size {size}"] = curve
            files += [folder / f"{stem}_reliability.csv", folder / f"{stem}_reliability.png",
                      folder / f"{stem}_risk_coverage.csv"]
        path = folder / f"{members.name}_{dataset}_{request.split}_risk_coverage.png"
        plots.risk_coverage_plot(curves, path, title=f"{members.name} on {dataset}: risk-coverage")
        files.append(path)
    return files
