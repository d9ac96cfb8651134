"""Evaluation loops: models + a data source → tidy metric rows (eval, corruption and consistency sweeps).

Under torchrun every process runs the same loop: each predicts its shard of the images of every cell
(:func:`smoothbench.ensembles.predict`), the probabilities are gathered, and every process gets the same
rows; only rank 0 writes files. Sweeps shard the images of each cell rather than the cells, so every
process stays busy even for one cell and the rows equal the one-process rows; generated corruptions are
computed shard by shard too (each image's draws depend on its position only) and gathered.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from smoothbench import __version__, distributed, metrics
from smoothbench.ensembles import EnsemblePredictions, parse_sizes, predict
from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open
from smoothbench.models.store import load_model_file
from smoothbench.timing import SectionTimer

Progress = Callable[[int, str], None]
ECE_MODES = ("standard", "reference")
PRECISIONS = ("fp32", "bf16")


@dataclass
class EvalSettings:
    """How predictions are drawn and scored.

    ``seed``, ``precision``, ``ece_bins``, ``ece_mode`` and ``subset`` end up in the rows' provenance; the speed
    settings (``batch_size``, ``mc_chunk``, ``device``, ``channels_last``, ``compile``) change results by float
    rounding at most and are not recorded.
    """

    sizes: list[int]
    mc_samples: int | None = None
    seed: int = 0
    batch_size: int = 256
    mc_chunk: int | None = None  # None: 1 sample per forward on a CPU, 8 on a GPU (ensembles.default_mc_chunk)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False  # torch.compile each model for the forwards (ensembles.predict)
    ece_bins: int = 15
    ece_mode: str = "standard"
    subset: int | None = None

    def __post_init__(self) -> None:
        self.sizes = parse_sizes(self.sizes)
        if self.ece_mode not in ECE_MODES:
            raise UserError(f"--ece-mode must be one of {', '.join(ECE_MODES)}, got {self.ece_mode!r}")
        if self.ece_bins < 1:
            raise UserError(f"--ece-bins must be at least 1, got {self.ece_bins}")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.subset is not None and self.subset < 1:
            raise UserError(f"--subset must be at least 1, got {self.subset}")


class Profile(SectionTimer):
    """Where an evaluation's time went (``--profile``): seconds per section, summed over every cell, and the
    image-forwards done (:attr:`EnsemblePredictions.sample_forwards`).

    Sections: ``data`` (loading or generating images, batching them), ``forward`` (the models), ``metrics``
    (scoring), ``io`` (reading done cells, appending rows). On a GPU :func:`~smoothbench.ensembles.predict`
    waits for the device at the boundaries of ``forward`` when profiling, so queued kernels are charged to it.
    """

    def __init__(self) -> None:
        super().__init__(("data", "forward", "metrics", "io"))
        self.sample_forwards = 0

    def add_predictions(self, predictions: EnsemblePredictions) -> None:
        """Add one :func:`evaluate` call's timings and forwards."""
        for section, seconds in predictions.timings.items():
            self.add(section, seconds)
        self.sample_forwards += predictions.sample_forwards


@dataclass
class Members:
    """The loaded model(s) of one evaluation: a single run or a deep ensemble, in the order given."""

    models: list[torch.nn.Module]
    paths: list[str]

    @property
    def spec(self):
        return self.models[0].spec

    @property
    def name(self) -> str:
        names = [display_name(p) for p in self.paths]
        return names[0] if len(names) == 1 else "ensemble(" + "+".join(names) + ")"

    def columns(self) -> dict[str, object]:
        """Model-describing columns shared by every row of these members."""
        spec = self.spec
        return {
            "model": self.name,
            "arch": spec.arch,
            "method": spec.method,
            "smoothing": spec.smoothing,
            "blur": spec.blur,
            "tau": spec.tau,
            "dropout_rate": spec.dropout_rate,
            "width": spec.width,
            "checkpoint_sha256": "+".join(m.checkpoint_sha256 for m in self.models),
        }


def display_name(path: str | os.PathLike) -> str:
    """A run folder's name, or a model file's stem (its folder's name for ``model.pt``)."""
    path = Path(path)
    if path.is_dir() or path.name == "model.pt":
        return (path if path.is_dir() else path.parent).resolve().name
    return path.stem


def load_members(paths: Sequence[str | os.PathLike]) -> Members:
    """Load one or more runs / model files; members of a deep ensemble must share dataset and classes."""
    if not paths:
        raise UserError("give at least one run folder or model file")
    models = [load_model_file(p)[0] for p in paths]
    datasets = {m.spec.dataset for m in models}
    if len(datasets) > 1:
        raise UserError(f"the members were trained on different datasets ({', '.join(map(str, sorted(datasets, key=str)))})")
    archs = {(m.spec.arch, m.spec.method, m.spec.smoothing) for m in models}
    if len(archs) > 1:
        raise UserError("deep-ensemble members must share arch, method and smoothing; evaluate them separately")
    return Members(models, [str(p) for p in paths])


def check_dataset(members: Members, dataset: str, num_classes: int | None = None) -> None:
    """Refuse data the checkpoint was not trained for (another dataset, or another label space).

    ``dataset`` is the clean dataset's name (``cifar10`` for CIFAR-10-C and CIFAR-10-P); call it once before
    loading any data and again with ``num_classes`` once the data are loaded.
    """
    spec = members.spec
    if spec.dataset is not None and dataset != spec.dataset:
        raise UserError(f"{members.name} was trained on {spec.dataset}, not {dataset}; evaluate it on {spec.dataset} "
                        f"(or its corrupted versions)")
    if num_classes is not None and num_classes != spec.num_classes:
        raise UserError(f"{members.name} predicts {spec.num_classes} classes but {dataset} has {num_classes}")


def provenance(settings: EvalSettings, source, members: Members) -> dict[str, object]:
    """Provenance columns of every row."""
    return {
        "smoothbench_version": __version__,
        "seed": settings.seed,
        "data_fingerprint": source.fingerprint,
        "n_images": len(source),
        "subset": settings.subset if settings.subset is not None else "",
        "ece_bins": settings.ece_bins,
        "ece_mode": settings.ece_mode,
        "precision": settings.precision,
        "normalization": ",".join(f"{v:g}" for v in (*members.spec.mean, *members.spec.std)),
    }


def size_columns(sizes: Sequence[int], n_models: int, mc_samples: int | None) -> list[dict[str, object]]:
    """The ``(ensemble_size, members, mc_samples)`` columns of each requested size.

    One model: size ``k`` is ``k`` MC samples of 1 member. A deep ensemble of ``n_models``: size ``k`` is ``k``
    members of ``mc_samples`` samples each (``None`` means 1, as in :func:`smoothbench.ensembles.check_plan`).
    """
    many = n_models > 1
    return [{"ensemble_size": k, "members": k if many else 1, "mc_samples": (mc_samples or 1) if many else k}
            for k in sizes]


def score(predictions: EnsemblePredictions, settings: EvalSettings) -> list[dict[str, object]]:
    """Size and metric columns per requested ensemble size (see :func:`smoothbench.metrics.summarize`)."""
    return [{**cols, **metrics.summarize(predictions.probs[cols["ensemble_size"]], predictions.labels,
                                         ece_bins=settings.ece_bins, ece_mode=settings.ece_mode)}
            for cols in size_columns(predictions.sizes, predictions.members, predictions.mc_samples)]


def predict_with(settings: EvalSettings, models: Sequence[torch.nn.Module], source, **options) -> EnsemblePredictions:
    """:func:`smoothbench.ensembles.predict` with ``settings``' sampling and speed options; ``options`` add or
    override keywords (``seed``, ``index_offset``, ``progress``, ``profile``)."""
    keywords = dict(mc_samples=settings.mc_samples, seed=settings.seed, batch_size=settings.batch_size,
                    mc_chunk=settings.mc_chunk, device=settings.device, precision=settings.precision,
                    channels_last=settings.channels_last, compile=settings.compile)
    return predict(models, source, settings.sizes, **(keywords | options))


def evaluate(
    members: Members,
    source,
    settings: EvalSettings,
    *,
    context: dict[str, object] | None = None,
    progress: Progress | None = None,
    profile: bool = False,
) -> tuple[list[dict[str, object]], EnsemblePredictions]:
    """Predict and score ``source``: one tidy row per ensemble size, plus the predictions themselves.

    ``context`` adds identifying columns (dataset, split, corruption, severity, source...).
    """
    predictions = predict_with(settings, members.models, source, progress=progress, profile=profile)
    head = {**members.columns(), **(context or {})}
    tail = provenance(settings, source, members)
    start = time.perf_counter()
    rows = [{**head, **row, **tail} for row in score(predictions, settings)]
    predictions.timings["metrics"] = time.perf_counter() - start
    return rows, predictions


def save_probs(path: str | os.PathLike, predictions: EnsemblePredictions) -> None:
    """Averaged probabilities per size (``probs_<k>``) and ``labels`` in one ``.npz``, written atomically."""
    arrays = {f"probs_{k}": predictions.probs[k] for k in predictions.sizes}
    arrays["labels"] = predictions.labels
    arrays["sizes"] = np.asarray(predictions.sizes)
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


# ----------------------------------------------------------------------------------------------------------
# corruption sweeps
# corrupted set -> its clean dataset; synthetic-c exists only generated (the demo's)
CORRUPTED_DATASETS = {"cifar10-c": "cifar10", "cifar100-c": "cifar100", "imagenet-c": "imagenet",
                      "synthetic-c": "synthetic"}


@dataclass
class CorruptionSweep:
    """What to sweep: which corrupted set, from where, which cells."""

    dataset: str
    data_dir: str | None
    clean_data_dir: str | None
    generate: bool
    corruptions: list[str]
    severities: list[int]
    corruption_seed: int = 0
    imagenet_c_transform: str = "hendrycks"
    frost_dir: str | None = None
    include_clean: bool = True

    def __post_init__(self) -> None:
        if self.dataset not in CORRUPTED_DATASETS:
            raise UserError(f"--dataset must be one of {', '.join(CORRUPTED_DATASETS)}, got {self.dataset!r}")
        if self.generate and self.dataset == "imagenet-c":
            raise UserError("ImageNet-C is too large to corrupt on the fly; write it once with "
                            "`smoothbench data make-c --dataset imagenet` and pass that folder as --data-dir")
        if self.dataset == "synthetic-c" and not self.generate:
            raise UserError("synthetic-c has no released files; pass --generate")
        if not self.generate and self.data_dir is None:
            raise UserError(f"--data-dir must point at the released {self.dataset} folder (or pass --generate)")

    @property
    def clean_dataset(self) -> str:
        return CORRUPTED_DATASETS[self.dataset]

    @property
    def params(self) -> str:
        return "imagenet" if self.dataset == "imagenet-c" else "cifar"

    def files_origin(self) -> str:
        """``generated`` (on the fly, or a folder written by ``smoothbench data make-c``) or ``released``."""
        if self.generate:
            return "generated"
        from smoothbench.corruptions.released import MANIFEST, cifar_c_dir, imagenet_c_dir

        folder = imagenet_c_dir(self.data_dir) if self.dataset == "imagenet-c" else cifar_c_dir(self.data_dir, self.clean_dataset)
        return "generated" if (folder / MANIFEST).is_file() else "released"

    def cells(self) -> list[tuple[str, int]]:
        clean = [("clean", 0)] if self.include_clean else []
        return clean + [(c, s) for c in self.corruptions for s in self.severities]


def corruption_sweep(
    members: Members,
    sweep: CorruptionSweep,
    settings: EvalSettings,
    out: str | os.PathLike,
    *,
    progress: Progress | None = None,
    on_cell: Callable[[list[dict[str, object]]], None] | None = None,
    profile: Profile | None = None,
) -> list[dict[str, object]]:
    """Evaluate every (corruption, severity) cell; each finished cell is appended to ``out`` at once.

    Cells already in ``out`` (same model, checkpoint, settings and cell) are skipped, so a killed sweep resumes
    where it stopped and never duplicates a row. The clean test set is severity 0. Under torchrun rank 0
    reads ``out`` and tells the others which cells are done, and only rank 0 appends.
    ``profile`` (if given) accumulates the sweep's time per section (see :class:`Profile`).
    """
    from smoothbench import results
    from smoothbench.data import ResidentImages, get_dataset

    check_dataset(members, sweep.clean_dataset)
    timed = profile is not None
    profile = profile if timed else Profile()  # a throwaway one when nobody asked
    with profile.section("io"):
        done = distributed.on_main(lambda: results.done_keys(out, results.CORRUPT_KEYS))
    clean_cache: dict[str, object] = {}

    def clean_source():
        if "source" not in clean_cache:
            directory = sweep.data_dir if sweep.generate else sweep.clean_data_dir
            clean_cache["source"] = get_dataset(sweep.clean_dataset, directory, "test", subset=settings.subset,
                                                seed=settings.seed)
        return clean_cache["source"]

    def cell_source(corruption: str, severity: int):
        if severity == 0:
            return clean_source()
        if sweep.generate:
            from smoothbench.corruptions import corrupt

            clean = clean_source()
            start, stop = distributed.local_rows(len(clean))
            images = corrupt(clean.numpy_nhwc()[start:stop], corruption, severity, params=sweep.params,
                             seed=sweep.corruption_seed, start_index=start, device=settings.device,
                             frost_dir=sweep.frost_dir)
            images = distributed.gather_rows(images)
            return ResidentImages.from_numpy(sweep.dataset, "test", images, clean.labels.numpy(), clean.classes,
                                             source="generated")
        if sweep.dataset == "imagenet-c":
            from smoothbench.corruptions.released import load_imagenet_c

            return load_imagenet_c(sweep.data_dir, corruption, severity, transform=sweep.imagenet_c_transform,
                                   subset=settings.subset)
        from smoothbench.corruptions.released import load_cifar_c

        return load_cifar_c(sweep.data_dir, corruption, severity, dataset=sweep.clean_dataset,
                            subset=settings.subset)

    files_origin = sweep.files_origin()
    all_rows: list[dict[str, object]] = []
    for corruption, severity in sweep.cells():
        if sweep.include_clean and severity == 0 and not sweep.generate and sweep.clean_data_dir is None:
            continue  # released sweep without the clean folder: no severity-0 row
        origin = "clean" if severity == 0 else files_origin
        key_probe = {**members.columns(), "dataset": sweep.dataset, "split": "test", "corruption": corruption,
                     "severity": severity, "corruption_params": sweep.params, "source": origin}
        if all(results.row_key({**key_probe, **size_cols}, results.CORRUPT_KEYS, settings) in done
               for size_cols in size_columns(settings.sizes, len(members.models), settings.mc_samples)):
            if progress is not None:
                progress(0, f"{corruption} {severity}: done")
            continue
        with profile.section("data"):
            source = cell_source(corruption, severity)
        check_dataset(members, sweep.clean_dataset, source.num_classes)
        context = {"dataset": sweep.dataset, "split": "test", "corruption": corruption, "severity": severity,
                   "corruption_params": sweep.params, "source": origin,
                   "corruption_seed": sweep.corruption_seed if origin == "generated" else ""}
        rows, predictions = evaluate(members, source, settings, context=context, profile=timed)
        profile.add_predictions(predictions)
        with profile.section("io"):
            if distributed.is_main_process():
                results.append_cell(out, rows, results.CORRUPT_KEYS)
        all_rows.extend(rows)
        if on_cell is not None:
            on_cell(rows)
        if progress is not None:
            progress(1, f"{corruption} {severity}")
    return all_rows


# ----------------------------------------------------------------------------------------------------------
# consistency
def size_consistency_rows(
    members: Members,
    source,
    settings: EvalSettings,
    *,
    progress: Progress | None = None,
) -> list[dict[str, object]]:
    """How much the prediction still moves as ensemble members are added (a smoothbench extension).

    One pass draws every requested size (running sums, as eval); a second, independent draw gives seed
    stability: for MC dropout the same sizes with seed ``seed + 1``; for a deep ensemble the members in a
    seeded random order (so "size k" is another random subset of k members).
    """
    from smoothbench.consistency import seed_stability, size_consistency

    first = predict_with(settings, members.models, source, progress=progress)
    if len(members.models) > 1:
        order = np.random.default_rng(settings.seed).permutation(len(members.models))
        others, other_seed = [members.models[i] for i in order], settings.seed
    else:
        others, other_seed = members.models, settings.seed + 1
    second = predict_with(settings, others, source, seed=other_seed, progress=progress)
    head = {**members.columns(), "dataset": members.spec.dataset, "split": "test", "kind": "mc-size",
            "perturbation": ""}
    tail = provenance(settings, source, members)
    rows = []
    columns = size_columns(settings.sizes, len(members.models), settings.mc_samples)
    for size_cols, stats in zip(columns, size_consistency(first.probs)):
        k = size_cols["ensemble_size"]
        stability = seed_stability(first.probs[k], second.probs[k])
        stats = {key: value for key, value in stats.items() if key != "ensemble_size"}
        rows.append({**head, **size_cols, "accuracy": float((first.probs[k].argmax(1) == first.labels).mean()),
                     **stats, **stability, **tail})
    return rows


def perturbation_rows(
    members: Members,
    frames_of: Callable[[str], np.ndarray],
    perturbations: Sequence[str],
    settings: EvalSettings,
    *,
    source_kind: str,
    chunk_sequences: int = 256,
    progress: Progress | None = None,
) -> list[dict[str, object]]:
    """CIFAR-10-P consistency per perturbation and ensemble size (paper consistency, CEC, Hendrycks FP/T5D).

    ``frames_of(name)`` returns uint8 sequences ``(N, T, 32, 32, 3)`` (released memory map or generated);
    sequences are fed in chunks of ``chunk_sequences`` so memory stays bounded. MC masks are keyed by the
    global frame index ``i·T + t``, so each frame gets its own masks.
    """
    from smoothbench.consistency import PerturbationMeter, is_noise_perturbation
    from smoothbench.data import ResidentImages

    head = {**members.columns(), "dataset": "cifar10-p", "split": "test", "kind": "perturbation"}
    rows = []
    for name in perturbations:
        sequences = frames_of(name)
        n, t = sequences.shape[:2]
        if settings.subset is not None:
            n = min(n, settings.subset)
        meters = {k: PerturbationMeter(noise=is_noise_perturbation(name)) for k in settings.sizes}
        digest = hashlib.sha256(f"{name}:{n}x{t}".encode())
        for start in range(0, n, chunk_sequences):
            stop = min(start + chunk_sequences, n)
            chunk = np.ascontiguousarray(sequences[start:stop]).reshape(-1, *sequences.shape[2:])
            labels = np.zeros(len(chunk), dtype=np.int64)  # CIFAR-10-P has no labels; consistency needs none
            source = ResidentImages.from_numpy(f"cifar10-p/{name}", "test", chunk, labels,
                                               [str(i) for i in range(members.spec.num_classes)], source=source_kind)
            predictions = predict_with(settings, members.models, source, index_offset=start * t)
            for k in settings.sizes:
                meters[k].update(predictions.probs[k].reshape(stop - start, t, -1))
            digest.update(chunk.tobytes())
            if progress is not None:
                progress(stop - start, name)
        tail = provenance(settings, source, members)
        tail.update({"n_images": n, "data_fingerprint": digest.hexdigest()[:16], "source": source_kind})
        for size_cols in size_columns(settings.sizes, len(members.models), settings.mc_samples):
            rows.append({**head, "perturbation": name, **size_cols,
                         **meters[size_cols["ensemble_size"]].result(), **tail})
    return rows

