"""What a report reads: result rows, reliability bins and run folders' configs, from files and folders.

Result tables go through :func:`smoothbench.results.read_results` (so a report accepts what the leaderboard
accepts). Corruption summaries (``smoothbench corrupt``'s ``<out>_summary.csv``) are not result rows, yet they
hold what a sweep computed against its baseline (mCE and its kin), so they are read here too. Reliability bins are the ``<model>_<dataset>_<split>_n<size>_reliability.csv`` files
that ``smoothbench eval --plot DIR`` writes; they are not result tables, so they are picked out here by
name. A run folder's ``config.json`` (found in a given folder) adds the package versions it was trained
with, which result rows do not record.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from smoothbench.errors import UserError
from smoothbench.results.store import read_results, read_table

PathLike = str | os.PathLike

#: ``eval --plot`` file names: the model name may hold underscores, dataset and split do not.
_RELIABILITY_NAME = re.compile(r"^(?P<model>.+)_(?P<dataset>[^_]+)_(?P<split>[^_]+)_n(?P<size>\d+)_reliability\.csv$")
#: The columns of ``smoothbench.metrics.reliability_bins`` that a reliability diagram needs.
BIN_COLUMNS = ("lower", "upper", "count", "accuracy", "confidence")


@dataclass(frozen=True)
class ReliabilityBins:
    """One reliability table: which model, data and ensemble size it belongs to, and its bins."""

    model: str
    dataset: str
    split: str
    ensemble_size: int
    bins: pd.DataFrame
    path: Path


@dataclass(frozen=True)
class RunConfig:
    """The facts a run folder's ``config.json`` adds: the packages and device it was trained with."""

    name: str
    packages: dict[str, str]
    device: str
    path: Path


@dataclass
class ReportInputs:
    """Everything read: ``rows`` (with ``result_file``), corruption ``summaries`` (with ``result_file``;
    empty when none), reliability tables, run configs, and the notes (files that looked like inputs but
    were skipped, and why)."""

    rows: pd.DataFrame
    summaries: pd.DataFrame = field(default_factory=pd.DataFrame)
    reliability: list[ReliabilityBins] = field(default_factory=list)
    runs: list[RunConfig] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def files(self) -> list[str]:
        """Every file the report's numbers came from, sorted."""
        found = {str(f) for t in (self.rows, self.summaries) if "result_file" in t.columns
                 for f in t["result_file"].dropna()}
        found |= {str(r.path) for r in self.reliability} | {str(r.path) for r in self.runs}
        return sorted(found)


def _reliability(path: Path) -> ReliabilityBins | str:
    """The reliability table at ``path``, or why it is not one."""
    match = _RELIABILITY_NAME.match(path.name)
    if match is None:
        return f"{path} is not named <model>_<dataset>_<split>_n<size>_reliability.csv"
    table = read_table(path)
    missing = [c for c in BIN_COLUMNS if c not in table.columns]
    if missing:
        return f"{path} is named like a reliability table but has no column {', '.join(missing)}"
    return ReliabilityBins(match["model"], match["dataset"], match["split"], int(match["size"]), table, path)


def _run_config(path: Path) -> RunConfig | None:
    """A training run's ``config.json`` (one with ``packages``), else ``None``."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(config, dict) or not isinstance(config.get("packages"), dict):
        return None
    packages = {str(k): str(v) for k, v in config["packages"].items()}
    return RunConfig(path.parent.name, packages, str(config.get("device", "")), path)


def _is_reliability_name(path: Path) -> bool:
    return path.name.endswith("_reliability.csv")


def _summary(path: Path) -> pd.DataFrame | None:
    """The corruption-summary table at ``path`` (with ``result_file``), else ``None``."""
    try:
        table = read_table(path)
    except UserError:
        return None
    if not {"model", "corruptions", "cAcc"} <= set(table.columns):
        return None
    return table.assign(result_file=str(path))


def read_inputs(paths: Iterable[PathLike]) -> ReportInputs:
    """Read result files and folders (searched recursively) for a report.

    A reliability CSV named explicitly must be one (UserError otherwise); one found in a folder that is not
    one is skipped with a note. Without any result row this raises UserError, as the leaderboard does.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("give result files or folders to report on")
    reliability, runs, notes, tables, summaries = [], [], [], [], []
    for given in paths:
        if given.is_file() and _is_reliability_name(given):
            found = _reliability(given)
            if isinstance(found, str):
                raise UserError(f"{found}; give the files that `smoothbench eval --plot` writes")
            reliability.append(found)
            continue
        summary = _summary(given) if given.is_file() else None
        if summary is not None:
            summaries.append(summary)
            continue
        tables.append(given)
        if given.is_dir():
            candidates = (f for f in sorted(given.rglob("*")) if f.is_file() and f.suffix.lower() in (".csv", ".json"))
            summaries += [t for t in map(_summary, candidates) if t is not None]
            for candidate in sorted(given.rglob("*_reliability.csv")):
                found = _reliability(candidate)
                if isinstance(found, str):
                    notes.append(f"skipped: {found}")
                else:
                    reliability.append(found)
            runs += [c for c in map(_run_config, sorted(given.rglob("config.json"))) if c is not None]
    if not tables:
        raise UserError("only reliability tables or corruption summaries were given; add the result files (eval, "
                        "corrupt, consistency) they belong to")
    summary = pd.concat(summaries, ignore_index=True, sort=False) if summaries else pd.DataFrame()
    return ReportInputs(read_results(tables), summary, reliability, runs, notes)
