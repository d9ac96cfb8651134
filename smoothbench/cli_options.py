"""The evaluation flags that ``eval``, ``corrupt`` and ``consistency`` share, declared once; ``--nproc``.

:func:`evaluation_options` adds them to a Typer command's signature and hands them to the command packed
as one :class:`EvalOptions` (its ``settings()`` is the library's
:class:`~smoothbench.evaluation.settings.EvalSettings`).
"""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional

import typer

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
    "subset": (Optional[int], typer.Option(None, "--subset", help="Evaluate the first N images only.")),
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
    profile: bool = False
    quiet: bool = False

    def settings(self):
        """The library's :class:`~smoothbench.evaluation.settings.EvalSettings` of these flags."""
        from smoothbench.evaluation.settings import EvalSettings

        return EvalSettings(ensembles=self.ensembles, mc_samples=self.mc_samples, seed=self.seed,
                            batch_size=self.batch_size, mc_chunk=self.mc_chunk, device=self.device,
                            precision=self.precision, channels_last=self.channels_last, compile=self.compile,
                            ece_bins=self.ece_bins, ece_mode=self.ece_mode, subset=self.subset, profile=self.profile)


def evaluation_options(*, exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None) -> Callable:
    """Decorator: the command gets the shared flags (less ``exclude``; ``defaults`` changes a default) and
    receives them as its keyword argument ``options: EvalOptions``."""
    defaults = defaults or {}
    names = [name for name in _SHARED if name not in exclude]

    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name != "options"]
        shared = []
        for name in names:
            annotation, option = _SHARED[name]
            if name in defaults:
                option = typer.Option(defaults[name], *option.param_decls, help=option.help)
            shared.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=annotation))

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            options = EvalOptions(**{name: kwargs.pop(name) for name in names})
            return command(**kwargs, options=options)

        wrapper.__signature__ = signature.replace(parameters=own + shared)
        wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **{p.name: p.annotation for p in shared}}
        return wrapper

    return decorate


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
