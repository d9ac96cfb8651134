"""The ``smoothbench`` commands that run a whole workflow: ``train``, ``data make-c``, ``reproduce`` and ``demo``
(flags → one library call → rich output; registered on the app by :mod:`smoothbench.cli`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from smoothbench import terminal
from smoothbench.cli_options import (DATA_DIR_OPT, DOWNLOAD_OPT, EVAL_COLUMNS, QUIET_OPT, relaunch)
from smoothbench.errors import UserError
from smoothbench.terminal import RANK, console, show_table, stdout

workflow_app = typer.Typer()
data_app = typer.Typer(no_args_is_help=True, help="Prepare data sets (generate CIFAR-10-C / ImageNet-C).")


@workflow_app.command()
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


@workflow_app.command()
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


@workflow_app.command()
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
