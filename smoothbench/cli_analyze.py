"""The ``smoothbench analyze`` commands (loss landscape, Hessian spectrum, feature maps): flags → one library call
(:mod:`smoothbench.pipelines.analyze`) → rich output; registered on the app by :mod:`smoothbench.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from smoothbench import terminal
from smoothbench.cli_options import DATA_DIR_OPT, DOWNLOAD_OPT, EvalOptions, ModelFlags, evaluation_options, model_options
from smoothbench.terminal import console, show_table

analyze_app = typer.Typer(no_args_is_help=True, help="The paper's evidence for why smoothing helps: loss landscape, "
                          "Hessian spectrum, feature maps (README, \"Analyses\").")
MODEL_ARG = typer.Argument(..., help="A run folder, model file or model from elsewhere (as `eval` takes one).")
ANALYSIS_DATASET_OPT = typer.Option(None, "--dataset", help="Dataset (default: the checkpoint's).")
AUGMENT_OPT = typer.Option(True, "--augment/--no-augment", help="Train split: crops and flips as in training, drawn "
                           "once from --seed (the authors' choice).")
WEIGHT_DECAY_OPT = typer.Option(None, "--weight-decay", help="Weight of the authors' l2 term in the loss (default: "
                                "the dataset's training recipe, e.g. 5e-4; 0 for NLL alone).")
#: The evaluation flags the Hessian and feature analyses do not take (the landscape takes eval's).
_NOT_ANALYSIS = ("ensembles", "mc_samples", "ece_bins", "ece_mode", "mc_chunk", "precision", "channels_last", "compile",
                 "nproc", "profile")


def _analysis_request(kind, model: str, dataset: Optional[str], data_dir: Optional[Path], download: bool, split: str,
                      augment: bool, out: Path, options: EvalOptions, models: ModelFlags, **extra):
    """The request of one analysis command (its shared flags, plus ``extra``)."""
    return kind(model, options.settings(), models.options(), dataset=dataset, data_dir=data_dir, download=download,
                split=split, augment=augment, out=out, **extra)


@analyze_app.command("landscape")
@evaluation_options(exclude=("mc_samples", "nproc", "profile", "compile"))
@model_options()
def analyze_landscape(
    model: str = MODEL_ARG,
    dataset: Optional[str] = ANALYSIS_DATASET_OPT,
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = DOWNLOAD_OPT,
    split: str = typer.Option("train", help="train (augmented, as the paper) or test."),
    augment: bool = AUGMENT_OPT,
    grid: int = typer.Option(21, "--grid", help="N x N grid points."),
    extent: float = typer.Option(1.0, "--extent", help="The grid spans [-extent, extent] in units of the direction "
                                 "norm (the paper code's CSV: 0.1)."),
    normalization: str = typer.Option("filter", "--normalization", help="filter (Li et al., per filter) or paper "
                                      "(the paper code's norm over dim 0)."),
    weight_decay: Optional[float] = WEIGHT_DECAY_OPT,
    out: Path = typer.Option(Path("landscape"), "--out", help="Folder for the CSV and the contour and slice PNGs."),
    *, options: EvalOptions, models: ModelFlags,
) -> None:
    """Loss and every eval metric on a grid of weights along two random directions; the centre equals `eval`."""
    from smoothbench.pipelines.analyze import LandscapeRequest, run_landscape

    request = _analysis_request(LandscapeRequest, model, dataset, data_dir, download, split, augment, out, options,
                                models, grid=grid, extent=extent, normalization=normalization,
                                weight_decay=weight_decay)
    with terminal.progress(options.quiet) as bar:
        result = run_landscape(request, progress=bar)
    rows = result.rows
    centre = rows[(rows["x"] == 0) & (rows["y"] == 0)]
    if len(centre):  # an odd grid has the trained weights at its centre
        show_table(centre.to_dict("records"), ["x", "y", "ensemble_size", "acc", "nll", "ece", "brier", "loss"],
                   f"{result.model} on {result.dataset}/{result.split} ({result.n_images} images): the trained weights")
    console.print(f"loss over the {grid}x{grid} grid: {rows['loss'].min():.4f} to {rows['loss'].max():.4f}")
    console.print(f"files: {', '.join(map(str, result.files))}")


@analyze_app.command("hessian")
@evaluation_options(exclude=_NOT_ANALYSIS, defaults={"batch_size": 128})
@model_options()
def analyze_hessian(
    model: str = MODEL_ARG,
    dataset: Optional[str] = ANALYSIS_DATASET_OPT,
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = DOWNLOAD_OPT,
    split: str = typer.Option("train", help="train (augmented, as the authors) or test."),
    augment: bool = AUGMENT_OPT,
    batches: int = typer.Option(10, "--batches", help="Mini-batches (one top eigenvalue each)."),
    top_k: int = typer.Option(1, "--top-k", help="Eigenvalues per batch, largest magnitude first (deflation)."),
    iterations: int = typer.Option(100, "--iterations", help="Most Hessian-vector products per eigenvalue."),
    tol: float = typer.Option(1e-3, "--tol", help="Relative change that stops the power iteration."),
    trace_samples: int = typer.Option(0, "--trace-samples", help="Rademacher vectors for the Hutchinson trace "
                                      "(0: no trace)."),
    weight_decay: Optional[float] = WEIGHT_DECAY_OPT,
    bins: int = typer.Option(20, "--bins", help="Histogram bins of the spectrum."),
    out: Path = typer.Option(Path("hessian"), "--out", help="Folder for the CSVs and the spectrum PNG."),
    *, options: EvalOptions, models: ModelFlags,
) -> None:
    """Top Hessian eigenvalue(s) per mini-batch by power iteration (the max eigenvalue spectrum), optional trace."""
    from smoothbench.pipelines.analyze import HessianRequest, run_hessian

    request = _analysis_request(HessianRequest, model, dataset, data_dir, download, split, augment, out, options,
                                models, batches=batches, top_k=top_k, iterations=iterations, tol=tol,
                                trace_samples=trace_samples, weight_decay=weight_decay, bins=bins)
    with terminal.progress(options.quiet) as bar:
        result = run_hessian(request, progress=bar)
    rows = result.rows
    show_table(rows.to_dict("records"), ["batch", "n_images", "loss", *[f"eigenvalue_{i + 1}" for i in range(top_k)],
                                          "trace", "trace_se"],
               f"{result.model} on {result.dataset}/{result.split}: Hessian per mini-batch")
    top = rows["eigenvalue_1"]
    console.print(f"top eigenvalue over {len(rows)} batches: mean {top.mean():.4g}, std {top.std(ddof=0):.4g}, "
                  f"range {top.min():.4g} to {top.max():.4g}")
    console.print(f"files: {', '.join(map(str, result.files))}")


@analyze_app.command("features")
@evaluation_options(exclude=_NOT_ANALYSIS, defaults={"batch_size": 64})
@model_options()
def analyze_features(
    model: str = MODEL_ARG,
    dataset: Optional[str] = ANALYSIS_DATASET_OPT,
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = DOWNLOAD_OPT,
    split: str = typer.Option("test", help="test (as the authors) or train."),
    augment: bool = AUGMENT_OPT,
    mc_samples: int = typer.Option(8, "--mc-samples", help="MC-dropout samples per image for the variance across "
                                   "samples."),
    out: Path = typer.Option(Path("features"), "--out", help="Folder for the CSVs and the depth PNG."),
    *, options: EvalOptions, models: ModelFlags,
) -> None:
    """Per block and smoothing layer: feature-map variance, variance across MC samples, Fourier log amplitude."""
    from smoothbench.pipelines.analyze import FeaturesRequest, run_features

    request = _analysis_request(FeaturesRequest, model, dataset, data_dir, download, split, augment, out, options,
                                models, mc_samples=mc_samples)
    with terminal.progress(options.quiet) as bar:
        result = run_features(request, progress=bar)
    show_table(result.rows.to_dict("records"), ["position", "module", "smoothing", "downsample", "height",
                                                "fmap_variance", "mc_variance", "fourier_high"],
               f"{result.model} on {result.dataset}/{result.split} ({result.n_images} images): feature maps")
    console.print(f"files: {', '.join(map(str, result.files))}")
