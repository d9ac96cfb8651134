"""``run_shift``: a model (or deep ensemble) on its clean test set and on natural distribution shifts of it.

One pass per set (clean first) through :func:`smoothbench.evaluation.scoring.evaluate`: every row carries a
``shift`` column (the set's name, ``clean`` for the test set), and :func:`shift_differences` turns the rows
into a clean-vs-shift table (accuracy, NLL and ECE on the shift set minus the clean set, per model and
ensemble size). Naming ``cifar10h`` among the sets adds the ``nll_cifar10h`` column (NLL against the human
label distributions of CIFAR-10H, :func:`smoothbench.metrics.soft_labels.soft_label_nll`) to the clean
CIFAR-10 rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from smoothbench import distributed
from smoothbench.data import get_dataset
from smoothbench.data.imagenet_wnids import IMAGENET_WNIDS
from smoothbench.data.shifts import SHIFTS, get_shift, load_cifar10h
from smoothbench.data.subset import subset_positions
from smoothbench.errors import UserError, param
from smoothbench.evaluation.ensembles import EnsemblePredictions
from smoothbench.evaluation.members import Members, load_members
from smoothbench.evaluation.scoring import Profile, evaluate
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.fileio import atomic_open, check_writable_file
from smoothbench.metrics.soft_labels import soft_label_nll
from smoothbench.models.sources import ModelOptions, for_dataset
from smoothbench.progress import Progress
from smoothbench.results.store import check_results_file, write_rows
from smoothbench.schema import EVALUATION_IDENTITY, SHIFT_ROW_KEY

PathLike = str | os.PathLike

#: The ``shift`` value of the clean test set's rows.
CLEAN = "clean"
#: Soft-label targets a request may name besides the image sets: name → the clean dataset they label.
SOFT_LABEL_SETS = {"cifar10h": "cifar10"}
#: The metrics of the clean-vs-shift table.
DIFFERENCE_METRICS = ("acc", "nll", "ece")


def parse_sets(sets: Sequence[str] | str) -> tuple[str, ...]:
    """``"cifar10.1,cifar10h"`` or a list → the set names, checked (known, no repeats, at least one)."""
    names = [s.strip() for s in sets.split(",")] if isinstance(sets, str) else [str(s).strip() for s in sets]
    valid = (*SHIFTS, *SOFT_LABEL_SETS)
    if not names or any(not n for n in names):
        raise UserError(f"{param('sets')} takes a comma-separated list of set names: {', '.join(valid)}")
    for n in names:
        if n not in valid:
            raise UserError(f"unknown shift set {n!r} in {param('sets')}: choose from {', '.join(valid)}")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated is not None:
        raise UserError(f"{param('sets')} names {repeated} twice; name each set once")
    return tuple(names)


@dataclass
class ShiftRequest:
    """What ``smoothbench shift`` does.

    ``models``: as in :class:`~smoothbench.pipelines.eval.EvalRequest` (several form a deep ensemble).
    ``sets``: the shift sets (``cifar10.1``, ``imagenet-v2``, ``imagenet-a``, ``imagenet-r``,
    ``imagenet-sketch``) and soft-label targets (``cifar10h``), as a list or ``"a,b"``. ``dataset``: the clean
    dataset (default: the checkpoint's), read from ``data_dir``; the shift sets are read from ``shift_dir``
    (default: ``data_dir``); ``download`` fetches what has a published URL and checksum. ``subset_files``:
    set name (``clean`` for the test set) → a published image list
    (:func:`~smoothbench.data.subset.read_subset_file`), applied before ``settings.subset`` (which takes a
    class-balanced sample of N images of every set, all of a set that has fewer); each set's rows carry its
    own file's ``subset_sha256`` (``settings.subset_file`` is not used: name the clean set's list here).
    ``workers`` decode image folders. Files: ``out`` (the rows, CSV or JSON;
    ``format`` overrides the suffix; rows of the same key are replaced) and ``diff_out`` (the clean-vs-shift
    table, CSV or JSON, rewritten).
    """

    models: Sequence[PathLike]
    sets: Sequence[str] | str
    settings: EvalSettings = field(default_factory=EvalSettings)
    model_options: ModelOptions = field(default_factory=ModelOptions)
    dataset: str | None = None
    data_dir: PathLike | None = None
    shift_dir: PathLike | None = None
    download: bool = False
    subset_files: Mapping[str, PathLike] = field(default_factory=dict)
    workers: int = 4
    out: PathLike | None = None
    diff_out: PathLike | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        self.sets = parse_sets(self.sets)
        if self.format not in (None, "csv", "json"):
            raise UserError(f"{param('format')} must be csv or json, got {self.format!r}")
        for name in self.subset_files:
            if name != CLEAN and (name not in self.sets or name in SOFT_LABEL_SETS):
                raise UserError(f"a subset file is given for {name!r}, which is not one of the image sets "
                                f"evaluated ({', '.join([CLEAN, *[s for s in self.sets if s in SHIFTS]])})")
        if self.workers < 0:
            raise UserError(f"{param('workers')} must be at least 0, got {self.workers}")
        if self.settings.subset_file is not None:
            raise UserError(f"shift takes one image list per set: give {param('subset_files')} "
                            f"{{'{CLEAN}': {self.settings.subset_file!r}}} instead of the settings' "
                            f"{param('subset_file')}")

    @property
    def image_sets(self) -> tuple[str, ...]:
        return tuple(s for s in self.sets if s in SHIFTS)


@dataclass
class ShiftResult:
    """Rows of every set (``shift`` column), the clean-vs-shift table, the predictions behind them (per set),
    the files written and where the time went."""

    model: str
    dataset: str
    rows: pd.DataFrame
    differences: pd.DataFrame
    predictions: dict[str, EnsemblePredictions]
    files: list[Path]
    profile: Profile
    seconds: float


def masked(settings: EvalSettings, mask: np.ndarray | None) -> EvalSettings:
    """``settings`` with the 200-class mask of ImageNet-A / -R (``EvalSettings.class_mask``: ``predict`` keeps
    those output columns of every member's logits before the softmax, so the averaged probabilities are
    200-way and the labels ``0..199`` index them); unchanged without a mask."""
    return settings if mask is None else settings.with_(class_mask=tuple(int(i) for i in mask))


def mask_for(members: Members, name: str, num_classes: int, mask: np.ndarray | None) -> np.ndarray | None:
    """The mask to apply to ``members`` on set ``name``: ``None`` when the set uses all the model's classes,
    or the model already predicts exactly the masked classes (``--class-indices``); else ``mask``."""
    spec = members.spec
    if mask is None:
        members.check_dataset(SHIFTS[name].base, num_classes)
        return None
    kept = getattr(getattr(spec, "source", None), "class_indices", None)
    if spec.num_classes == len(mask) and (kept is None or tuple(kept) == tuple(int(i) for i in mask)):
        return None
    if spec.num_classes != len(IMAGENET_WNIDS):
        raise UserError(f"{members.name} predicts {spec.num_classes} classes; {name} needs a 1000-way ImageNet "
                        f"model (its 200-class mask is applied) or one restricted to exactly its 200 classes")
    return mask


def _subset(source, set_name: str, request: ShiftRequest, settings: EvalSettings):
    """``source`` cut to its subset file (if any) and then to ``settings.subset``; returns the new source,
    the kept positions in the full set, and the subset file's SHA-256 (``""`` without one).

    ``settings.subset`` keeps the class-balanced sample of N images that ``get_dataset`` keeps of a test split
    (:func:`~smoothbench.data.subset.subset_positions`; the clean set's N images are those of ``eval
    --subset N``), or all of a set that has fewer (the sets differ in size; ``n_images`` records what was
    kept).
    """
    chosen, digest = subset_positions(source, settings.subset, request.subset_files.get(set_name), at_most=True,
                                      parameter=param("subset_files", cli="--subset-file"))
    if chosen is None:
        return source, np.arange(len(source), dtype=np.int64), digest
    return source.select(chosen), chosen, digest


def run_shift(request: ShiftRequest, *, progress: Progress | None = None) -> ShiftResult:
    """Evaluate ``request.models`` on the clean test set and on every shift set, and write the files asked for.

    Every output, set name and dataset is checked before any model runs. Under torchrun every process
    computes its shard and gets every row; rank 0 alone writes files.
    """
    _check_outputs(request)
    settings = request.settings.on_device()
    members = load_members(request.models, for_dataset(request.model_options, request.dataset))
    name = request.dataset or members.spec.dataset
    if name is None:
        raise UserError(f"{members.name} does not record its dataset: give {param('dataset')}")
    members.check_dataset(name)
    for s in request.sets:
        base = SHIFTS[s].base if s in SHIFTS else SOFT_LABEL_SETS[s]
        if base != name:
            raise UserError(f"{s} is a test set for {base} models, but {members.name} is evaluated on {name}; "
                            f"leave {s} out of {param('sets')}")
    data_dir = None if request.data_dir is None else str(request.data_dir)
    shift_dir = data_dir if request.shift_dir is None else str(request.shift_dir)
    with distributed.main_first():  # rank 0 downloads first
        clean = get_dataset(name, data_dir, "test", download=request.download, workers=request.workers)
        shifts = [(s, *get_shift(s, shift_dir, download=request.download, workers=request.workers))
                  for s in request.image_sets]
        soft = {s: load_cifar10h(shift_dir, download=request.download) for s in request.sets if s in SOFT_LABEL_SETS}
    members.check_dataset(name, clean.num_classes)
    plans = [(CLEAN, clean, None)]
    for s, source, mask in shifts:
        plans.append((s, source, mask_for(members, s, source.num_classes, mask)))
    start = time.perf_counter()
    rows: list[dict] = []
    predictions: dict[str, EnsemblePredictions] = {}
    profile = Profile()
    for s, source, mask in plans:
        source, positions, digest = _subset(source, s, request, settings)
        if progress is not None:
            progress.start(len(source), f"{s}: {members.name}")
        context = {"dataset": name, "split": "test", "shift": s, "subset_sha256": digest}
        set_rows, set_predictions = evaluate(members, source, masked(settings, mask), context=context,
                                             progress=progress)
        if s == CLEAN:
            for soft_name, labels in soft.items():
                for row in set_rows:
                    probs = set_predictions.probs[row["ensemble_size"]]
                    row[f"nll_{soft_name}"] = soft_label_nll(probs, labels[positions])
        rows += set_rows
        predictions[s] = set_predictions
        profile.add_predictions(set_predictions)
    table = pd.DataFrame(rows)
    differences = shift_differences(table)
    io_start = time.perf_counter()
    files = _write_files(request, rows, differences) if distributed.is_main_process() else []
    profile.add("io", time.perf_counter() - io_start)
    return ShiftResult(members.name, name, table, differences, predictions, files, profile,
                       time.perf_counter() - start)


def shift_differences(rows: pd.DataFrame, metrics: Sequence[str] = DIFFERENCE_METRICS) -> pd.DataFrame:
    """The clean-vs-shift table: for every shift row with a clean row of the same evaluation identity
    (:data:`smoothbench.schema.EVALUATION_IDENTITY`: model, checkpoint, dataset, ensemble size and settings;
    not ``subset_sha256``, which names each set's own image list),
    ``<metric>_clean``, ``<metric>_shift`` and ``d_<metric>`` = shift − clean for each of ``metrics``
    (negative ``d_acc`` and positive ``d_nll`` / ``d_ece``: worse under the shift). One row per (identity,
    shift), in the order of ``rows``; empty (with its columns) when there is nothing to compare."""
    identity = [c for c in EVALUATION_IDENTITY if c in rows.columns and c != "subset_sha256"]  # each set's own
    columns = [*identity, "shift", *(c for m in metrics for c in (f"{m}_clean", f"{m}_shift", f"d_{m}"))]
    if rows.empty or "shift" not in rows.columns:
        return pd.DataFrame(columns=columns)
    key = rows[identity].astype(str).agg("\x1f".join, axis=1)
    clean = {k: r for k, (_, r) in zip(key[rows["shift"] == CLEAN], rows[rows["shift"] == CLEAN].iterrows())}
    out = []
    for k, (_, row) in zip(key, rows.iterrows()):
        if row["shift"] == CLEAN or k not in clean:
            continue
        base = clean[k]
        entry = {c: row[c] for c in identity}
        entry["shift"] = row["shift"]
        for m in metrics:
            entry[f"{m}_clean"], entry[f"{m}_shift"] = base[m], row[m]
            entry[f"d_{m}"] = row[m] - base[m]
        out.append(entry)
    return pd.DataFrame(out, columns=columns)


def _table_format(path: PathLike, fmt: str | None) -> str:
    fmt = fmt or Path(path).suffix.lstrip(".").lower()
    if fmt not in ("csv", "json"):
        raise UserError(f"cannot tell the format of {path}: name it .csv or .json, or give {param('format')}")
    return fmt


def _check_outputs(request: ShiftRequest) -> None:
    """The files asked for can be written (and an existing results file takes these rows)."""
    if request.out is not None:
        check_results_file(request.out, SHIFT_ROW_KEY, request.format)
    if request.diff_out is not None:
        _table_format(request.diff_out, request.format)
        check_writable_file(request.diff_out)


def _write_files(request: ShiftRequest, rows: list[dict], differences: pd.DataFrame) -> list[Path]:
    files = []
    if request.out is not None:
        write_rows(request.out, rows, key_columns=SHIFT_ROW_KEY, fmt=request.format)
        files.append(Path(request.out))
    if request.diff_out is not None:
        fmt = _table_format(request.diff_out, request.format)
        with atomic_open(request.diff_out) as handle:
            if fmt == "csv":
                differences.to_csv(handle, index=False)
            else:
                differences.to_json(handle, orient="records", indent=1)
        files.append(Path(request.diff_out))
    return files
