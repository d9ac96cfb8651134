"""The ``smoothbench`` command line: flags → one library call (:mod:`smoothbench.pipelines`) → rich output.

Bad input raises :class:`~smoothbench.errors.UserError` in the library and is printed here as one line
(parameters spelled as flags) with exit status 2; usage errors print Typer's usage message with status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from smoothbench import terminal
from smoothbench.cli_analyze import analyze_app
from smoothbench.cli_options import (DATA_DIR_OPT, DOWNLOAD_OPT, EVAL_COLUMNS, RUNS_ARG, CalibrationFlags, EvalOptions,
                                     ModelFlags, calibration_options, evaluation_options, model_options, relaunch,
                                     show_profile)
from smoothbench.cli_workflows import data_app, workflow_app
from smoothbench.errors import UserError, expected_failure
from smoothbench.schema import DEFAULT_OOD_SCORES
from smoothbench.terminal import RANK, console, show_table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Accuracy, calibration and robustness of image classifiers, with spatial smoothing (Park & Kim, ICML 2022).",
)
app.add_typer(workflow_app)
app.add_typer(data_app, name="data")
app.add_typer(analyze_app, name="analyze")

CALIBRATED_COLUMNS = ["temperature", "nll_ts", "ece_ts"]
SHIFT_COLUMNS = ["model", "shift", "ensemble_size", "acc_shift", "d_acc", "nll_shift", "d_nll", "ece_shift", "d_ece"]
OOD_COLUMNS = ["ood_set", "score", "ensemble_size", "auroc_ood", "aupr_in", "aupr_out", "fpr95"]
SUMMARY_COLUMNS = ["model", "ensemble_size", "clean_acc", "cAcc", "cNLL", "cECE", "cBrier", "mCE", "relative_mCE",
                   "mCNLL", "mCECE"]


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
