"""``run_reproduce``: one of the paper's figures, end to end: train the grid, evaluate it, draw it, compare.

The grid is ResNet-18 deterministic / MC dropout × without / with spatial smoothing × ``seeds`` training
seeds, trained with the paper's recipe shrunk as the scale says (:mod:`smoothbench.reproduce.grid`).
``paper-fig2`` evaluates every run on the clean test set at the figure's ensemble sizes; ``paper-fig9``
sweeps the corrupted test set and summarises it against the authors' AlexNet (mCE, mCNLL, mCECE). Then it
draws the figure (mean ± std over seeds, the paper's readings overlaid) and writes the ours-vs-paper table.

Everything resumes: a finished run folder is reused and an unfinished one continued from its last epoch
(:func:`~smoothbench.training.run_training` with ``resume``), finished evaluations are skipped (their rows
are in ``eval.csv``) and a sweep skips its finished cells, so a killed reproduction, run again with the same
request, continues where it stopped. Under torchrun (``--nproc N``) every process runs this with the same
request: training is data parallel and evaluation sharded, as in the commands they come from; rank 0 alone
writes the tables and the figure.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from smoothbench import distributed
from smoothbench.data import get_dataset
from smoothbench.errors import UserError, param
from smoothbench.evaluation.corruption_cells import CorruptionSweep, corruption_names
from smoothbench.evaluation.scoring import size_columns
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.fileio import atomic_open, check_writable_file, check_writable_folder, sha256_file
from smoothbench.pipelines.corrupt import SweepRequest, run_corruption_sweep
from smoothbench.pipelines.eval import EvalRequest, run_eval
from smoothbench.progress import Progress
from smoothbench.reproduce.compare import compare, curves, paper_readings
from smoothbench.reproduce.draw import draw_figure
from smoothbench.reproduce.grid import (DATASETS, TEST_IMAGES, Cell, Figure, Scale, grid, resolve_figure,
                                        resolve_scale, train_config)
from smoothbench.reproduce.plan import plan_table
from smoothbench.results.store import check_results_file, done_keys, keys_of, read_table, row_key
from smoothbench.schema import CORRUPTION_ROW_KEY, EVAL_ROW_KEY, SUMMARY_ROW_KEY
from smoothbench.training import TrainConfig, run_training
from smoothbench.training.config import CHOSEN_SPEC_FIELDS, TRAJECTORY_SETTINGS, resolve_config
from smoothbench.training.run_folder import CONFIG_FILENAME, MODEL_FILENAME

PathLike = str | os.PathLike


@dataclass
class ReproduceRequest:
    """What ``smoothbench reproduce`` does.

    ``figure``: ``paper-fig2`` or ``paper-fig9``; ``scale``: ``tiny``, ``small``, ``full`` or a
    :class:`~smoothbench.reproduce.grid.Scale`; ``dataset``: ``cifar100`` (the paper's) or ``cifar10``,
    read from ``data_dir`` (``download`` fetches it); ``seeds``: training seeds per model (0, 1, ...);
    ``out``: the folder of runs, tables and figures (shared by both figures). Fig. 9 sweeps the released
    corrupted set in ``c_data_dir`` if given, else corrupts the clean test set on the fly (``frost_dir``: the
    frost textures). ``subset`` evaluates at most N test images (a class-balanced sample, below the scale's own
    count), for quick checks. ``device``, ``precision`` and ``channels_last`` apply to training and evaluation.
    ``plan`` only prints the grid with estimated times from a short probe: nothing is trained or written.
    """

    figure: str
    scale: str | Scale
    dataset: str = "cifar100"
    data_dir: PathLike | None = None
    seeds: int = 3
    out: PathLike = "reproduce"
    c_data_dir: PathLike | None = None
    frost_dir: PathLike | None = None
    subset: int | None = None
    download: bool = False
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    plan: bool = False

    def __post_init__(self) -> None:
        resolve_figure(self.figure)
        resolve_scale(self.scale)
        if self.dataset not in DATASETS:
            raise UserError(f"{param('dataset')} must be {' or '.join(DATASETS)} (the paper's figures are CIFAR), "
                            f"got {self.dataset!r}")
        if self.seeds < 1:
            raise UserError(f"{param('seeds')} must be at least 1, got {self.seeds}")
        if self.subset is not None and self.subset < 1:
            raise UserError(f"{param('subset')} must be at least 1, got {self.subset}")
        if self.c_data_dir is not None and not resolve_figure(self.figure).corrupted:
            raise UserError(f"{param('c_data_dir')} is for paper-fig9 (the corrupted test set); leave it out for "
                            f"{self.figure}")

    @property
    def figure_spec(self) -> Figure:
        return resolve_figure(self.figure)

    @property
    def scale_spec(self) -> Scale:
        return resolve_scale(self.scale)

    def test_images(self, corrupted: bool) -> int | None:
        """Images per clean evaluation (``corrupted=False``) or per corruption cell (``None``: all)."""
        own = self.scale_spec.corrupt_subset if corrupted else self.scale_spec.test_subset
        given = [n for n in (own, self.subset) if n is not None]
        return min(given) if given else None

    def eval_settings(self, cell: Cell) -> EvalSettings:
        """The evaluation of one run: the figure's ensemble sizes (MC dropout; 1 for deterministic nets), the
        paper code's 10-bin ECE (so ECE and mCECE compare with the paper and its AlexNet baseline)."""
        figure = self.figure_spec
        return EvalSettings(ensembles=list(figure.sizes) if cell.method == "mcdo" else [1],
                            subset=self.test_images(figure.corrupted), ece_mode="reference", device=self.device,
                            precision=self.precision, channels_last=self.channels_last)


@dataclass
class ReproduceResult:
    """``table``: ours (mean ± std over seeds) against the paper's readings, with differences, in the
    figure's units; ``points``: our values per run (fractions) behind it; ``files``: what was written (runs
    folder, results, figure, table); ``trained``: the runs trained or continued by this call; ``notes``:
    what the numbers are (scale, data, missing readings); ``plan``: the ``--plan`` table (nothing else is
    filled then); ``seconds``: wall time of the call."""

    figure: str
    dataset: str
    scale: Scale
    table: pd.DataFrame
    points: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    trained: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plan: pd.DataFrame | None = None
    seconds: float = 0.0


def output_files(request: ReproduceRequest) -> dict[str, Path]:
    """Where a reproduction writes: ``runs`` (one folder per run), ``eval`` / ``corrupt`` / ``corrupt_summary``
    (result tables shared by every reproduction in ``out``), and this figure's ``figure`` PNG and ``table``."""
    out, scale = Path(request.out), request.scale_spec
    stem = f"{request.figure}-{request.dataset}-{scale.name}" + (f"-subset{request.subset}" if request.subset else "")
    return {"runs": out / "runs", "eval": out / "eval.csv", "corrupt": out / "corrupt.csv",
            "corrupt_summary": out / "corrupt_summary.csv", "figure": out / f"{stem}.png",
            "table": out / f"{stem}-vs-paper.csv"}


def run_reproduce(request: ReproduceRequest, *, progress: Progress | None = None) -> ReproduceResult:
    """Train, evaluate, draw and compare as the module docstring says (or, with ``plan``, only estimate)."""
    start = time.perf_counter()
    figure, scale = request.figure_spec, request.scale_spec
    files = output_files(request)
    cells = grid(request.seeds)
    run_dirs = [files["runs"] / cell.name(request.dataset, scale) for cell in cells]
    if request.plan:
        n_cells = 1 + len(corruption_names(scale.corruptions)) * len(scale.severities)  # the clean cell too
        plan = plan_table(cells, run_dirs, figure, scale, dataset=request.dataset,
                          test_images=request.test_images(False) or TEST_IMAGES,
                          corrupt_images=request.test_images(True) or TEST_IMAGES, n_cells=n_cells,
                          device=request.device, precision=request.precision, channels_last=request.channels_last)
        return ReproduceResult(request.figure, request.dataset, scale, pd.DataFrame(), pd.DataFrame(), plan=plan,
                               seconds=time.perf_counter() - start)
    _check_outputs(files, figure)
    data_dir = None if request.data_dir is None else str(request.data_dir)
    distributed.setup(request.device)  # under torchrun: join the process group before the first decision
    with distributed.main_first():  # the data can be read (rank 0 downloads first), before any folder is made
        get_dataset(request.dataset, data_dir, "test", download=request.download)
    trained = [run_dir.name for cell, run_dir in zip(cells, run_dirs)
               if _train(train_config(cell, scale, dataset=request.dataset, data_dir=data_dir, run_dir=run_dir,
                                      download=request.download, device=request.device,
                                      precision=request.precision, channels_last=request.channels_last),
                         progress)]
    evaluate = _sweep if figure.corrupted else _evaluate
    points, notes = evaluate(request, cells, run_dirs, files, progress)
    if not distributed.is_main_process():  # rank 0 draws and writes
        return ReproduceResult(request.figure, request.dataset, scale, pd.DataFrame(), points, files, trained, notes)
    readings = paper_readings(request.figure, request.dataset)
    if readings.empty:
        notes.append(f"the paper's {request.figure} has no readings for {request.dataset}: the table lists ours only")
    caveat = f"{scale.name} scale: {scale.caveat}" if scale.caveat else None
    if caveat:
        notes.insert(0, caveat)
    table = compare(curves(points, figure), readings, figure=request.figure, dataset=request.dataset,
                    scale=scale.name)
    with atomic_open(files["table"], newline="") as handle:
        table.to_csv(handle, index=False)
    title = (f"{figure.title}: ResNet-18 on {request.dataset}, scale {scale.name}, "
             f"{request.seeds} seed{'s' if request.seeds > 1 else ''}")
    draw_figure(table, figure, files["figure"], title=title, note=caveat)
    return ReproduceResult(request.figure, request.dataset, scale, table, points, files, trained, notes,
                           seconds=time.perf_counter() - start)


def _check_outputs(files: dict[str, Path], figure: Figure) -> None:
    """Every file and folder this reproduction writes can be written, before any training."""
    check_writable_folder(files["runs"])
    if figure.corrupted:
        check_results_file(files["corrupt"], CORRUPTION_ROW_KEY)
        check_results_file(files["corrupt_summary"], SUMMARY_ROW_KEY)
    else:
        check_results_file(files["eval"], EVAL_ROW_KEY)
    check_writable_file(files["figure"])
    check_writable_file(files["table"])


def _train(cfg: TrainConfig, progress: Progress | None) -> bool:
    """Train (or continue) one run; ``False`` if its folder already holds the finished run."""
    run_dir = Path(cfg.out)
    if distributed.on_main(lambda: _finished(run_dir, cfg)):
        return False
    run_dir.mkdir(parents=True, exist_ok=True)  # resume=True needs the folder
    run_training(cfg, progress=progress)
    return True


def _finished(run_dir: Path, cfg: TrainConfig) -> bool:
    """Whether ``run_dir`` holds this run, finished; a finished run of other settings (those that shape the
    weights; a setting its ``config.json`` predates is not compared) is refused."""
    if not (run_dir / MODEL_FILENAME).exists():
        return False
    saved = json.loads((run_dir / CONFIG_FILENAME).read_text())["settings"]
    wanted = resolve_config(cfg).settings()
    pairs = [(k, saved["model"], wanted["model"]) for k in CHOSEN_SPEC_FIELDS + ("source",)]
    pairs += [(k, saved, wanted) for k in TRAJECTORY_SETTINGS]
    differ = [key for key, old, new in pairs if key in old and old[key] != new[key]]
    if differ:
        raise UserError(f"{run_dir} holds a finished run trained with other settings ({', '.join(differ)}); give "
                        f"another {param('out')} or remove that folder")
    return True


def _probe(run_dir: Path, dataset: str) -> dict[str, object]:
    """The model and data columns that the result rows of ``run_dir``'s model have."""
    return {"model": run_dir.name, "checkpoint_sha256": sha256_file(run_dir / MODEL_FILENAME), "dataset": dataset,
            "split": "test"}


def _evaluate(request: ReproduceRequest, cells: list[Cell], run_dirs: list[Path], files: dict[str, Path],
              progress: Progress | None) -> tuple[pd.DataFrame, list[str]]:
    """Fig. 2: every run on the clean test set (skipping those already in ``eval.csv``); returns their rows."""
    wanted: dict[tuple[str, ...], Cell] = {}
    for cell, run_dir in zip(cells, run_dirs):
        settings = request.eval_settings(cell)
        keys = {row_key({**_probe(run_dir, request.dataset), **size}, EVAL_ROW_KEY, settings): cell
                for size in size_columns(settings.ensembles, 1, None)}
        wanted.update(keys)
        if not distributed.on_main(lambda: set(keys) <= done_keys(files["eval"], EVAL_ROW_KEY)):
            run_eval(EvalRequest([run_dir], settings, dataset=request.dataset, data_dir=request.data_dir,
                                 download=request.download, out=files["eval"]), progress=progress)
    if not distributed.is_main_process():
        return pd.DataFrame(), []
    table = read_table(files["eval"])
    found = [(i, wanted[key]) for i, key in enumerate(keys_of(table, EVAL_ROW_KEY)) if key in wanted]
    images = request.test_images(False) or TEST_IMAGES
    return _with_cells(table.iloc[[i for i, _ in found]], [c for _, c in found]), [
        f"clean {request.dataset} test set, {_images(images)}; ECE with the paper code's 10 bins"]


def _sweep(request: ReproduceRequest, cells: list[Cell], run_dirs: list[Path], files: dict[str, Path],
           progress: Progress | None) -> tuple[pd.DataFrame, list[str]]:
    """Fig. 9: every run over the corrupted test set (finished cells skipped), summarised against the authors'
    AlexNet; returns the summaries (one row per run and ensemble size)."""
    scale = request.scale_spec
    corrupted = f"{request.dataset}-c"
    if request.c_data_dir is not None:
        sweep = CorruptionSweep(corrupted, data_dir=request.c_data_dir, clean_data_dir=request.data_dir,
                                corruptions=scale.corruptions, severities=scale.severities)
        origin = f"the released {corrupted.upper()} files in {request.c_data_dir}"
    else:
        sweep = CorruptionSweep(corrupted, data_dir=request.data_dir, generate=True, corruptions=scale.corruptions,
                                severities=scale.severities, frost_dir=request.frost_dir)
        origin = f"{corrupted.upper()} generated on the fly by smoothbench's corruption engine (seed 0)"
    baseline = f"paper-alexnet-{request.dataset}"
    summaries = []
    for cell, run_dir in zip(cells, run_dirs):
        swept = run_corruption_sweep(SweepRequest([run_dir], sweep, request.eval_settings(cell), out=files["corrupt"],
                                                  summary_out=files["corrupt_summary"], baseline=baseline),
                                     progress=progress)
        summaries.append(_with_cells(swept.summary, [cell] * len(swept.summary)))
    images = request.test_images(True) or TEST_IMAGES
    note = (f"corruptions: {', '.join(sweep.corruptions)} at severities {','.join(map(str, sweep.severities))}, "
            f"{_images(images)} of the test set, from {origin}; ratios against the authors' AlexNet ({baseline})")
    return pd.concat(summaries, ignore_index=True), [note]


def _images(n: int) -> str:
    """How many test images a figure used, as its notes say it."""
    return f"all {n:,} images" if n >= TEST_IMAGES else f"{n:,} images (a class-balanced sample)"


def _with_cells(rows: pd.DataFrame, cells: list[Cell]) -> pd.DataFrame:
    """``rows`` with the method, smoothing and training seed of the run each comes from."""
    return rows.assign(method=[c.method for c in cells], smoothing=[c.smoothing for c in cells],
                       train_seed=[c.seed for c in cells]).reset_index(drop=True)
