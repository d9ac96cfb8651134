"""Flags several commands share, declared once: the evaluation flags of ``eval``, ``corrupt`` and
``consistency``, the flags for models from elsewhere, and ``--nproc``.

:func:`evaluation_options` adds them to a Typer command's signature and hands them to the command packed
as one :class:`EvalOptions` (its ``settings()`` is the library's
:class:`~smoothbench.evaluation.settings.EvalSettings`).
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from smoothbench import terminal

#: name → (type, Typer option): the shared flags, in the order ``--help`` lists them.
_SHARED: dict[str, tuple[Any, Any]] = {
    "ensembles": (str, typer.Option("1", "--ensembles",
                                    help="Ensemble sizes, e.g. 1,5,50 (MC samples, or deep-ensemble members).")),
    "mc_samples": (Optional[int], typer.Option(None, "--mc-samples",
                                               help="MC-dropout samples per member of a deep ensemble.")),
    "ece_bins": (Optional[int], typer.Option(None, "--ece-bins", help="ECE bins (default 15; 10 with --ece-mode "
                                             "reference).")),
    "ece_mode": (str, typer.Option("standard", "--ece-mode", help="standard, or reference (the paper code's "
                                   "binning).")),
    "batch_size": (int, typer.Option(256, "--batch-size", help="Images per forward pass (before repeating for MC "
                                     "samples).")),
    "mc_chunk": (Optional[int], typer.Option(None, "--mc-chunk", help="MC samples per forward, batch repeated "
                                             "(default: 1 on CPU, 8 on GPU).")),
    "seed": (int, typer.Option(0, "--seed", help="Seed of the MC-dropout masks (results are identical for the same "
                               "seed).")),
    "device": (str, typer.Option("auto", "--device", help="auto, cpu or cuda.")),
    "precision": (str, typer.Option("fp32", "--precision", help="fp32 or bf16 (autocast).")),
    "channels_last": (bool, typer.Option(False, "--channels-last", help="Channels-last memory format (faster on "
                                         "GPUs).")),
    "compile": (bool, typer.Option(False, "--compile", help="torch.compile the model (pays on GPUs for long sweeps; "
                                   "first batch compiles).")),
    "nproc": (int, typer.Option(1, "--nproc", help="Processes on this machine (one per GPU; gloo on CPU), started "
                                "through torch.distributed.run like torchrun --nproc-per-node N.")),
    "subset": (Optional[int], typer.Option(None, "--subset", help="Evaluate N images only: a class-balanced random "
                                           "sample, in the set's order, the same for every command and --seed "
                                           "(with --subset-file: N of the listed images).")),
    "subset_file": (Optional[Path], typer.Option(None, "--subset-file", help="Evaluate only the images listed in "
                                                 "FILE (one position, or path relative to an image folder, per "
                                                 "line, e.g. RobustBench's list); its sha256 goes into the rows.")),
    "profile": (bool, typer.Option(False, "--profile", help="Print where the time went (data, forward, metrics, "
                                   "io).")),
    "quiet": (bool, typer.Option(False, "--quiet", help="No progress bar.")),
}


@dataclass
class EvalOptions:
    """The shared flags of one command call (see :data:`_SHARED` for their meaning)."""

    ensembles: str = "1"
    mc_samples: Optional[int] = None
    ece_bins: Optional[int] = None
    ece_mode: str = "standard"
    batch_size: int = 256
    mc_chunk: Optional[int] = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    nproc: int = 1
    subset: Optional[int] = None
    subset_file: Optional[Path] = None
    profile: bool = False
    quiet: bool = False

    def settings(self):
        """The library's :class:`~smoothbench.evaluation.settings.EvalSettings` of these flags."""
        from smoothbench.evaluation.settings import EvalSettings

        return EvalSettings(ensembles=self.ensembles, mc_samples=self.mc_samples, seed=self.seed,
                            batch_size=self.batch_size, mc_chunk=self.mc_chunk, device=self.device,
                            precision=self.precision, channels_last=self.channels_last, compile=self.compile,
                            ece_bins=self.ece_bins, ece_mode=self.ece_mode, subset=self.subset,
                            subset_file=None if self.subset_file is None else str(self.subset_file),
                            profile=self.profile)


def _option_group(declared: dict[str, tuple[Any, Any]], packer: type, argument: str, *,
                  exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> Callable:
    """Decorator: the command gets the ``declared`` flags (less ``exclude``; ``defaults`` changes a default)
    and receives them packed into one ``packer`` instance as its keyword argument ``argument``."""
    defaults = defaults or {}
    names = [name for name in declared if name not in exclude]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != argument]
        added = []
        for name in names:
            annotation, option = declared[name]
            if name in defaults:
                option = typer.Option(defaults[name], *option.param_decls, help=option.help)
            added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                           annotation=annotation))

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            packed = packer(**{name: kwargs.pop(name) for name in names})
            return command(**kwargs, **{argument: packed})

        wrapper.__signature__ = signature.replace(parameters=own + added)
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **{p.name: p.annotation for p in added}}
        return wrapper

    return decorate


def evaluation_options(*, exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> Callable:
    """The shared evaluation flags, received as ``options: EvalOptions``."""
    return _option_group(_SHARED, EvalOptions, "options", exclude=exclude, defaults=defaults)


#: name → (type, Typer option): post-hoc calibration flags of ``eval``, ``corrupt`` and ``ood``.
_CALIBRATION = {
    "calibrate": (Optional[str], typer.Option(None, "--calibrate", help="temperature (scale each member's logits) "
                                              "or temperature-mean (scale log of the averaged prediction): fit T per "
                                              "ensemble size on held-out images; rows get *_ts columns.")),
    "calibration_split": (int, typer.Option(5000, "--calibration-split", help="Fit on the last N training images "
                                            "(train with --holdout N to keep them unseen).")),
    "calibration_data": (Optional[Path], typer.Option(None, "--calibration-data", help="Fit on this image folder "
                                                      "instead (one sub-folder per class).")),
}


@dataclass
class CalibrationFlags:
    """The calibration flags of one command call (see :data:`_CALIBRATION`)."""

    calibrate: Optional[str] = None
    calibration_split: int = 5000
    calibration_data: Optional[Path] = None

    def applied(self, settings):
        """``settings`` (an :class:`~smoothbench.evaluation.settings.EvalSettings`) with these flags."""
        return settings.with_(calibrate=self.calibrate, calibration_split=self.calibration_split,
                              calibration_data=None if self.calibration_data is None else str(self.calibration_data))


def calibration_options() -> Callable:
    """The calibration flags, received as ``calibration: CalibrationFlags``."""
    return _option_group(_CALIBRATION, CalibrationFlags, "calibration")


#: name → (type, Typer option): the flags for models from elsewhere (torchvision, timm, the user's builders).
_MODEL = {
    "weights": (Optional[str], typer.Option(None, "--weights", help="torchvision: DEFAULT, a weights enum name "
                                            "(e.g. IMAGENET1K_V1) or a state-dict file; timm and builders: a "
                                            "state-dict file. MODEL@FILE gives one model its own file.")),
    "checkpoint": (Optional[str], typer.Option(None, "--checkpoint", help="timm: a checkpoint (state-dict) file.")),
    "pretrained": (bool, typer.Option(False, "--pretrained", help="timm: the hub's pretrained weights (downloads).")),
    "model_kwargs": (Optional[List[str]], typer.Option(None, "--model-kwargs", help="key=value passed to the "
                                                       "model's builder (repeat the flag), e.g. num_classes=10.")),
    "mc_dropout": (Optional[str], typer.Option(None, "--mc-dropout", help="auto (the model's dropout becomes MC "
                                               "dropout) or a rate inserted where --mc-dropout-where says.")),
    "mc_dropout_where": (str, typer.Option("head", "--mc-dropout-where", help="head (before the classifier), "
                                           "blocks (after each residual block) or all.")),
    "smoothing": (str, typer.Option("none", "--smoothing", help="Insert spatial smoothing: tanh-blur (the "
                                    "paper's), blur or relu6-blur, before each downsampling stage.")),
    "blur": (str, typer.Option("box2-pad1", "--blur", help="box2-pad1 (the paper code's), box2-same or binomial3.")),
    "tau": (float, typer.Option(10.0, "--tau", help="Temperature of tau*tanh(x/tau).")),
    "placement": (str, typer.Option("auto", "--placement", help="auto (stage boundaries found from the model) "
                                    "or comma-separated module names to smooth after.")),
    "cifar_stem": (bool, typer.Option(False, "--cifar-stem", help="Replace the ImageNet stem (7x7/2 conv + "
                                      "max-pool) by a 3x3/1 conv, for 32-px images.")),
    "class_indices": (Optional[Path], typer.Option(None, "--class-indices", help="File of the model's output "
                                                   "classes to keep, in order (e.g. 200 of 1000).")),
    "resize": (Optional[int], typer.Option(None, "--resize", help="Input recipe: resize the shorter side to N.")),
    "crop": (Optional[int], typer.Option(None, "--crop", help="Input recipe: centre crop N x N.")),
    "interpolation": (Optional[str], typer.Option(None, "--interpolation", help="bilinear, bicubic or nearest.")),
    "mean": (Optional[str], typer.Option(None, "--mean", help="Input recipe: per-channel mean, e.g. 0.485,0.456,0.406.")),
    "std": (Optional[str], typer.Option(None, "--std", help="Input recipe: per-channel std, e.g. 0.229,0.224,0.225.")),
}


@dataclass
class ModelFlags:
    """The model flags of one command call (see :data:`_MODEL`)."""

    weights: Optional[str] = None
    checkpoint: Optional[str] = None
    pretrained: bool = False
    model_kwargs: Optional[list[str]] = None
    mc_dropout: Optional[str] = None
    mc_dropout_where: str = "head"
    smoothing: str = "none"
    blur: str = "box2-pad1"
    tau: float = 10.0
    placement: str = "auto"
    cifar_stem: bool = False
    class_indices: Optional[Path] = None
    resize: Optional[int] = None
    crop: Optional[int] = None
    interpolation: Optional[str] = None
    mean: Optional[str] = None
    std: Optional[str] = None

    def options(self):
        """The library's :class:`~smoothbench.models.sources.ModelOptions` of these flags."""
        from smoothbench.models.sources import ModelOptions, parse_kwargs, read_class_indices

        return ModelOptions(weights=self.weights, checkpoint=self.checkpoint, pretrained=self.pretrained,
                            kwargs=parse_kwargs(self.model_kwargs or []), mc_dropout=self.mc_dropout,
                            mc_dropout_where=self.mc_dropout_where, smoothing=self.smoothing, blur=self.blur,
                            tau=self.tau, placement=tuple(p.strip() for p in self.placement.split(",") if p.strip()),
                            cifar_stem=self.cifar_stem,
                            class_indices=None if self.class_indices is None else read_class_indices(self.class_indices),
                            resize=self.resize, crop=self.crop, interpolation=self.interpolation,
                            mean=_floats(self.mean, "mean"), std=_floats(self.std, "std"))


def _floats(text: Optional[str], flag: str) -> Optional[tuple[float, ...]]:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        from smoothbench.errors import UserError

        raise UserError(f"--{flag} needs comma-separated numbers, got {text!r}") from None


def model_options(*, exclude: tuple[str, ...] = ()) -> Callable:
    """The flags for models from elsewhere, received as ``models: ModelFlags``."""
    return _option_group(_MODEL, ModelFlags, "models", exclude=exclude)


def relaunch(nproc: int) -> None:
    """``--nproc N`` (N != 1): run this same command in N processes on this machine through torch's launcher
    (as ``torchrun --standalone --nproc-per-node N`` would, ``--nproc`` dropped) and exit with their status."""
    if nproc != 1:
        from smoothbench.distributed import launch

        raise typer.Exit(launch(nproc, without_option(sys.argv[1:], "--nproc")))


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


# ----------------------------------------------------------------------------------------------------------
# arguments and output every command group shares
RUNS_ARG = typer.Argument(..., help="Run folders, model files or models from elsewhere (torchvision:NAME, timm:NAME, "
                          "py:FILE.py:FUNCTION, MODULE:FUNCTION; MODEL@FILE for its weights); several form a deep "
                          "ensemble (in the order given).")
DATA_DIR_OPT = typer.Option(None, "--data-dir", help="Folder holding the dataset (see data/README.md).")
DOWNLOAD_OPT = typer.Option(False, "--download", help="Download CIFAR-10/100 if absent (md5-checked).")
QUIET_OPT = typer.Option(False, "--quiet", help="No progress bar.")
#: The columns of an evaluation's rich table.
EVAL_COLUMNS = ["model", "ensemble_size", "acc", "nll", "ece", "brier", "top5", "auroc_misclf"]


def show_profile(profile, seconds: float) -> None:
    """The ``--profile`` line of an evaluation: its sections and sample-forwards per second."""
    terminal.print_profile(profile.seconds, seconds, profile.sample_forwards / seconds, "sample-forwards")
