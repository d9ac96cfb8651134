"""The corruption sweep loop: every (corruption, severity) cell evaluated and appended to the results file.

Under torchrun every process runs the same loop: each predicts its shard of the images of every cell
(:func:`smoothbench.evaluation.ensembles.predict`), the probabilities are gathered, and every process gets
the same rows; only rank 0 writes files. Sweeps shard the images of each cell rather than the cells, so
every process stays busy even for one cell and the rows equal the one-process rows; generated corruptions
are computed shard by shard too (each image's draws depend on its position only) and gathered.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

from smoothbench import distributed
from smoothbench.errors import UserError, param
from smoothbench.evaluation.ensembles import announce_long_run
from smoothbench.evaluation.members import Members
from smoothbench.evaluation.calibration import Calibration
from smoothbench.evaluation.scoring import Profile, Row, evaluate, size_columns
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.progress import Progress
from smoothbench.results import store
from smoothbench.schema import CORRUPTION_ROW_KEY, SEVERITIES

#: Corrupted set → its clean dataset; ``synthetic-c`` exists only generated (the demo's).
CORRUPTED_DATASETS = {"cifar10-c": "cifar10", "cifar100-c": "cifar100", "imagenet-c": "imagenet",
                      "synthetic-c": "synthetic"}


@dataclass
class CorruptionSweep:
    """What to sweep: which corrupted set, from where, which cells.

    ``data_dir`` is the released corrupted set (or, with ``generate``, the clean dataset folder);
    ``clean_data_dir`` the clean dataset folder for the severity-0 row of a released sweep;
    ``generate`` corrupts the clean test set on the fly with smoothbench's engine (``corruption_seed``);
    ``corruptions``: ``common`` (15), ``extra`` (4), ``all`` (19), comma-separated names or a list;
    ``severities``: a list or comma-separated numbers in 1..5;
    ``imagenet_c_transform``: ``hendrycks`` (centre crop 224) or ``paper`` (resize 256 + crop 224);
    ``verify``: check released CIFAR-C files against their published MD5s (off for sets you made yourself).
    """

    dataset: str
    data_dir: str | None = None
    clean_data_dir: str | None = None
    generate: bool = False
    corruptions: Sequence[str] | str = "common"
    severities: Sequence[int] | str = SEVERITIES
    corruption_seed: int = 0
    imagenet_c_transform: str = "hendrycks"
    frost_dir: str | None = None
    include_clean: bool = True
    verify: bool = True

    def __post_init__(self) -> None:
        self.corruptions = corruption_names(self.corruptions)
        self.severities = severity_list(self.severities)
        for path in ("data_dir", "clean_data_dir", "frost_dir"):
            if getattr(self, path) is not None:
                setattr(self, path, str(getattr(self, path)))
        if self.dataset not in CORRUPTED_DATASETS:
            raise UserError(f"{param('dataset')} must be one of {', '.join(CORRUPTED_DATASETS)}, got {self.dataset!r}")
        if self.generate and self.dataset == "imagenet-c":
            raise UserError("ImageNet-C is too large to corrupt on the fly; write it once with "
                            "`smoothbench data make-c --dataset imagenet` and give that folder as the data folder")
        if self.dataset == "synthetic-c" and not self.generate:
            raise UserError("synthetic-c has no released files; generate it on the fly")
        if not self.generate and self.data_dir is None:
            raise UserError(f"{param('data_dir')} must point at the released {self.dataset} folder (or generate the corruptions)")

    @property
    def clean_dataset(self) -> str:
        return CORRUPTED_DATASETS[self.dataset]

    @property
    def params(self) -> str:
        """The corruption parameter table: ``imagenet`` for ImageNet-C, ``cifar`` otherwise."""
        return "imagenet" if self.dataset == "imagenet-c" else "cifar"

    def files_origin(self) -> str:
        """``generated`` (on the fly, or a folder written by ``smoothbench data make-c``) or ``released``."""
        if self.generate:
            return "generated"
        from smoothbench.corruptions.released import MANIFEST, cifar_c_dir, imagenet_c_dir

        folder = imagenet_c_dir(self.data_dir) if self.dataset == "imagenet-c" else cifar_c_dir(self.data_dir, self.clean_dataset)
        return "generated" if (folder / MANIFEST).is_file() else "released"

    def cells(self) -> list[tuple[str, int]]:
        """``(corruption, severity)`` of every cell, the clean set as ``("clean", 0)`` first."""
        clean = [("clean", 0)] if self.include_clean else []
        return clean + [(c, s) for c in self.corruptions for s in self.severities]


def corruption_names(chosen: Sequence[str] | str) -> list[str]:
    """``common`` / ``extra`` / ``all``, comma-separated names or a list (empty: the clean cell only),
    validated against the engine's names."""
    from smoothbench.corruptions import names

    if isinstance(chosen, str) and chosen in ("common", "extra", "all"):
        return names(chosen)
    items = chosen.split(",") if isinstance(chosen, str) else list(chosen)
    picked = [item.strip() for item in items if item.strip()]
    known = names("all")
    unknown = [c for c in picked if c not in known]
    if unknown or (isinstance(chosen, str) and not picked):
        shown = ", ".join(unknown) if unknown else repr(chosen)
        raise UserError(f"unknown {param('corruptions')} {shown}; use common, extra, all or names from: "
                        + ", ".join(known))
    return picked


def severity_list(chosen: Sequence[int] | str) -> list[int]:
    """Severities as a sorted list of distinct values in 1..5 (``"1,3"`` or a list)."""
    try:
        values = sorted({int(v) for v in (chosen.split(",") if isinstance(chosen, str) else chosen)
                         if str(v).strip() != ""})
    except ValueError:
        raise UserError(f"{param('severities')} needs comma-separated integers, got {chosen!r}") from None
    if not values or any(v not in SEVERITIES for v in values):
        raise UserError(f"{param('severities')} values must lie in 1..5, got {chosen!r}")
    return values


class _CellSources:
    """The image source of each cell: the clean test set (loaded once), a generated or a released cell."""

    def __init__(self, sweep: CorruptionSweep, settings: EvalSettings) -> None:
        self.sweep, self.settings = sweep, settings
        self._clean = None
        self._labels_checked = False

    def clean(self):
        if self._clean is None:
            from smoothbench.data import get_dataset

            sweep = self.sweep
            directory = sweep.data_dir if sweep.generate else sweep.clean_data_dir
            self._clean = get_dataset(sweep.clean_dataset, directory, "test", subset=self.settings.subset,
                                      subset_file=self.settings.subset_file)
        return self._clean

    def cell(self, corruption: str, severity: int):
        sweep, settings = self.sweep, self.settings
        if severity == 0:
            return self.clean()
        if sweep.generate:
            from smoothbench.corruptions import corrupt
            from smoothbench.data import ResidentImages

            clean = self.clean()
            start, stop = distributed.local_rows(len(clean))
            images = corrupt(clean.numpy_nhwc()[start:stop], corruption, severity, params=sweep.params,
                             seed=sweep.corruption_seed, start_index=start, device=settings.device,
                             frost_dir=sweep.frost_dir)
            images = distributed.gather_rows(images)
            return ResidentImages.from_numpy(sweep.dataset, "test", images, clean.labels.numpy(), clean.classes,
                                             source="generated")
        # a released cell is the clean test set corrupted, image for image: the subset file's positions (or
        # relative paths) and the sample drawn from its labels (the clean labels) pick the clean subset's images
        from smoothbench.data.subset import select_subset

        if sweep.dataset == "imagenet-c":
            from smoothbench.corruptions.released import load_imagenet_c

            cell = load_imagenet_c(sweep.data_dir, corruption, severity, transform=sweep.imagenet_c_transform)
            return select_subset(cell, settings.subset, settings.subset_file)
        from smoothbench.corruptions.released import load_cifar_c

        if settings.subset_file is None:  # reads only the rows of the subset
            cell = load_cifar_c(sweep.data_dir, corruption, severity, dataset=sweep.clean_dataset,
                                subset=settings.subset, verify=sweep.verify)
        else:
            cell = select_subset(load_cifar_c(sweep.data_dir, corruption, severity, dataset=sweep.clean_dataset,
                                              verify=sweep.verify), settings.subset, settings.subset_file)
        if sweep.clean_data_dir is not None:
            self._check_labels(cell)
        return cell

    def _check_labels(self, cell) -> None:
        """Warn (once) when a corrupted set's labels are not the clean test set's, image for image."""
        if self._labels_checked:
            return
        self._labels_checked = True
        clean = self.clean().labels.cpu()
        labels = cell.labels.cpu()
        if len(labels) != len(clean) or not bool((labels == clean).all()):
            wrong = int((labels != clean).sum()) if len(labels) == len(clean) else len(labels)
            warnings.warn(f"the labels of {self.sweep.data_dir} ({self.sweep.dataset}) differ from the clean "
                          f"{self.sweep.clean_dataset} test labels ({wrong} of {len(clean)} images): its images "
                          "are probably in another order or from another set, so its rows do not measure the "
                          "same images as the clean row", stacklevel=2)


def corruption_sweep(
    members: Members,
    sweep: CorruptionSweep,
    settings: EvalSettings,
    out: str | os.PathLike,
    *,
    progress: Progress | None = None,
    on_cell: Callable[[list[Row]], None] | None = None,
    calibration: Calibration | None = None,
) -> tuple[list[Row], Profile]:
    """Evaluate every (corruption, severity) cell; each finished cell is appended to ``out`` at once.

    Cells already in ``out`` (same model, checkpoint, settings and cell) are skipped, so a killed sweep resumes
    where it stopped and never duplicates a row. The clean test set is severity 0. Under torchrun rank 0
    reads ``out`` and tells the others which cells are done, and only rank 0 appends. Returns the rows
    computed by this call and where the time went (:class:`Profile`). ``settings.device`` must be resolved
    (:meth:`EvalSettings.on_device`). ``calibration``: temperatures fitted on clean held-out images, applied to
    every cell.
    """
    members.check_dataset(sweep.clean_dataset)
    profile = Profile()
    with profile.section("io"):
        done = distributed.on_main(lambda: store.done_keys(out, CORRUPTION_ROW_KEY))
    sources = _CellSources(sweep, settings)
    files_origin = sweep.files_origin()
    sizes = size_columns(settings.ensembles, len(members.models), settings.mc_samples)
    all_rows: list[Row] = []
    cells = sweep.cells()
    announced = False
    for position, (corruption, severity) in enumerate(cells):
        if sweep.include_clean and severity == 0 and not sweep.generate and sweep.clean_data_dir is None:
            continue  # released sweep without the clean folder: no severity-0 row
        origin = "clean" if severity == 0 else files_origin
        context = {"dataset": sweep.dataset, "split": "test", "corruption": corruption, "severity": severity,
                   "corruption_params": sweep.params, "source": origin,
                   "corruption_seed": sweep.corruption_seed if origin == "generated" else ""}
        probe = {**members.columns(), **context, "calibration": "" if calibration is None else calibration.column}
        if all(store.row_key({**probe, **size}, CORRUPTION_ROW_KEY, settings) in done for size in sizes):
            if progress is not None:
                progress.advance(0, f"{corruption} {severity}: done")
            continue
        cell_start = time.perf_counter()
        with profile.section("data"):
            source = sources.cell(corruption, severity)
        members.check_dataset(sweep.clean_dataset, source.num_classes)
        rows, predictions = evaluate(members, source, settings, context=context, announce=False,
                                     calibration=calibration)
        if not announced:  # the first cell computed tells the pace of the rest
            left = len(cells) - position
            announce_long_run((time.perf_counter() - cell_start) * left, predictions.sample_forwards * left,
                              len(source) * left)
            announced = True
        profile.add_predictions(predictions)
        with profile.section("io"):
            if distributed.is_main_process():
                store.write_rows(out, rows, key_columns=CORRUPTION_ROW_KEY)
        all_rows.extend(rows)
        if on_cell is not None:
            on_cell(rows)
        if progress is not None:
            progress.advance(1, f"{corruption} {severity}")
    return all_rows, profile
