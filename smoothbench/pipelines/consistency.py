"""``run_consistency``: how stable predictions are across ensemble sizes and along CIFAR-10-P sequences."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from smoothbench import distributed, plots
from smoothbench.data import get_dataset
from smoothbench.data.subset import subset_positions
from smoothbench.errors import UserError, param
from smoothbench.evaluation.consistency_rows import perturbation_rows, size_consistency_rows
from smoothbench.evaluation.members import load_members
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.progress import Progress
from smoothbench.fileio import check_writable_folder
from smoothbench.models.sources import ModelOptions, for_dataset
from smoothbench.results.store import check_results_file, write_rows
from smoothbench.schema import CONSISTENCY_ROW_KEY, PERTURBATIONS

PathLike = str | os.PathLike


@dataclass
class ConsistencyRequest:
    """What ``smoothbench consistency`` does.

    Ensemble-size consistency always runs on the clean ``dataset`` (default: the checkpoint's) from
    ``data_dir``. ``perturbations`` (``all``, comma-separated names or a list; CIFAR-10 models only) adds
    CIFAR-10-P rows, from the released sequences in ``p_data_dir`` or, with ``generate``, sequences made
    from the clean test set. ``settings.subset`` / ``settings.subset_file`` pick the same test images for
    both (released sequences follow the clean test order). ``out``: the results (CSV or JSON); ``plot``: a
    folder for the agreement-vs-ensemble-size plot.
    """

    models: Sequence[PathLike]
    settings: EvalSettings = field(default_factory=lambda: EvalSettings(ensembles=(1, 2, 5, 10)))
    model_options: ModelOptions = field(default_factory=ModelOptions)
    dataset: str | None = None
    data_dir: PathLike | None = None
    perturbations: Sequence[str] | str | None = None
    p_data_dir: PathLike | None = None
    generate: bool = False
    out: PathLike = "consistency.csv"
    plot: PathLike | None = None

    def __post_init__(self) -> None:
        if not self.perturbations:
            self.perturbations = []
            return
        known = [p.name for p in PERTURBATIONS]
        chosen = self.perturbations
        if isinstance(chosen, str):
            chosen = known if chosen == "all" else [p.strip() for p in chosen.split(",")]
        unknown = sorted(set(chosen) - set(known))
        if unknown:
            raise UserError(f"unknown {param('perturbations')} {', '.join(unknown)}; choose from {', '.join(known)}")
        if not self.generate and self.p_data_dir is None:
            raise UserError(f"{param('perturbations')} needs {param('p_data_dir')} (released CIFAR-10-P) or "
                            f"{param('generate')}")
        self.perturbations = list(chosen)


@dataclass
class ConsistencyResult:
    """One row per (kind, perturbation, ensemble size) and the files written."""

    model: str
    rows: pd.DataFrame
    files: list[Path]


def run_consistency(request: ConsistencyRequest, *, progress: Progress | None = None) -> ConsistencyResult:
    """Ensemble-size consistency (and CIFAR-10-P consistency if asked), written to ``request.out`` (checked
    before any work, as the plot folder)."""
    check_results_file(request.out, CONSISTENCY_ROW_KEY)
    if request.plot is not None:
        check_writable_folder(request.plot)
    settings = request.settings.on_device()
    members = load_members(request.models, for_dataset(request.model_options, request.dataset))
    name = request.dataset or members.spec.dataset
    members.check_dataset(name)
    if request.perturbations and name != "cifar10":
        raise UserError("CIFAR-10-P consistency needs a CIFAR-10 model")
    full = get_dataset(name, None if request.data_dir is None else str(request.data_dir), "test")
    positions, _ = subset_positions(full, settings.subset, settings.subset_file)
    source = full if positions is None else full.select(positions)
    members.check_dataset(name, source.num_classes)
    if progress is not None:
        progress.start(2 * len(source), f"consistency {members.name}")
    rows = size_consistency_rows(members, source, settings, progress=progress)
    if request.perturbations:
        frames_of, kind = _sequences(request, source, settings)
        # released sequences follow the clean test order: the same positions pick the same images
        chosen = None if request.generate else positions
        if progress is not None:
            per = len(source) if request.generate or positions is not None else len(full)
            progress.start(len(request.perturbations) * per, "CIFAR-10-P")
        rows += perturbation_rows(members, frames_of, request.perturbations, settings, source_kind=kind,
                                  positions=chosen, progress=progress)
    files = []
    if distributed.is_main_process():  # every process holds the same rows; rank 0 writes them
        write_rows(request.out, rows, key_columns=CONSISTENCY_ROW_KEY)
        files.append(Path(request.out))
        if request.plot is not None:
            folder = Path(request.plot)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{members.name}_agreement_vs_size.png"
            plots.metric_vs_ensemble_size(pd.DataFrame([r for r in rows if r["kind"] == "mc-size"]), "agreement", path)
            files.append(path)
    return ConsistencyResult(members.name, pd.DataFrame(rows), files)


def _sequences(request: ConsistencyRequest, source, settings: EvalSettings) -> tuple[Callable[[str], np.ndarray], str]:
    """``(frames_of(perturbation) → uint8 (N, T, 32, 32, 3), source kind)``: generated or released sequences."""
    if request.generate:
        from smoothbench.corruptions.perturbations import perturb_sequence

        clean = source.numpy_nhwc()
        return (lambda p: perturb_sequence(clean, p, seed=settings.seed, device=settings.device)), "generated"
    from smoothbench.corruptions.released_p import load_cifar10_p

    return (lambda p: load_cifar10_p(str(request.p_data_dir), p)), "released"
