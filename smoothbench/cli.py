"""The ``smoothbench`` command line: flags → one library call (:mod:`smoothbench.pipelines`) → rich output.

Bad input raises :class:`~smoothbench.errors.UserError` in the library and is printed here as one line
(parameters spelled as flags) with exit status 2; usage errors print Typer's usage message with status 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from smoothbench import terminal
from smoothbench.cli_options import (CalibrationFlags, EvalOptions, ModelFlags, calibration_options, evaluation_options,
                                     model_options, relaunch)
from smoothbench.errors import UserError, expected_failure
from smoothbench.schema import DEFAULT_OOD_SCORES
from smoothbench.terminal import RANK, console, show_table, stdout

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Accuracy, calibration and robustness of image classifiers, with spatial smoothing (Park & Kim, ICML 2022).",
)
data_app = typer.Typer(no_args_is_help=True, help="Prepare data sets (generate CIFAR-10-C / ImageNet-C).")
app.add_typer(data_app, name="data")

RUNS_ARG = typer.Argument(..., help="Run folders, model files or models from elsewhere (torchvision:NAME, timm:NAME, "
                          "py:FILE.py:FUNCTION, MODULE:FUNCTION; MODEL@FILE for its weights); several form a deep "
                          "ensemble (in the order given).")
DATA_DIR_OPT = typer.Option(None, "--data-dir", help="Folder holding the dataset (see data/README.md).")
DOWNLOAD_OPT = typer.Option(False, "--download", help="Download CIFAR-10/100 if absent (md5-checked).")
QUIET_OPT = typer.Option(False, "--quiet", help="No progress bar.")
EVAL_COLUMNS = ["model", "ensemble_size", "acc", "nll", "ece", "brier", "top5", "auroc_misclf"]
CALIBRATED_COLUMNS = ["temperature", "nll_ts", "ece_ts"]
SHIFT_COLUMNS = ["model", "shift", "ensemble_size", "acc_shift", "d_acc", "nll_shift", "d_nll", "ece_shift", "d_ece"]
OOD_COLUMNS = ["ood_set", "score", "ensemble_size", "auroc_ood", "aupr_in", "aupr_out", "fpr95"]
SUMMARY_COLUMNS = ["model", "ensemble_size", "clean_acc", "cAcc", "cNLL", "cECE", "cBrier", "mCE", "relative_mCE",
                   "mCNLL", "mCECE"]


def show_profile(profile, seconds: float) -> None:
    """The ``--profile`` line of an evaluation: its sections and sample-forwards per second."""
    terminal.print_profile(profile.seconds, seconds, profile.sample_forwards / seconds, "sample-forwards")


# ----------------------------------------------------------------------------------------------------------
@app.command()
def models(
    num_classes: int = typer.Option(10, help="Number of classes the parameter counts are for."),
    stem: str = typer.Option("cifar", help="cifar (3x3 conv, no max-pool) or imagenet (7x7/2 + max-pool)."),
    format: str = typer.Option("table", "--format", help="table, or csv (arch,method,smoothing,head,params)."),
    head: Optional[str] = typer.Option(None, "--head", help="Classifier head: gap or mlp (the paper's GAP/MLP "
                                       "ablation; default: each family's own)."),
) -> None:
    """List the architectures; with --format csv one row per arch x method x smoothing with its parameter count."""
    from smoothbench.models.table import model_rows

    if format not in ("table", "csv"):
        raise UserError(f"--format must be table or csv, got {format!r}")
    rows = model_rows(num_classes=num_classes, stem=stem, head=head)
    if format == "csv":
        typer.echo("arch,method,smoothing,head,params")
        for row in rows:
            typer.echo(f"{row['arch']},{row['method']},{row['smoothing']},{row['head']},{row['params']}")
        return
    show_table(rows, ["arch", "family", "method", "smoothing", "head", "params"],
               f"models ({num_classes} classes, {stem} stem)")


@app.command("eval")
@evaluation_options()
@calibration_options()
@model_options()
def eval_command(
    runs: List[Path] = RUNS_ARG,
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the checkpoint's)."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = DOWNLOAD_OPT,
    split: str = typer.Option("test", help="test or train."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results file (CSV or JSON); rows of the same key are replaced."),
    format: Optional[str] = typer.Option(None, "--format", help="csv or json (default: from --out's suffix)."),
    save_probs: Optional[Path] = typer.Option(None, "--save-probs", help="Write averaged probabilities + labels (.npz)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for reliability diagrams (PNG + CSV per size) and risk-coverage curves."),
    *, options: EvalOptions, calibration: CalibrationFlags, models: ModelFlags,
) -> None:
    """Accuracy, NLL, ECE, Brier and more at several ensemble sizes, in one pass over the data."""
    from smoothbench.pipelines.eval import EvalRequest, run_eval

    relaunch(options.nproc)
    request = EvalRequest(runs, calibration.applied(options.settings()), models.options(), dataset=dataset, data_dir=data_dir,
                          download=download, split=split, out=out, format=format, save_probs=save_probs, plot=plot)
    with terminal.progress(options.quiet) as bar:
        result = run_eval(request, progress=bar)
    columns = EVAL_COLUMNS + (CALIBRATED_COLUMNS if "temperature" in result.rows else [])
    show_table(result.rows.to_dict("records"), columns,
               f"{result.model} on {result.dataset}/{result.split} ({result.n_images} images)")
    if options.profile:
        show_profile(result.profile, result.seconds)


@app.command()
@evaluation_options()
@calibration_options()
@model_options()
def corrupt(
    runs: List[Path] = RUNS_ARG,
    dataset: str = typer.Option(..., help="cifar10-c, cifar100-c or imagenet-c."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Released corrupted set (or, with --generate, the clean dataset folder)."),
    clean_data_dir: Optional[Path] = typer.Option(None, "--clean-data-dir", help="Clean dataset folder for the severity-0 row (released sweeps)."),
    generate: bool = typer.Option(False, "--generate", help="Corrupt the clean test set on the fly with smoothbench's engine."),
    corruptions: str = typer.Option("common", help="common (15), extra (4), all (19) or comma-separated names."),
    severities: str = typer.Option("1,2,3,4,5", help="Severities 1..5."),
    corruption_seed: int = typer.Option(0, "--corruption-seed", help="Seed of generated corruptions."),
    imagenet_c_transform: str = typer.Option("hendrycks", "--imagenet-c-transform", help="hendrycks (centre crop 224) or paper (resize 256 + crop 224)."),
    frost_dir: Optional[Path] = typer.Option(None, "--frost-dir", help="Local frost textures (else fetched once and cached)."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Check released CIFAR-C files against their published md5 (--no-verify for sets you made)."),
    out: Path = typer.Option(Path("sweep.csv"), "--out", help="Per-cell results (appended cell by cell; a rerun resumes)."),
    summary_out: Optional[Path] = typer.Option(None, "--summary-out", help="Summary table (default: <out>_summary.csv)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="alexnet-imagenet-c, paper-alexnet-cifar10/-cifar100/-imagenet (packaged), a paper AlexNet CSV, or another model's sweep CSV."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for metric-vs-severity plots."),
    *, options: EvalOptions, calibration: CalibrationFlags, models: ModelFlags,
) -> None:
    """Corruption sweep: one row per (model, corruption, severity, ensemble size), then cAcc/cNLL/cECE and mCE."""
    from smoothbench.evaluation.corruption_cells import CorruptionSweep
    from smoothbench.pipelines.corrupt import SweepRequest, run_corruption_sweep

    relaunch(options.nproc)
    settings = calibration.applied(options.settings())
    sweep = CorruptionSweep(dataset, data_dir=data_dir, clean_data_dir=clean_data_dir, generate=generate,
                            corruptions=corruptions, severities=severities, corruption_seed=corruption_seed,
                            imagenet_c_transform=imagenet_c_transform, frost_dir=frost_dir, verify=verify)
    request = SweepRequest(runs, sweep, settings, models.options(), out=out, summary_out=summary_out,
                           baseline=baseline, plot=plot)
    with terminal.progress(options.quiet) as bar:
        result = run_corruption_sweep(request, progress=bar)
    if RANK != 0:
        return
    show_table(result.summary.to_dict("records"), SUMMARY_COLUMNS, f"{result.model} on {dataset}")
    if options.profile:
        show_profile(result.profile, result.seconds)
    console.print(f"rows: {out}  summary: {request.summary_path}")


@app.command()
@evaluation_options(exclude=("nproc",))
@calibration_options()
@model_options()
def ood(
    runs: List[Path] = RUNS_ARG,
    ood_sets: str = typer.Option("noise", "--ood", help="OOD sets: svhn, cifar10, cifar100, textures (DTD), noise, "
                                 "noise-gaussian, folder:PATH (comma-separated)."),
    scores: str = typer.Option(",".join(DEFAULT_OOD_SCORES), "--scores", help="msp, entropy, max_logit, energy, "
                               "mutual_information, variation_ratio (comma-separated)."),
    dataset: Optional[str] = typer.Option(None, help="In-distribution dataset (default: the checkpoint's)."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    ood_dir: Optional[Path] = typer.Option(None, "--ood-dir", help="Folder holding svhn/, dtd/ or the other CIFAR "
                                           "(default: --data-dir)."),
    download: bool = typer.Option(False, "--download", help="Download CIFAR, SVHN or DTD if absent (md5-checked)."),
    workers: int = typer.Option(4, help="Image-decoding workers (folders)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results file (CSV or JSON); sets already in it are skipped."),
    format: Optional[str] = typer.Option(None, "--format", help="csv or json (default: from --out's suffix)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for score histograms, in vs OOD (largest size)."),
    *, options: EvalOptions, calibration: CalibrationFlags, models: ModelFlags,
) -> None:
    """OOD detection: AUROC, AUPR-in/out and FPR95 of each score, per OOD set and ensemble size, one pass per set."""
    from smoothbench.pipelines.ood import OodRequest, run_ood

    request = OodRequest(runs, ood_sets, scores, calibration.applied(options.settings()), models.options(),
                         dataset=dataset, data_dir=data_dir, ood_dir=ood_dir, download=download, workers=workers,
                         out=out, format=format, plot=plot)
    with terminal.progress(options.quiet) as bar:
        result = run_ood(request, progress=bar)
    if result.skipped:
        console.print(f"already in {out}: {', '.join(result.skipped)}")
    if len(result.rows):
        show_table(result.rows.to_dict("records"), OOD_COLUMNS, f"{result.model}: {result.dataset} test vs OOD sets")
    if options.profile:
        show_profile(result.profile, result.seconds)


@app.command()
@evaluation_options(exclude=("nproc", "subset_file"))  # its own --subset-file SET=FILE, one per set
@model_options()
def shift(
    runs: List[Path] = RUNS_ARG,
    sets: str = typer.Option(..., "--sets", help="cifar10.1, cifar10h (human soft labels), imagenet-v2, imagenet-a, "
                             "imagenet-r, imagenet-sketch (comma-separated)."),
    dataset: Optional[str] = typer.Option(None, help="Clean dataset (default: the checkpoint's)."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    shift_dir: Optional[Path] = typer.Option(None, "--shift-dir", help="Folder holding the shift sets (default: "
                                             "--data-dir; see data/README.md)."),
    download: bool = typer.Option(False, "--download", help="Download sets with a published URL and md5 if absent."),
    subset_file: Optional[List[str]] = typer.Option(None, "--subset-file", help="SET=FILE: evaluate only the images "
                                                    "listed in FILE (positions or relative paths; SET may be clean); "
                                                    "its sha256 goes into the rows. Repeat per set."),
    workers: int = typer.Option(4, help="Image-decoding workers (folders)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Rows of every set (CSV or JSON); rows of the same key are "
                                       "replaced."),
    diff_out: Optional[Path] = typer.Option(None, "--diff-out", help="Clean-vs-shift table (CSV or JSON)."),
    format: Optional[str] = typer.Option(None, "--format", help="csv or json (default: from the suffix)."),
    *, options: EvalOptions, models: ModelFlags,
) -> None:
    """Natural distribution shifts: the clean test set and each shift set, then shift minus clean per size."""
    from smoothbench.pipelines.shift import ShiftRequest, run_shift

    files = {}
    for item in subset_file or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--subset-file takes SET=FILE (e.g. clean=ids.txt), got {item!r}")
        files[name.strip()] = Path(path)
    request = ShiftRequest(runs, sets, options.settings(), models.options(), dataset=dataset, data_dir=data_dir,
                           shift_dir=shift_dir, download=download, subset_files=files, workers=workers, out=out,
                           diff_out=diff_out, format=format)
    with terminal.progress(options.quiet) as bar:
        result = run_shift(request, progress=bar)
    show_table(result.rows.to_dict("records"), ["shift"] + EVAL_COLUMNS, f"{result.model}: clean and shifted")
    if len(result.differences):
        show_table(result.differences.to_dict("records"), SHIFT_COLUMNS, "shift minus clean")
    if options.profile:
        show_profile(result.profile, result.seconds)


@app.command()
@evaluation_options(exclude=("ece_bins", "ece_mode", "profile"), defaults={"ensembles": "1,2,5,10"})
@model_options()
def consistency(
    runs: List[Path] = RUNS_ARG,
    dataset: Optional[str] = typer.Option(None, help="Clean dataset for ensemble-size consistency (default: the checkpoint's)."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    perturbations: Optional[str] = typer.Option(None, "--perturbations", help="CIFAR-10-P: all or comma-separated names (default: none)."),
    p_data_dir: Optional[Path] = typer.Option(None, "--p-data-dir", help="Released CIFAR-10-P folder (<perturbation>.npy)."),
    generate: bool = typer.Option(False, "--generate", help="Generate CIFAR-10-P sequences from the clean test set."),
    out: Path = typer.Option(Path("consistency.csv"), "--out", help="Results (CSV or JSON)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for the agreement-vs-ensemble-size plot."),
    *, options: EvalOptions, models: ModelFlags,
) -> None:
    """How stable predictions are across ensemble sizes and along perturbation sequences (CIFAR-10-P)."""
    from smoothbench.pipelines.consistency import ConsistencyRequest, run_consistency

    relaunch(options.nproc)
    request = ConsistencyRequest(runs, options.settings(), models.options(), dataset=dataset, data_dir=data_dir,
                                 perturbations=perturbations, p_data_dir=p_data_dir, generate=generate, out=out,
                                 plot=plot)
    with terminal.progress(options.quiet) as bar:
        result = run_consistency(request, progress=bar)
    rows = result.rows.to_dict("records")
    show_table([r for r in rows if r["kind"] == "mc-size"],
               ["model", "ensemble_size", "accuracy", "agreement", "flip_rate", "tv", "kl", "seed_agreement", "seed_tv"],
               f"{result.model}: consistency across ensemble sizes")
    perturbed = [r for r in rows if r["kind"] == "perturbation"]
    if perturbed:
        show_table(perturbed, ["perturbation", "ensemble_size", "consistency", "cec", "flip_prob", "top5_dist"],
                   f"{result.model}: CIFAR-10-P")
    console.print(f"rows: {out}")


@app.command()
def leaderboard(
    inputs: List[Path] = typer.Argument(..., help="Result files or folders (eval, corrupt, consistency, ood, shift)."),
    view: str = typer.Option("paper", "--view", help="paper (clean, corrupted, consistency), selective, ood (a group per OOD set and score) or shift (a group per set)."),
    sort: Optional[str] = typer.Option(None, help="Metric to rank by (default: the view's: nll, aurc, auroc_ood, acc)."),
    ensemble_size: Optional[int] = typer.Option(None, "--ensemble-size", help="Ensemble size to rank (default: each model's largest)."),
    format: str = typer.Option("md", "--format", help="md, csv, html or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of printing."),
    allow_mixed: bool = typer.Option(False, "--allow-mixed", help="Rank rows with different data/settings together."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Baseline for mCE columns (as in `corrupt --baseline`)."),
) -> None:
    """Rank many runs' results in one table, with provenance; mixed settings are not ranked together."""
    from smoothbench.pipelines.leaderboard import LeaderboardRequest, run_leaderboard

    result = run_leaderboard(LeaderboardRequest(inputs, sort=sort, view=view, ensemble_size=ensemble_size, format=format, out=out,
                                                allow_mixed=allow_mixed, baseline=baseline))
    if out is None:
        typer.echo(result.text)
    else:
        console.print(f"leaderboard: {out}")
    for note in result.board.notes:
        console.print(f"note: {note}")


@app.command()
def report(
    inputs: List[Path] = typer.Argument(..., help="Result files or folders: eval, corrupt (+ summaries), consistency, eval --plot reliability CSVs, run folders."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML page to write."),
    sort: Optional[str] = typer.Option(None, help="Metric the leaderboard part ranks by (default: nll, or cNLL, agreement or consistency when the rows have no clean evaluation)."),
    title: str = typer.Option("smoothbench report", help="Title of the page."),
) -> None:
    """One self-contained HTML page: overview, leaderboard, the paper's plots, provenance (opens offline)."""
    from smoothbench.pipelines.report import ReportRequest, run_report

    result = run_report(ReportRequest(inputs, out=out, sort=sort, title=title))
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"report: {result.path} ({result.rows} rows, {len(result.figures)} figures, "
                  f"{result.bytes / 1e6:.1f} MB)")


@app.command("smooth-plan")
@model_options()
def smooth_plan(
    model: str = typer.Argument(..., help="A model: run folder, model file, torchvision:NAME, timm:NAME, py:FILE.py:FUNCTION."),
    dataset: Optional[str] = typer.Option(None, help="What the model is for (its input size; default imagenet)."),
    *, models: ModelFlags,
) -> None:
    """Where spatial smoothing (default tanh-blur) and MC dropout go in a model: one row per layer."""
    from smoothbench.models.sources import plan_table

    result = plan_table(model, models.options(), dataset)
    show_table(result.to_dict("records"), ["module", "where", "inserted", "channels", "resolution"],
               f"{model}: inserted layers")


@app.command("import-checkpoint")
def import_checkpoint(
    file: Path = typer.Argument(..., help="A checkpoint written by the paper's code (.pth.tar)."),
    dataset: str = typer.Option(..., help="cifar10, cifar100 or imagenet (sets classes, stem, normalisation)."),
    out: Path = typer.Option(..., "--out", help="Run folder to write (model.pt + config.json)."),
    arch: Optional[str] = typer.Option(None, help="Override the architecture inferred from the checkpoint's name."),
    method: Optional[str] = typer.Option(None, help="Override dnn/mcdo."),
    smoothing: Optional[str] = typer.Option(None, help="Override the smoothing kind."),
    dropout_rate: Optional[float] = typer.Option(None, "--dropout-rate", help="Override the MC-dropout rate."),
    tau: Optional[float] = typer.Option(None, help="Override tau."),
    force: bool = typer.Option(False, "--force", help="Replace an existing model.pt in --out."),
) -> None:
    """Convert a checkpoint of the paper's code (xxxnell/spatial-smoothing) into a smoothbench run folder."""
    from smoothbench.models.import_paper import import_paper_checkpoint

    overrides = {k: v for k, v in dict(arch=arch, method=method, smoothing=smoothing, dropout_rate=dropout_rate,
                                        tau=tau).items() if v is not None}
    path = import_paper_checkpoint(file, dataset=dataset, out_dir=out, overrides=overrides, force=force)
    console.print(f"wrote {path}")


@app.command()
def train(
    model: Optional[str] = typer.Option(None, "--model", help="Train a model from elsewhere instead: "
                                        "torchvision:NAME, timm:NAME, py:FILE.py:FUNCTION or MODULE:FUNCTION."),
    model_kwargs: Optional[List[str]] = typer.Option(None, "--model-kwargs", help="key=value for --model's builder "
                                                     "(repeat the flag); num_classes defaults to the dataset's."),
    mc_dropout: Optional[str] = typer.Option(None, "--mc-dropout", help="--model: auto (its dropout becomes MC "
                                             "dropout) or a rate inserted where --mc-dropout-where says."),
    mc_dropout_where: str = typer.Option("head", "--mc-dropout-where", help="--model: head, blocks or all."),
    placement: str = typer.Option("auto", "--placement", help="--model: auto or module names to smooth after."),
    cifar_stem: bool = typer.Option(False, "--cifar-stem", help="--model: a 3x3/1 stem without max-pool, for 32 px."),
    arch: str = typer.Option("resnet18", help="Architecture (`smoothbench models` lists them)."),
    method: str = typer.Option("dnn", help="dnn (deterministic) or mcdo (MC dropout)."),
    smoothing: str = typer.Option("none", help="none, tanh-blur (the paper's), blur or relu6-blur."),
    blur: str = typer.Option("box2-pad1", help="box2-pad1 (the paper code's, H->H+1), box2-same or binomial3."),
    tau: float = typer.Option(10.0, help="Temperature of tau*tanh(x/tau)."),
    dropout_rate: Optional[float] = typer.Option(None, "--dropout-rate", help="MC-dropout rate (default 0.3; AlexNet 0.1)."),
    width: Optional[int] = typer.Option(None, help="Base width (default: the family's, e.g. 64 for ResNets)."),
    head: Optional[str] = typer.Option(None, "--head", help="Classifier head: gap or mlp (default: the family's "
                                       "own; `smoothbench models --head` lists the counts)."),
    dataset: str = typer.Option("cifar10", help="cifar10, cifar100, imagenet or synthetic."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = DOWNLOAD_OPT,
    epochs: Optional[int] = typer.Option(None, help="Main epochs after warm-up (CIFAR 200, ImageNet 90)."),
    warmup_epochs: Optional[int] = typer.Option(None, "--warmup-epochs", help="Linear warm-up epochs (1)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Global batch size (CIFAR 128, ImageNet 256)."),
    lr: Optional[float] = typer.Option(None, help="Base learning rate (0.1)."),
    momentum: Optional[float] = typer.Option(None, help="SGD momentum (0.9)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="Weight decay on all parameters (CIFAR 5e-4, ImageNet 1e-4)."),
    schedule: Optional[str] = typer.Option(None, help="multistep or cosine."),
    milestones: Optional[str] = typer.Option(None, help="MultiStep milestones in main epochs, e.g. 60,120,160."),
    gamma: Optional[float] = typer.Option(None, help="MultiStep factor (CIFAR 0.2, ImageNet 0.1)."),
    seed: int = typer.Option(0, help="Seed of initialisation, data order, augmentation and dropout."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Channels-last memory format (faster on GPUs)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model for training."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (one per GPU; gloo on CPU), started "
                              "through torch.distributed.run like torchrun --nproc-per-node N."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="BatchNorm statistics over the global batch in distributed runs."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Train on a stratified subset of N images."),
    holdout: int = typer.Option(0, "--holdout", help="Never train on the last N training images (eval --calibrate "
                                "fits its temperature on them)."),
    eval_subset: Optional[int] = typer.Option(None, "--eval-subset", help="Validate each epoch on N test images (the class-balanced sample eval --subset N evaluates)."),
    workers: int = typer.Option(4, help="DataLoader workers (ImageNet)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<dataset>/<model>-seed<seed>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its checkpoint.pt."),
    force: bool = typer.Option(False, "--force", help="Replace a finished run folder."),
    profile: bool = typer.Option(False, "--profile", help="Print where the time went (setup, data, step, "
                                 "validation, io) and the training images/s."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or tables."),
) -> None:
    """Train one of the paper's models with the paper's recipe (or your overrides); --nproc N or torchrun for DDP."""
    from smoothbench.models.sources import ModelOptions, foreign_spec, parse_kwargs
    from smoothbench.models.spec import ModelSpec
    from smoothbench.training import TrainConfig, run_training

    relaunch(nproc)
    if model is None:
        spec = ModelSpec(arch, method=method, smoothing=smoothing, blur=blur, tau=tau, dropout_rate=dropout_rate,
                         width=width, head=head)
    elif head is not None:
        raise UserError("--head is for smoothbench's architectures (--arch); a --model keeps its own head")
    else:
        spec = foreign_spec(model, ModelOptions(kwargs=parse_kwargs(model_kwargs or []), mc_dropout=mc_dropout,
                                                mc_dropout_where=mc_dropout_where, smoothing=smoothing, blur=blur,
                                                tau=tau, placement=tuple(placement.split(",")),
                                                cifar_stem=cifar_stem))
    cfg = TrainConfig(
        model=spec, dataset=dataset, data_dir=None if data_dir is None else str(data_dir), download=download,
        epochs=epochs, warmup_epochs=warmup_epochs, batch_size=batch_size, lr=lr, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, milestones=milestones, gamma=gamma, seed=seed,
        device=device, precision=precision, channels_last=channels_last, compile=compile, sync_bn=sync_bn,
        subset=subset, holdout=holdout, eval_subset=eval_subset, workers=workers, out=None if out is None else str(out),
        resume=resume, force=force, profile=profile,
    )
    start = time.perf_counter()
    with terminal.progress(quiet) as bar:
        result = run_training(cfg, progress=bar)
    seconds = time.perf_counter() - start
    if not quiet:
        show_table(result.log, ["epoch", "lr", "train_loss", "train_acc", "test_acc", "test_nll", "seconds", "images_per_s"],
                   f"{result.spec.name} on {dataset}")
    console.print(f"run folder: {result.run_dir}  (test acc {result.test_acc:.2%}, {result.seconds:.0f}s)")
    if profile:  # images/s over the data + step time, like train_log.csv's images_per_s
        training = result.timings["data"] + result.timings["step"]
        terminal.print_profile(result.timings, seconds, result.images / max(training, 1e-9), "images")


@data_app.command("make-c")
def make_c(
    dataset: str = typer.Option(..., help="cifar10, cifar100 (writes <out>/<corruption>.npy) or imagenet (JPEG folders)."),
    data_dir: Path = typer.Option(..., "--data-dir", help="Clean dataset folder (ImageNet: the folder with val/)."),
    out: Path = typer.Option(..., "--out", help="Output folder; finished corruptions are skipped on a rerun."),
    corruptions: str = typer.Option("all", help="common, extra, all or comma-separated names."),
    seed: int = typer.Option(0, help="Seed of the random draws (per corruption, severity and image)."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    batch_size: int = typer.Option(500, "--batch-size", help="Images corrupted together."),
    frost_dir: Optional[Path] = typer.Option(None, "--frost-dir", help="Local frost textures (else fetched once and cached)."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Corrupt only N test images (the class-balanced sample eval --subset N evaluates)."),
    quiet: bool = QUIET_OPT,
) -> None:
    """Write CIFAR-10-C / CIFAR-100-C (released layout) or ImageNet-C with smoothbench's corruption engine."""
    from smoothbench.pipelines.make_c import MakeCRequest, make_corrupted_set

    request = MakeCRequest(dataset, data_dir, out, corruptions=corruptions, seed=seed, device=device,
                           batch_size=batch_size, frost_dir=frost_dir, subset=subset)
    with terminal.progress(quiet) as bar:
        path = make_corrupted_set(request, progress=bar)
    console.print(f"wrote {path}")


@app.command()
def reproduce(
    figure: str = typer.Argument(..., help="paper-fig2 (NLL, accuracy, ECE against N) or paper-fig9 (mCNLL, mCE, "
                                 "mCECE against N on the corrupted test set)."),
    scale: str = typer.Option(..., "--scale", help="tiny, small or full (see above)."),
    dataset: str = typer.Option("cifar100", help="cifar100 (the paper's figures) or cifar10."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = DOWNLOAD_OPT,
    seeds: int = typer.Option(3, help="Training seeds per model; the figure shows mean ± std over them."),
    out: Path = typer.Option(Path("reproduce"), "--out", help="Folder for the runs, tables and figures (shared by "
                             "both figures); run again to continue where it stopped."),
    c_data_dir: Optional[Path] = typer.Option(None, "--c-data-dir", help="paper-fig9: the released CIFAR-10-C / "
                                              "CIFAR-100-C folder (default: corrupt the test set on the fly)."),
    frost_dir: Optional[Path] = typer.Option(None, "--frost-dir", help="Frost textures for generated corruptions "
                                             "(else fetched once and cached)."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Evaluate at most N test images, a class-balanced "
                                         "sample (quick checks; below the scale's own count)."),
    plan: bool = typer.Option(False, "--plan", help="Print the grid with an estimated time per run from a short "
                              "timed probe; train nothing."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine (one per GPU; gloo on CPU), started "
                              "through torch.distributed.run like torchrun --nproc-per-node N."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast), training and evaluation."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Channels-last memory format (faster on GPUs)."),
    quiet: bool = QUIET_OPT,
) -> None:
    """Reproduce a figure of the paper: train ResNet-18 dnn/mcdo x none/tanh-blur x seeds with the paper's recipe,
    evaluate at N = 1..50, draw it with the paper's readings, write ours vs paper.

    Scales, against the paper's recipe (width 64, 1 + 200 epochs,
    milestones 60/120/160, 50,000 training and 10,000 test images):

    tiny: width 8 (x1/8), 1 + 1 epochs, 1,000 training images (x1/50),
    250 test images; Fig. 9: gaussian_noise, defocus_blur, fog, contrast
    at severity 3 on 100 images. A pipeline check: its numbers are noise.

    small: width 32 (x1/2), 1 + 50 epochs (x1/4, milestones 15/30/40),
    25,000 training images (x1/2), all test images; Fig. 9: the 15
    corruptions x 5 severities on 2,000 images.

    full: the paper's recipe exactly; Fig. 9: 15 x 5 on all 10,000 images.
    """
    from smoothbench.pipelines.reproduce import ReproduceRequest, run_reproduce

    request = ReproduceRequest(figure, scale, dataset=dataset, data_dir=data_dir, seeds=seeds, out=out,
                               c_data_dir=c_data_dir, frost_dir=frost_dir, subset=subset, download=download,
                               device=device, precision=precision, channels_last=channels_last, plan=plan)
    if not plan:
        relaunch(nproc)
    with terminal.progress(quiet or plan) as bar:
        result = run_reproduce(request, progress=bar)
    if plan:
        rows = [{**row, **{k: _duration(row[k]) for k in ("train_s", "eval_s", "total_s")}}
                for row in result.plan.to_dict("records")]
        show_table(rows, ["method", "smoothing", "seed", "status", "train_s", "eval_s", "total_s"],
                   f"{figure}, scale {result.scale.describe()}")
        console.print(f"estimated total: {_duration(result.plan['total_s'].sum())} in one process (probe: "
                      f"{result.seconds:.0f}s; data loading and corruption generation not counted)")
        return
    if RANK != 0:
        return
    table = result.table
    readings = table["paper"].notna().any()
    rows = [{"model": f"{r['method']} {r['smoothing']}", "N": r["ensemble_size"], "metric": f"{r['metric']} ({r['unit']})",
             "ours": r["ours_mean"], "std": r["ours_std"], "paper": r["paper"], "diff": r["difference"]}
            for r in (table[table["paper"].notna()] if readings else table).to_dict("records")]
    show_table(rows, ["model", "N", "metric", "ours", "std"] + (["paper", "diff"] if readings else []),
               f"{figure} on {dataset}, scale {result.scale.name}: ours (mean, std over {seeds} seeds) vs the paper's "
               "figure readings, in the figure's units")
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"figure: {result.files['figure']}  table: {result.files['table']}  runs: {result.files['runs']}")


def _duration(seconds: float) -> str:
    """``3h 05m``, ``4m 10s`` or ``12s``: an estimate as people read it."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_runs"), "--out", help="Folder for the demo's runs and tables."),
    epochs: int = typer.Option(5, help="Training epochs per model."),
    force: bool = typer.Option(False, "--force", help="Retrain even if the demo's runs exist."),
) -> None:
    """The whole pipeline on the embedded synthetic data, on the CPU, in a few minutes."""
    from smoothbench.pipelines.demo import DemoSettings, run_demo

    console.print("[bold]smoothbench demo[/bold]: four narrow ResNet-18s (dnn / MC dropout, with and without "
                  "spatial smoothing) on the synthetic dataset")
    with terminal.progress() as bar:
        result = run_demo(DemoSettings(out=out, epochs=epochs, force=force), progress=bar)
    if not result.train.empty:
        show_table(result.train.to_dict("records"), ["model", "test_acc", "test_nll", "seconds"], "training")
    show_table(result.eval.to_dict("records"), EVAL_COLUMNS,
               "clean test set (tiny nets, brief training: this shows the pipeline, not the paper's effect)")
    show_table(result.corrupt_summary.to_dict("records"), ["model", "ensemble_size", "clean_acc", "cAcc", "cNLL", "cECE"],
               "generated corruptions (4 types x severities 1, 3, 5)")
    show_table(result.consistency.to_dict("records"), ["model", "ensemble_size", "agreement", "tv", "seed_agreement"],
               "consistency across MC ensemble sizes")
    show_table(result.calibration().to_dict("records"), ["model", "ensemble_size", "ece", "ece_ts", "temperature"],
               "raw vs temperature-scaled ECE (temperature fitted on held-out training images)")
    show_table(result.ood_auroc("msp").to_dict("records"), ["model", "ensemble_size", "auroc_ood"],
               "OOD detection: AUROC of max softmax probability, test set vs generated uniform noise")
    stdout.print(result.leaderboard)
    console.print(f"files: {', '.join(str(p) for p in result.files.values())}")
    console.print(f"report: {result.files['report']} (open it in a browser; it says what these numbers can show)")


# ----------------------------------------------------------------------------------------------------------
analyze_app = typer.Typer(no_args_is_help=True, help="The paper's evidence for why smoothing helps: loss landscape, "
                          "Hessian spectrum, feature maps (README, \"Analyses\").")
app.add_typer(analyze_app, name="analyze")
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


def main() -> None:
    """Console-script entry point: one clear line and exit status 2 for bad input, usage errors as Typer shows
    them (exit 2), warnings on one line; anything unexpected keeps its traceback and asks for a bug report."""
    import warnings

    warnings.showwarning = terminal.one_line_warning
    try:
        status = app(standalone_mode=False)
        if isinstance(status, int) and status:  # typer.Exit(status), e.g. a failed --nproc launch
            sys.exit(status)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("interrupted")
        sys.exit(130)
    except typer.TyperException as err:  # usage errors: Typer's usage message, exit status 2
        show = getattr(err, "show", None)
        if show is not None:
            show()
        else:
            console.print(f"error: {err.format_message()}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except Exception as err:  # noqa: BLE001  (sorted into expected failures and bugs right here)
        failure = expected_failure(err)
        if failure is None:
            terminal.report_bug(smoothbench_version())
            sys.exit(1)
        # every torchrun process reports its error: one may fail alone (e.g. no GPU for its local rank)
        terminal.print_error(failure.for_cli(), RANK)
        sys.exit(2)
    finally:
        if "smoothbench.distributed" in sys.modules:  # leave a torchrun process group cleanly
            sys.modules["smoothbench.distributed"].cleanup()


def smoothbench_version() -> str:
    from smoothbench import __version__

    return __version__
