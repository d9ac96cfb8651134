"""The ``smoothbench`` command line: parse flags, call the library, show rich tables and progress bars.

Nothing here computes anything the Python API cannot; bad input raises :class:`UserError` below and is
printed here as one line with exit status 2.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from smoothbench.errors import UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Accuracy, calibration and robustness of image classifiers, with spatial smoothing (Park & Kim, ICML 2022).",
)
data_app = typer.Typer(no_args_is_help=True, help="Prepare data sets (generate CIFAR-10-C / ImageNet-C).")
app.add_typer(data_app, name="data")
# Under torchrun every process runs the command; only rank 0 prints (RANK is read here, not through
# smoothbench.distributed, so that `smoothbench --help` does not import torch).
RANK = int(os.environ.get("RANK", "0"))
console = Console(stderr=True, quiet=RANK != 0)
stdout = Console(quiet=RANK != 0)


# ----------------------------------------------------------------------------------------------------------
# shared helpers
@contextmanager
def progress_bar(total: int, description: str, *, quiet: bool = False) -> Iterator:
    """A rich progress bar; yields the ``progress(units, text)`` callback the library expects."""
    if quiet or RANK != 0:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, status="")

        def advance(units: int, text: str = "") -> None:
            bar.update(task, advance=units, status=text)

        advance.bar = bar  # type: ignore[attr-defined]
        advance.task = task  # type: ignore[attr-defined]
        yield advance


def show_table(rows: list[dict], columns: list[str], title: str, percent: tuple[str, ...] = ()) -> None:
    """Print rows as a rich table (fractions in ``percent`` columns shown as %)."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "corruption", "kind", "perturbation", "arch") else "right")
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            if isinstance(value, float):
                cells.append("nan" if value != value else (f"{100 * value:.2f}%" if column in percent else f"{value:.4f}"))
            else:
                cells.append(str(value))
        table.add_row(*cells)
    stdout.print(table)


def parse_int_list(text: str, flag: str, low: int, high: int) -> list[int]:
    """``"1,2,3"`` → ``[1, 2, 3]`` with bounds; bad input is a UserError naming the flag."""
    try:
        values = sorted({int(item) for item in text.split(",") if item.strip() != ""})
    except ValueError:
        raise UserError(f"{flag} needs comma-separated integers, got {text!r}") from None
    if not values or any(not low <= v <= high for v in values):
        raise UserError(f"{flag} values must lie in {low}..{high}, got {text!r}")
    return values


def without_option(argv: list[str], flag: str) -> list[str]:
    """``argv`` without ``flag VALUE`` / ``flag=VALUE`` (the rest is passed on unchanged)."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == flag:
            skip = True
        elif not token.startswith(flag + "="):
            kept.append(token)
    return kept


def relaunch(nproc: int) -> None:
    """``--nproc N`` (N != 1): run this same command in N processes on this machine through torch's launcher
    (as ``torchrun --standalone --nproc-per-node N`` would, ``--nproc`` dropped) and exit with their status."""
    if nproc != 1:
        from smoothbench.distributed import launch

        raise typer.Exit(launch(nproc, without_option(sys.argv[1:], "--nproc")))


def print_profile(sections: dict[str, float], total: float, rate: float, unit: str) -> None:
    """One ``--profile`` line: seconds per section, the total wall time and a throughput (``rate`` per second
    of ``unit``, e.g. sample-forwards or training images)."""
    timing = ", ".join(f"{name} {value:.2f}s" for name, value in sections.items())
    console.print(f"profile: {timing}, total {total:.2f}s, {rate:.0f} {unit}/s")


def refuse_overwrite(path: Optional[Path], force: bool, what: str) -> None:
    if path is not None and path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to replace the {what}")


EVAL_COLUMNS = ["model", "ensemble_size", "acc", "nll", "ece", "brier", "top5", "auroc_misclf"]
PERCENT = ("acc", "ece", "top5", "acc_90", "unc_90", "freq_90", "cAcc", "cECE", "clean_acc", "mCE", "relative_mCE", "mCNLL", "mCECE")


# ----------------------------------------------------------------------------------------------------------
@app.command()
def models(
    num_classes: int = typer.Option(10, help="Number of classes the parameter counts are for."),
    stem: str = typer.Option("cifar", help="cifar (3x3 conv, no max-pool) or imagenet (7x7/2 + max-pool)."),
    format: str = typer.Option("table", "--format", help="table, or csv (arch,method,smoothing,params)."),
) -> None:
    """List the architectures; with --format csv one row per arch x method x smoothing with its parameter count."""
    from smoothbench.models.table import model_rows

    if format not in ("table", "csv"):
        raise UserError(f"--format must be table or csv, got {format!r}")
    rows = model_rows(num_classes=num_classes, stem=stem)
    if format == "csv":
        typer.echo("arch,method,smoothing,params")
        for row in rows:
            typer.echo(f"{row['arch']},{row['method']},{row['smoothing']},{row['params']}")
        return
    show_table(rows, ["arch", "family", "method", "smoothing", "params"], f"models ({num_classes} classes, {stem} stem)")



def eval_settings(ensembles: str, mc_samples: Optional[int], seed: int, batch_size: int, mc_chunk: Optional[int], device: str,
                  precision: str, channels_last: bool, ece_bins: Optional[int], ece_mode: str, subset: Optional[int],
                  compile: bool = False):
    """Build :class:`EvalSettings` from the shared eval flags (``reference`` ECE defaults to the paper's 10 bins).

    Under torchrun this joins the process group and picks this process's GPU.
    """
    from smoothbench.distributed import setup
    from smoothbench.sweeps import EvalSettings

    bins = ece_bins if ece_bins is not None else (10 if ece_mode == "reference" else 15)
    return EvalSettings(sizes=ensembles, mc_samples=mc_samples, seed=seed, batch_size=batch_size, mc_chunk=mc_chunk,
                        device=setup(device), precision=precision, channels_last=channels_last, compile=compile,
                        ece_bins=bins, ece_mode=ece_mode, subset=subset)


RUNS_ARG = typer.Argument(..., help="Run folders or model files; several form a deep ensemble (in the order given).")
ENSEMBLES_OPT = typer.Option("1", "--ensembles", help="Ensemble sizes, e.g. 1,5,50 (MC samples, or deep-ensemble members).")
MC_SAMPLES_OPT = typer.Option(None, "--mc-samples", help="MC-dropout samples per member of a deep ensemble.")
SEED_OPT = typer.Option(0, "--seed", help="Seed of the MC-dropout masks (results are identical for the same seed).")
BATCH_OPT = typer.Option(256, "--batch-size", help="Images per forward pass (before repeating for MC samples).")
CHUNK_OPT = typer.Option(None, "--mc-chunk", help="MC samples per forward, batch repeated (default: 1 on CPU, 8 on GPU).")
DEVICE_OPT = typer.Option("auto", "--device", help="auto, cpu or cuda.")
PRECISION_OPT = typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast).")
CL_OPT = typer.Option(False, "--channels-last", help="Channels-last memory format (faster on GPUs).")
COMPILE_OPT = typer.Option(False, "--compile",
                           help="torch.compile the model (pays on GPUs for long sweeps; first batch compiles).")
NPROC_OPT = typer.Option(1, "--nproc", help="Processes on this machine (one per GPU; gloo on CPU), "
                         "started through torch.distributed.run like torchrun --nproc-per-node N.")
BINS_OPT = typer.Option(None, "--ece-bins", help="ECE bins (default 15; 10 with --ece-mode reference).")
ECE_MODE_OPT = typer.Option("standard", "--ece-mode", help="standard, or reference (the paper code's binning).")
SUBSET_OPT = typer.Option(None, "--subset", help="Evaluate the first N images only.")
DATA_DIR_OPT = typer.Option(None, "--data-dir", help="Folder holding the dataset (see data/README.md).")


@app.command("eval")
def eval_command(
    runs: List[Path] = RUNS_ARG,
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the checkpoint's)."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = typer.Option(False, "--download", help="Download CIFAR-10/100 if absent (md5-checked)."),
    split: str = typer.Option("test", help="test or train."),
    ensembles: str = ENSEMBLES_OPT,
    mc_samples: Optional[int] = MC_SAMPLES_OPT,
    ece_bins: Optional[int] = BINS_OPT,
    ece_mode: str = ECE_MODE_OPT,
    batch_size: int = BATCH_OPT,
    mc_chunk: Optional[int] = CHUNK_OPT,
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
    channels_last: bool = CL_OPT,
    compile: bool = COMPILE_OPT,
    nproc: int = NPROC_OPT,
    subset: Optional[int] = SUBSET_OPT,
    out: Optional[Path] = typer.Option(None, "--out", help="Results file (CSV or JSON); rows of the same key are replaced."),
    format: Optional[str] = typer.Option(None, "--format", help="csv or json (default: from --out's suffix)."),
    save_probs: Optional[Path] = typer.Option(None, "--save-probs", help="Write averaged probabilities + labels (.npz)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for reliability diagrams (PNG + CSV per size)."),
    profile: bool = typer.Option(False, "--profile", help="Print where the time went (data, forward, metrics, io)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Accuracy, NLL, ECE, Brier and more at several ensemble sizes, in one pass over the data."""
    import time

    from smoothbench import distributed
    from smoothbench.data import get_dataset
    from smoothbench.results import EVAL_KEYS, write_rows
    from smoothbench.sweeps import Profile, check_dataset, evaluate, load_members, save_probs as write_probs

    relaunch(nproc)
    settings = eval_settings(ensembles, mc_samples, seed, batch_size, mc_chunk, device, precision, channels_last,
                             ece_bins, ece_mode, subset, compile)
    if format not in (None, "csv", "json"):
        raise UserError(f"--format must be csv or json, got {format!r}")
    members = load_members(runs)
    name = dataset or members.spec.dataset
    check_dataset(members, name)
    with distributed.main_first():  # rank 0 downloads first
        source = get_dataset(name, None if data_dir is None else str(data_dir), split, download=download,
                             subset=subset, seed=seed)
    check_dataset(members, name, source.num_classes)
    passes = max(settings.sizes) * (1 if len(runs) == 1 else (mc_samples or 1))
    start = time.perf_counter()
    with progress_bar(len(source), f"eval {members.name} ({passes} passes)", quiet=quiet) as bar:
        rows, predictions = evaluate(members, source, settings, context={"dataset": name, "split": split},
                                     progress=bar, profile=profile)
    if RANK != 0:
        return  # every process holds the same rows; rank 0 writes and prints them
    io_start = time.perf_counter()
    if out is not None:
        write_rows(out, rows, key_columns=EVAL_KEYS, fmt=format)
    if save_probs is not None:
        write_probs(save_probs, predictions)
    if plot is not None:
        from smoothbench import metrics, plots
        from smoothbench.fileio import atomic_open

        plot.mkdir(parents=True, exist_ok=True)
        for size in predictions.sizes:
            bins = metrics.reliability_bins(predictions.probs[size], predictions.labels, bins=settings.ece_bins,
                                            mode=settings.ece_mode)
            stem = f"{members.name}_{name}_{split}_n{size}"
            with atomic_open(plot / f"{stem}_reliability.csv") as handle:
                bins.to_csv(handle, index=False)
            plots.reliability_diagram(bins, plot / f"{stem}_reliability.png", title=f"{members.name} on {name}, size {size}")
    predictions.timings["io"] = time.perf_counter() - io_start
    seconds = time.perf_counter() - start
    show_table(rows, EVAL_COLUMNS, f"{members.name} on {name}/{split} ({len(source)} images)", PERCENT)
    if profile:
        timings = Profile()
        timings.add_predictions(predictions)
        print_profile(timings.seconds, seconds, timings.sample_forwards / seconds, "sample-forwards")



def corruption_list(text: str, dataset: str) -> list[str]:
    """``common`` / ``extra`` / ``all`` or comma-separated names, validated against the engine's list."""
    from smoothbench.corruptions import names

    if text in ("common", "extra", "all"):
        return names(text)
    known = names("all")
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [c for c in chosen if c not in known]
    if unknown or not chosen:
        raise UserError(f"unknown corruption(s) {', '.join(unknown) or text!r}; use common, extra, all or names from: "
                        + ", ".join(known))
    return chosen


@app.command()
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
    ensembles: str = ENSEMBLES_OPT,
    mc_samples: Optional[int] = MC_SAMPLES_OPT,
    ece_bins: Optional[int] = BINS_OPT,
    ece_mode: str = ECE_MODE_OPT,
    batch_size: int = BATCH_OPT,
    mc_chunk: Optional[int] = CHUNK_OPT,
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
    channels_last: bool = CL_OPT,
    compile: bool = COMPILE_OPT,
    nproc: int = NPROC_OPT,
    subset: Optional[int] = SUBSET_OPT,
    out: Path = typer.Option(Path("sweep.csv"), "--out", help="Per-cell results (appended cell by cell; a rerun resumes)."),
    summary_out: Optional[Path] = typer.Option(None, "--summary-out", help="Summary table (default: <out>_summary.csv)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="alexnet-imagenet-c, a paper AlexNet CSV, or another model's sweep CSV."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for metric-vs-severity plots."),
    profile: bool = typer.Option(False, "--profile", help="Print where the sweep's time went (data, forward, metrics, io)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Corruption sweep: one row per (model, corruption, severity, ensemble size), then cAcc/cNLL/cECE and mCE."""
    import time

    from smoothbench import results
    from smoothbench.sweeps import CorruptionSweep, Profile, corruption_sweep, load_members

    relaunch(nproc)
    settings = eval_settings(ensembles, mc_samples, seed, batch_size, mc_chunk, device, precision, channels_last,
                             ece_bins, ece_mode, subset, compile)
    sweep = CorruptionSweep(
        dataset=dataset, data_dir=None if data_dir is None else str(data_dir),
        clean_data_dir=None if clean_data_dir is None else str(clean_data_dir), generate=generate,
        corruptions=corruption_list(corruptions, dataset), severities=parse_int_list(severities, "--severities", 1, 5),
        corruption_seed=corruption_seed, imagenet_c_transform=imagenet_c_transform,
        frost_dir=None if frost_dir is None else str(frost_dir),
    )
    base = results.load_baseline(baseline) if baseline is not None else None
    members = load_members(runs)
    cells = sweep.cells()
    timings = Profile() if profile else None
    start = time.perf_counter()
    with progress_bar(len(cells), f"corrupt {members.name}", quiet=quiet) as bar:
        corruption_sweep(members, sweep, settings, out, progress=bar, profile=timings)
    seconds = time.perf_counter() - start
    if RANK != 0:
        return  # rank 0 wrote the rows and writes the summary
    table = results.read_results([out])
    table = table[table["checkpoint_sha256"] == members.columns()["checkpoint_sha256"]]
    summary = results.summarize_corruptions(table, base)
    summary_path = summary_out or out.with_name(out.stem + "_summary.csv")
    results.write_rows(summary_path, summary, key_columns=results.SUMMARY_KEYS)
    if plot is not None:
        from smoothbench import plots

        plot.mkdir(parents=True, exist_ok=True)
        for metric in ("acc", "nll", "ece"):
            plots.metric_vs_severity(table, metric, plot / f"{members.name}_{dataset}_{metric}_vs_severity.png")
    columns = [c for c in ("model", "ensemble_size", "clean_acc", "cAcc", "cNLL", "cECE", "cBrier", "mCE",
                           "relative_mCE", "mCNLL", "mCECE") if c in summary.columns]
    show_table(summary.to_dict("records"), columns, f"{members.name} on {dataset}", PERCENT)
    if timings is not None:
        print_profile(timings.seconds, seconds, timings.sample_forwards / seconds, "sample-forwards")
    console.print(f"rows: {out}  summary: {summary_path}")


@app.command()
def consistency(
    runs: List[Path] = RUNS_ARG,
    dataset: Optional[str] = typer.Option(None, help="Clean dataset for ensemble-size consistency (default: the checkpoint's)."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    perturbations: Optional[str] = typer.Option(None, "--perturbations", help="CIFAR-10-P: all or comma-separated names (default: none)."),
    p_data_dir: Optional[Path] = typer.Option(None, "--p-data-dir", help="Released CIFAR-10-P folder (<perturbation>.npy)."),
    generate: bool = typer.Option(False, "--generate", help="Generate CIFAR-10-P sequences from the clean test set."),
    ensembles: str = typer.Option("1,2,5,10", "--ensembles", help="Ensemble sizes, e.g. 1,2,5,10,50."),
    mc_samples: Optional[int] = MC_SAMPLES_OPT,
    batch_size: int = BATCH_OPT,
    mc_chunk: Optional[int] = CHUNK_OPT,
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
    channels_last: bool = CL_OPT,
    compile: bool = COMPILE_OPT,
    nproc: int = NPROC_OPT,
    subset: Optional[int] = SUBSET_OPT,
    out: Path = typer.Option(Path("consistency.csv"), "--out", help="Results (CSV or JSON)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Folder for the agreement-vs-ensemble-size plot."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """How stable predictions are across ensemble sizes and along perturbation sequences (CIFAR-10-P)."""
    from smoothbench import results
    from smoothbench.data import get_dataset
    from smoothbench.sweeps import check_dataset, load_members, perturbation_rows, size_consistency_rows

    relaunch(nproc)
    settings = eval_settings(ensembles, mc_samples, seed, batch_size, mc_chunk, device, precision, channels_last,
                             None, "standard", subset, compile)
    members = load_members(runs)
    name = dataset or members.spec.dataset
    check_dataset(members, name)
    source = get_dataset(name, None if data_dir is None else str(data_dir), "test", subset=subset, seed=seed)
    check_dataset(members, name, source.num_classes)
    with progress_bar(2 * len(source), f"consistency {members.name}", quiet=quiet) as bar:
        rows = size_consistency_rows(members, source, settings, progress=bar)
    if perturbations:
        from smoothbench.corruptions.perturbations import perturb_sequence, perturbation_names

        chosen = perturbation_names() if perturbations == "all" else [p.strip() for p in perturbations.split(",")]
        unknown = sorted(set(chosen) - set(perturbation_names()))
        if unknown:
            raise UserError(f"unknown perturbation(s) {', '.join(unknown)}; choose from {', '.join(perturbation_names())}")
        if name != "cifar10":
            raise UserError("CIFAR-10-P consistency needs a CIFAR-10 model")
        if generate:
            clean = source.numpy_nhwc()

            def frames_of(p: str):
                return perturb_sequence(clean, p, seed=seed, device=settings.device)
            kind = "generated"
        else:
            if p_data_dir is None:
                raise UserError("--perturbations needs --p-data-dir (released CIFAR-10-P) or --generate")
            from smoothbench.corruptions.released_p import load_cifar10_p

            def frames_of(p: str):
                return load_cifar10_p(str(p_data_dir), p)
            kind = "released"
        total = len(chosen) * (len(source) if generate else (subset or 10000))
        with progress_bar(total, "CIFAR-10-P", quiet=quiet) as bar:
            rows += perturbation_rows(members, frames_of, chosen, settings, source_kind=kind, progress=bar)
    if RANK != 0:
        return  # every process holds the same rows; rank 0 writes and prints them
    results.write_rows(out, rows, key_columns=results.CONSISTENCY_KEYS)
    show_table([r for r in rows if r["kind"] == "mc-size"],
               ["model", "ensemble_size", "accuracy", "agreement", "flip_rate", "tv", "kl", "seed_agreement", "seed_tv"],
               f"{members.name}: consistency across ensemble sizes", ("accuracy", "agreement", "flip_rate", "seed_agreement"))
    prow = [r for r in rows if r["kind"] == "perturbation"]
    if prow:
        show_table(prow, ["perturbation", "ensemble_size", "consistency", "cec", "flip_prob", "top5_dist"],
                   f"{members.name}: CIFAR-10-P", ("consistency", "flip_prob"))
    if plot is not None:
        import pandas as pd

        from smoothbench import plots

        plot.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame([r for r in rows if r["kind"] == "mc-size"])
        plots.metric_vs_ensemble_size(frame, "agreement", plot / f"{members.name}_agreement_vs_size.png")
    console.print(f"rows: {out}")


@app.command()
def leaderboard(
    inputs: List[Path] = typer.Argument(..., help="Result files or folders (eval, corrupt, consistency)."),
    sort: str = typer.Option("nll", help="Metric to rank by."),
    ensemble_size: Optional[int] = typer.Option(None, "--ensemble-size", help="Ensemble size to rank (default: each model's largest)."),
    format: str = typer.Option("md", "--format", help="md, csv, html or json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here instead of printing."),
    allow_mixed: bool = typer.Option(False, "--allow-mixed", help="Rank rows with different data/settings together."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Baseline for mCE columns (as in `corrupt --baseline`)."),
) -> None:
    """Rank many runs' results in one table, with provenance; mixed settings are not ranked together."""
    from smoothbench.fileio import atomic_open
    from smoothbench.leaderboard import build_leaderboard
    from smoothbench.results import load_baseline, read_results

    renderers = {"md": "to_markdown", "csv": "to_csv", "html": "to_html", "json": "to_json"}
    if format not in renderers:
        raise UserError(f"--format must be one of {', '.join(renderers)}, got {format!r}")
    base = load_baseline(baseline) if baseline is not None else None
    board = build_leaderboard(read_results(inputs), sort=sort, ensemble_size=ensemble_size, allow_mixed=allow_mixed,
                              baseline=base)
    text = getattr(board, renderers[format])()
    if out is None:
        typer.echo(text)
    else:
        with atomic_open(out) as handle:
            handle.write(text)
        console.print(f"leaderboard: {out}")
    for note in board.notes:
        console.print(f"note: {note}")


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
    arch: str = typer.Option("resnet18", help="Architecture (`smoothbench models` lists them)."),
    method: str = typer.Option("dnn", help="dnn (deterministic) or mcdo (MC dropout)."),
    smoothing: str = typer.Option("none", help="none, tanh-blur (the paper's), blur or relu6-blur."),
    blur: str = typer.Option("box2-pad1", help="box2-pad1 (the paper code's, H->H+1), box2-same or binomial3."),
    tau: float = typer.Option(10.0, help="Temperature of tau*tanh(x/tau)."),
    dropout_rate: Optional[float] = typer.Option(None, "--dropout-rate", help="MC-dropout rate (default 0.3; AlexNet 0.1)."),
    width: Optional[int] = typer.Option(None, help="Base width (default: the family's, e.g. 64 for ResNets)."),
    dataset: str = typer.Option("cifar10", help="cifar10, cifar100, imagenet or synthetic."),
    data_dir: Optional[Path] = DATA_DIR_OPT,
    download: bool = typer.Option(False, "--download", help="Download CIFAR-10/100 if absent (md5-checked)."),
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
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
    channels_last: bool = CL_OPT,
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model for training."),
    nproc: int = NPROC_OPT,
    sync_bn: bool = typer.Option(False, "--sync-bn", help="BatchNorm statistics over the global batch in distributed runs."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Train on a stratified subset of N images."),
    eval_subset: Optional[int] = typer.Option(None, "--eval-subset", help="Validate each epoch on the first N test images."),
    workers: int = typer.Option(4, help="DataLoader workers (ImageNet)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/<dataset>/<model>-seed<seed>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its checkpoint.pt."),
    force: bool = typer.Option(False, "--force", help="Replace a finished run folder."),
    profile: bool = typer.Option(False, "--profile", help="Print where the time went (setup, data, step, "
                                 "validation, io) and the training images/s."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or tables."),
) -> None:
    """Train one of the paper's models with the paper's recipe (or your overrides); --nproc N or torchrun for DDP."""
    import time

    from smoothbench.train import TrainConfig, train as run_training

    relaunch(nproc)

    milestone_list = None if milestones is None else tuple(parse_int_list(milestones, "--milestones", 1, 10**6))
    cfg = TrainConfig(
        arch=arch, method=method, smoothing=smoothing, blur=blur, tau=tau, dropout_rate=dropout_rate, width=width,
        dataset=dataset, data_dir=None if data_dir is None else str(data_dir), download=download, epochs=epochs,
        warmup_epochs=warmup_epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay,
        schedule=schedule, milestones=milestone_list, gamma=gamma, seed=seed, device=device, precision=precision,
        channels_last=channels_last, compile=compile, sync_bn=sync_bn, subset=subset, eval_subset=eval_subset,
        workers=workers,
        out=None if out is None else str(out), resume=resume, force=force, profile=profile,
    )
    epochs_done: list[dict] = []
    start = time.perf_counter()
    with progress_bar(0, "train", quiet=quiet) as bar:
        def on_plan(total_epochs: int, images_per_epoch: int) -> None:
            if bar is not None:
                bar.bar.update(bar.task, total=total_epochs * images_per_epoch)

        result = run_training(cfg, progress=bar, log=epochs_done.append, on_plan=on_plan)
    seconds = time.perf_counter() - start
    if not quiet:
        show_table(result.log, ["epoch", "lr", "train_loss", "train_acc", "test_acc", "test_nll", "seconds", "images_per_s"],
                   f"{result.spec.name} on {dataset}", ("train_acc", "test_acc"))
    console.print(f"run folder: {result.run_dir}  (test acc {result.test_acc:.2%}, {result.seconds:.0f}s)")
    if profile:  # images/s over the data + step time, like train_log.csv's images_per_s
        training = result.timings["data"] + result.timings["step"]
        print_profile(result.timings, seconds, result.images / max(training, 1e-9), "images")


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
    subset: Optional[int] = SUBSET_OPT,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write CIFAR-10-C / CIFAR-100-C (released layout) or ImageNet-C with smoothbench's corruption engine."""
    from smoothbench.corruptions.writer import make_cifar_c, make_imagenet_c
    from smoothbench.data import get_dataset
    from smoothbench.device import resolve_device

    chosen = corruption_list(corruptions, dataset)
    frost = None if frost_dir is None else str(frost_dir)
    if dataset == "imagenet":
        with progress_bar(0, "ImageNet-C", quiet=quiet) as bar:
            make_imagenet_c(str(data_dir), str(out), corruptions=chosen, seed=seed, device=resolve_device(device),
                            frost_dir=frost, progress=bar, subset=subset)
    elif dataset in ("cifar10", "cifar100"):
        source = get_dataset(dataset, str(data_dir), "test", subset=subset)
        with progress_bar(len(chosen) * 5 * len(source), f"{dataset}-C", quiet=quiet) as bar:
            make_cifar_c(source.numpy_nhwc(), source.labels.numpy(), str(out), corruptions=chosen, params="cifar",
                         seed=seed, batch_size=batch_size, device=resolve_device(device), frost_dir=frost, progress=bar)
    else:
        raise UserError(f"--dataset must be cifar10, cifar100 or imagenet, got {dataset!r}")
    console.print(f"wrote {out}")



@app.command()
def demo(
    out: Path = typer.Option(Path("demo_runs"), "--out", help="Folder for the demo's runs and tables."),
    epochs: int = typer.Option(5, help="Training epochs per model."),
    force: bool = typer.Option(False, "--force", help="Retrain even if the demo's runs exist."),
) -> None:
    """The whole pipeline on the embedded synthetic data, on the CPU, in about three and a half minutes."""
    from smoothbench.demo import DemoSettings, run_demo

    console.print("[bold]smoothbench demo[/bold]: four narrow ResNet-18s (dnn / MC dropout, with and without "
                  "spatial smoothing) on the synthetic dataset")
    result = run_demo(DemoSettings(out=out, epochs=epochs, force=force), bar=lambda total, text: progress_bar(total, text))
    if not result.train.empty:
        show_table(result.train.to_dict("records"), ["model", "test_acc", "test_nll", "seconds"], "training", ("test_acc",))
    show_table(result.eval.to_dict("records"), EVAL_COLUMNS, "clean test set: the effect of smoothing and ensemble size", PERCENT)
    columns = [c for c in ("model", "ensemble_size", "clean_acc", "cAcc", "cNLL", "cECE") if c in result.corrupt_summary.columns]
    show_table(result.corrupt_summary.to_dict("records"), columns, "generated corruptions (4 types x severities 1, 3, 5)", PERCENT)
    show_table(result.consistency.to_dict("records"), ["model", "ensemble_size", "agreement", "tv", "seed_agreement"],
               "consistency across MC ensemble sizes", ("agreement", "seed_agreement"))
    stdout.print(result.leaderboard)
    console.print(f"files: {', '.join(str(p) for p in result.files.values())}")


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console-script entry point: one clear line and exit status 2 for bad input; warnings on one line."""
    import warnings

    warnings.showwarning = _one_line_warning
    try:
        status = app(standalone_mode=False)
        if isinstance(status, int) and status:  # typer.Exit(status), e.g. a failed --nproc launch
            sys.exit(status)
    except UserError as err:
        # every torchrun process reports its error: one may fail alone (e.g. no GPU for its local rank)
        where = console if RANK == 0 else Console(stderr=True)
        where.print(f"[red]{f'rank {RANK}: ' if RANK else ''}error:[/red] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception as err:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(err, click.exceptions.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Exit):
            sys.exit(err.exit_code)
        raise
    finally:
        if "smoothbench.distributed" in sys.modules:  # leave a torchrun process group cleanly
            sys.modules["smoothbench.distributed"].cleanup()
