"""``run_corruption_sweep``: a model over every (corruption, severity) cell, then the sweep's summary."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd

from smoothbench import distributed, plots
from smoothbench.evaluation.corruption_cells import CorruptionSweep, corruption_sweep
from smoothbench.evaluation.members import load_members
from smoothbench.evaluation.scoring import Profile
from smoothbench.evaluation.calibration import Calibration, fit_calibration
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.progress import Progress
from smoothbench.results.baselines import load_baseline
from smoothbench.fileio import check_writable_folder
from smoothbench.models.sources import ModelOptions, for_dataset
from smoothbench.results.store import check_results_file, read_results, write_rows
from smoothbench.results.summaries import summarize_corruptions
from smoothbench.schema import CORRUPTION_ROW_KEY, SUMMARY_ROW_KEY

PathLike = str | os.PathLike


@dataclass
class SweepRequest:
    """What ``smoothbench corrupt`` does.

    ``models``: run folders, model files or model references (several form a deep ensemble; see
    :class:`~smoothbench.pipelines.eval.EvalRequest`). ``sweep``: which corrupted set
    and cells. ``out``: the per-cell results (appended cell by cell; a rerun resumes); ``summary_out``: the
    summary table (default ``<out stem>_summary.csv`` beside it); ``baseline``: ``alexnet-imagenet-c``, a
    paper AlexNet CSV or another model's sweep file, for mCE and its kin; ``plot``: a folder for
    metric-vs-severity plots.
    """

    models: Sequence[PathLike]
    sweep: CorruptionSweep
    settings: EvalSettings = field(default_factory=EvalSettings)
    model_options: ModelOptions = field(default_factory=ModelOptions)
    out: PathLike = "sweep.csv"
    summary_out: PathLike | None = None
    baseline: str | None = None
    plot: PathLike | None = None

    @property
    def summary_path(self) -> Path:
        out = Path(self.out)
        return Path(self.summary_out) if self.summary_out is not None else out.with_name(out.stem + "_summary.csv")


@dataclass
class SweepResult:
    """The rows computed by this call, the summary of every cell of the model in ``out``, the files written,
    and where the sweep's time went (``seconds``: the sweep, before the summary)."""

    model: str
    rows: pd.DataFrame
    summary: pd.DataFrame
    files: list[Path]
    profile: Profile
    seconds: float


def this_sweep(rows: pd.DataFrame, request: SweepRequest, members, settings: EvalSettings,
               calibration: Calibration | None = None) -> pd.DataFrame:
    """The rows of ``out`` that this sweep made or would make: its model, data, sizes and settings (other runs
    in the same file, perhaps still going on, are summarised by their own sweeps, never half done here)."""
    from smoothbench.results.store import row_key

    wanted = {"model": members.name, "checkpoint_sha256": members.checkpoint_sha256,
              "dataset": request.sweep.dataset, "subset": settings.subset,
              "subset_sha256": settings.subset_sha256, "seed": settings.seed,
              "precision": settings.precision, "ece_mode": settings.ece_mode, "ece_bins": settings.ece_bins,
              "calibration": "" if calibration is None else calibration.column}
    key = row_key(wanted, list(wanted))
    mine = [row_key(record, list(wanted)) == key for record in rows.to_dict("records")]
    rows = rows[mine]
    sizes = pd.to_numeric(rows["ensemble_size"], errors="coerce").isin(settings.ensembles)
    if not request.sweep.generate:
        return rows[sizes]
    cells = pd.to_numeric(rows["severity"], errors="coerce") > 0
    drawn = pd.to_numeric(rows["corruption_seed"], errors="coerce") == request.sweep.corruption_seed
    return rows[sizes & (~cells | drawn)]


def run_corruption_sweep(request: SweepRequest, *, progress: Progress | None = None) -> SweepResult:
    """Evaluate every cell not yet in ``request.out``, then summarise the model's cells (cAcc, cNLL, cECE,
    cBrier; mCE, relative mCE, mCNLL, mCECE against a baseline) into the summary file. Every output is
    checked before any work."""
    check_results_file(request.out, CORRUPTION_ROW_KEY)
    check_results_file(request.summary_path, SUMMARY_ROW_KEY)
    if request.plot is not None:
        check_writable_folder(request.plot)
    settings = request.settings.on_device()
    baseline = load_baseline(request.baseline) if request.baseline is not None else None
    members = load_members(request.models, for_dataset(request.model_options, request.sweep.clean_dataset))
    if progress is not None:
        progress.start(len(request.sweep.cells()), f"corrupt {members.name}")
    start = time.perf_counter()
    sweep = request.sweep
    calibration = fit_calibration(members, settings, sweep.clean_dataset,
                                  sweep.data_dir if sweep.generate else sweep.clean_data_dir)
    rows, profile = corruption_sweep(members, sweep, settings, request.out, progress=progress,
                                     calibration=calibration)
    seconds = time.perf_counter() - start
    summary, files = pd.DataFrame(), []
    if distributed.is_main_process():  # rank 0 wrote the rows and writes the summary
        table = this_sweep(read_results([request.out]), request, members, settings, calibration)
        summary = summarize_corruptions(table, baseline)
        write_rows(request.summary_path, summary, key_columns=SUMMARY_ROW_KEY)
        files = [Path(request.out), request.summary_path]
        if request.plot is not None:
            folder = Path(request.plot)
            folder.mkdir(parents=True, exist_ok=True)
            for metric in ("acc", "nll", "ece"):
                path = folder / f"{members.name}_{request.sweep.dataset}_{metric}_vs_severity.png"
                plots.metric_vs_severity(table, metric, path)
                files.append(path)
    return SweepResult(members.name, pd.DataFrame(rows), summary, files, profile, seconds)
