"""``smoothbench analyze``: loss landscape, Hessian spectrum and feature-map statistics of one model.

``run_landscape``, ``run_hessian`` and ``run_features`` each take a request and return a result with the
rows as DataFrames and the files written (CSVs with model and provenance columns, PNGs), as ``run_eval``
does; the computations are :mod:`smoothbench.analysis`'s. The output folder is checked before anything is
loaded. Files are named ``<model>_<split>_<analysis>...`` in ``out`` and replaced by a rerun.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from smoothbench.analysis import figures
from smoothbench.analysis.features import feature_positions, feature_statistics
from smoothbench.analysis.hessian import eigenvalue_histogram, hessian_spectra
from smoothbench.analysis.images import analysis_images
from smoothbench.analysis.landscape import NORMALIZATIONS, grid_coordinates, landscape, random_directions
from smoothbench.analysis.objective import recipe_weight_decay
from smoothbench.data import get_dataset
from smoothbench.data.info import SPLITS
from smoothbench.device import resolve_device
from smoothbench.errors import UserError, param
from smoothbench.evaluation.ensembles import check_plan
from smoothbench.evaluation.members import Members, load_members
from smoothbench.evaluation.scoring import provenance
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.fileio import atomic_open, check_writable_folder
from smoothbench.models.sources import ModelOptions, for_dataset
from smoothbench.progress import Progress

PathLike = str | os.PathLike


@dataclass
class AnalysisRequest:
    """What every analysis shares.

    ``model``: a run folder, model file or model reference (as ``eval`` takes one; ``model_options`` for models
    from elsewhere). ``settings``: ``subset`` (a class-balanced sample of N images, drawn from a fixed seed, as
    ``eval`` takes it) and ``subset_file`` (a published image list), ``seed`` (MC-dropout masks, augmentation
    draws, random directions and start vectors), ``device`` and
    ``batch_size``; the landscape also uses ``ensembles``, ``precision``, ``mc_chunk``, ``channels_last`` and
    the ECE binning, exactly as ``eval``. ``split``: ``train`` (augmented unless ``augment`` is off, the
    images drawn once from ``seed``) or ``test``. ``out``: the folder for the CSVs and PNGs.
    """

    model: PathLike
    settings: EvalSettings = field(default_factory=EvalSettings)
    model_options: ModelOptions = field(default_factory=ModelOptions)
    dataset: str | None = None
    data_dir: PathLike | None = None
    download: bool = False
    split: str = "train"
    augment: bool = True
    out: PathLike = "analysis"

    def __post_init__(self) -> None:
        if self.split not in (*SPLITS, "val"):
            raise UserError(f"{param('split')} must be train or test, got {self.split!r}")

    def _fp32_only(self, what: str) -> None:
        if self.settings.precision != "fp32":
            raise UserError(f"the {what} analysis runs in fp32; drop {param('precision')} {self.settings.precision}")


@dataclass
class LandscapeRequest(AnalysisRequest):
    """``grid``×``grid`` points over ``[-extent, extent]²`` along two random directions normalised by
    ``normalization`` (``filter``: Li et al.; ``paper``: the paper code's norm over dim 0);
    ``weight_decay`` weighs the ``l2`` term of ``loss`` (``None``: the dataset's training recipe, as the
    authors; 0: NLL alone). See :mod:`smoothbench.analysis.landscape`."""

    grid: int = 21
    extent: float = 1.0
    normalization: str = "filter"
    weight_decay: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        grid_coordinates(self.grid, self.extent)
        if self.normalization not in NORMALIZATIONS:
            raise UserError(f"{param('normalization')} must be one of {', '.join(NORMALIZATIONS)}, got "
                            f"{self.normalization!r}")
        _check_weight_decay(self.weight_decay)


@dataclass
class HessianRequest(AnalysisRequest):
    """The top ``top_k`` Hessian eigenvalues (power iteration: at most ``iterations`` products, relative
    tolerance ``tol``) of each of ``batches`` mini-batches of ``settings.batch_size`` images, the trace from
    ``trace_samples`` Rademacher vectors (0: none), and a ``bins``-bin histogram of the top eigenvalues.
    See :mod:`smoothbench.analysis.hessian`."""

    batches: int = 10
    top_k: int = 1
    iterations: int = 100
    tol: float = 1e-3
    trace_samples: int = 0
    weight_decay: float | None = None
    bins: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("batches", "top_k", "iterations", "bins"):
            if getattr(self, name) < 1:
                raise UserError(f"{param(name)} must be at least 1, got {getattr(self, name)}")
        if self.trace_samples < 0 or self.trace_samples == 1:
            raise UserError(f"{param('trace_samples')} must be 0 (no trace) or at least 2, got {self.trace_samples}")
        if not self.tol > 0:
            raise UserError(f"{param('tol')} must be positive, got {self.tol}")
        _check_weight_decay(self.weight_decay)
        self._fp32_only("Hessian")


@dataclass
class FeaturesRequest(AnalysisRequest):
    """Feature-map variance, MC-sample variance (``mc_samples`` keyed samples per image) and Fourier log
    amplitudes at every block and smoothing layer. See :mod:`smoothbench.analysis.features`."""

    split: str = "test"
    mc_samples: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mc_samples < 2:
            raise UserError(f"{param('mc_samples')} must be at least 2 (a variance across samples), got "
                            f"{self.mc_samples}")
        self._fp32_only("feature")


@dataclass
class AnalysisResult:
    """The rows of one analysis, the files written and the seconds it took (loading included)."""

    model: str
    dataset: str
    split: str
    n_images: int
    rows: pd.DataFrame
    files: list[Path]
    seconds: float


@dataclass
class HessianResult(AnalysisResult):
    """Also the histogram of the per-batch top eigenvalues (``lower``, ``upper``, ``count``, ``density``)."""

    spectrum: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class FeaturesResult(AnalysisResult):
    """Also the Fourier curves: ``dlog_amplitude`` per position and ``freq`` (units of π)."""

    fourier: pd.DataFrame = field(default_factory=pd.DataFrame)


def _check_weight_decay(value: float | None) -> None:
    if value is not None and value < 0:
        raise UserError(f"{param('weight_decay')} must be at least 0, got {value}")


@dataclass
class _Setup:
    """The loaded model, its images, the columns that lead every row of the analysis and where its files go."""

    members: Members
    model: torch.nn.Module
    images: object
    dataset: str
    settings: EvalSettings
    head: dict
    stem: Path
    start: float

    def provenance(self) -> dict:
        """``eval``'s provenance columns, less the ECE binning and precision (only the landscape scores metrics)."""
        columns = provenance(self.settings, self.images, self.members)
        return {k: v for k, v in columns.items() if k not in ("ece_bins", "ece_mode", "precision")}

    def file(self, suffix: str) -> Path:
        """``<out>/<model>_<split>_<analysis><suffix>``."""
        return self.stem.with_name(self.stem.name + suffix)

    def result(self, kind: type[AnalysisResult], rows: pd.DataFrame, files: list[Path], **extra) -> AnalysisResult:
        return kind(self.members.name, self.dataset, self.head["split"], len(self.images), rows, files,
                    time.perf_counter() - self.start, **extra)


def _members(request: AnalysisRequest) -> tuple[Members, EvalSettings, float]:
    """The output folder checked, the model loaded, the device resolved (no process group: one process)."""
    start = time.perf_counter()
    check_writable_folder(request.out)
    settings = request.settings.with_(device=resolve_device(str(request.settings.device)))
    return load_members([request.model], for_dataset(request.model_options, request.dataset)), settings, start


def _setup(request: AnalysisRequest, members: Members, settings: EvalSettings, start: float, analysis: str, *,
           limit: int | None = None) -> _Setup:
    """The data of ``request`` (at most ``limit`` images) for ``members``, and the rows' columns."""
    dataset = request.dataset or members.spec.dataset
    if dataset is None:
        raise UserError(f"give the {param('dataset')} to analyse {members.name} on")
    members.check_dataset(dataset)
    source = get_dataset(dataset, None if request.data_dir is None else str(request.data_dir), request.split,
                         download=request.download, subset=settings.subset, subset_file=settings.subset_file)
    members.check_dataset(dataset, source.num_classes)
    model = members.models[0].to(settings.device).eval()
    images = analysis_images(source, model.spec.preprocess, augment=request.augment, seed=settings.seed,
                             device=settings.device, limit=limit)
    head = {**members.columns(), "dataset": dataset, "split": source.split, "augment": images is not source}
    stem = Path(request.out) / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', members.name)}_{source.split}_{analysis}"
    return _Setup(members, model, images, dataset, settings, head, stem, start)


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        frame.to_csv(handle, index=False)
    return path


def _tidy(setup: _Setup, table: pd.DataFrame, extra: dict) -> pd.DataFrame:
    """``table`` between the model/data columns and the provenance (plus the analysis's own settings)."""
    tail = setup.provenance()
    rows = [{**setup.head, **row, **tail, **extra} for row in table.to_dict("records")]
    return pd.DataFrame(rows)


def run_landscape(request: LandscapeRequest, *, progress: Progress | None = None) -> AnalysisResult:
    """The loss landscape of ``request.model``: one row per grid point and ensemble size, a contour PNG of
    ``loss`` and a PNG of the 1-D slices through the centre (both at the largest ensemble size). At (0, 0)
    the rows equal ``smoothbench eval``'s on the same images and settings. The weights are restored exactly."""
    members, settings, start = _members(request)
    check_plan(members.models, settings.ensembles, settings.mc_samples)
    setup = _setup(request, members, settings, start, "landscape")
    weight_decay = recipe_weight_decay(setup.dataset) if request.weight_decay is None else request.weight_decay
    coordinates = grid_coordinates(request.grid, request.extent)
    directions = random_directions(setup.model, request.normalization, settings.seed)
    if progress is not None:
        progress.start(request.grid ** 2, f"landscape {members.name} ({request.grid}x{request.grid} points, "
                                          f"{len(setup.images)} images)")
    context = {key: setup.head[key] for key in ("dataset", "split", "augment")}
    rows = landscape(members, setup.images, settings, directions, coordinates, weight_decay=weight_decay,
                     context=context, progress=progress)
    rows = rows.assign(normalization=request.normalization, extent=request.extent, grid=request.grid,
                       weight_decay=weight_decay)
    largest = rows[rows["ensemble_size"] == settings.largest]
    title = f"{members.name}, {setup.dataset}/{setup.head['split']}, size {settings.largest}"
    files = [_write_csv(setup.file(".csv"), rows), setup.file("_contour.png"), setup.file("_slice.png")]
    figures.landscape_contour(largest, files[1], title=title)
    figures.landscape_slices(largest, files[2], title=title)
    return setup.result(AnalysisResult, rows, files)


def run_hessian(request: HessianRequest, *, progress: Progress | None = None) -> HessianResult:
    """Top Hessian eigenvalue(s) and trace of ``request.batches`` mini-batches (the first images of the test
    set, or of the augmented training epoch), their histogram CSV and PNG."""
    members, settings, start = _members(request)
    needed = request.batches * settings.batch_size
    setup = _setup(request, members, settings, start, "hessian", limit=needed)
    if len(setup.images) < needed:
        raise UserError(f"{request.batches} batches of {settings.batch_size} images need {needed} images but the "
                        f"{setup.dataset} {setup.head['split']} images number {len(setup.images)}; ask for fewer "
                        f"{param('batches')}, a smaller {param('batch_size')} or a larger {param('subset')}")
    weight_decay = recipe_weight_decay(setup.dataset) if request.weight_decay is None else request.weight_decay
    if progress is not None:
        progress.start(request.batches, f"hessian {members.name} ({request.batches} batches of {settings.batch_size})")
    batches = setup.images.eval_batches(settings.batch_size, setup.model.spec.preprocess, device=settings.device)
    table = hessian_spectra(setup.model, batches, top_k=request.top_k, iterations=request.iterations,
                            tol=request.tol, trace_samples=request.trace_samples, weight_decay=weight_decay,
                            seed=settings.seed, progress=progress)
    rows = _tidy(setup, table, {"top_k": request.top_k, "max_iterations": request.iterations, "tol": request.tol,
                                "trace_samples": request.trace_samples, "weight_decay": weight_decay,
                                "batch_size": settings.batch_size})
    spectrum = eigenvalue_histogram(table["eigenvalue_1"], request.bins)
    files = [_write_csv(setup.file(".csv"), rows), _write_csv(setup.file("_spectrum.csv"), spectrum),
             setup.file("_spectrum.png")]
    figures.eigenvalue_spectrum(spectrum, files[2], title=f"{members.name}: top Hessian eigenvalue per mini-batch")
    return setup.result(HessianResult, rows, files, spectrum=spectrum)


def run_features(request: FeaturesRequest, *, progress: Progress | None = None) -> FeaturesResult:
    """Feature-map statistics at every block and smoothing layer: one row per position, the Fourier curves,
    and a PNG of the statistics against depth with the smoothing and downsampling positions marked."""
    members, settings, start = _members(request)
    setup = _setup(request, members, settings, start, "features")
    preprocess = setup.model.spec.preprocess
    example = next(iter(setup.images.eval_batches(1, preprocess, device=settings.device)))[0]
    positions = feature_positions(setup.model, example)
    if not positions:
        raise UserError(f"{members.name} computes no 4-D feature maps (is it a vision transformer?); the feature "
                        "analysis reads the maps of CNN blocks")
    if progress is not None:
        progress.start(len(setup.images), f"features {members.name} ({len(positions)} positions)")
    table, fourier = feature_statistics(setup.model, setup.images.eval_batches(settings.batch_size, preprocess,
                                                                                device=settings.device),
                                        positions, mc_samples=request.mc_samples, seed=settings.seed, progress=progress)
    rows = _tidy(setup, table, {})
    fourier = _tidy(setup, fourier, {})
    files = [_write_csv(setup.file(".csv"), rows), _write_csv(setup.file("_fourier.csv"), fourier),
             setup.file("_depth.png")]
    figures.feature_depth(table, files[2], title=f"{members.name}: feature maps along depth")
    return setup.result(FeaturesResult, rows, files, fourier=fourier)
