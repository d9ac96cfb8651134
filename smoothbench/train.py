"""Training: resolved configs, the loop, run folders and bit-exact resume.

A run folder (``TrainConfig.out``) holds

- ``config.json``: every resolved setting, the model spec, package versions, data fingerprints, device;
- ``checkpoint.pt``: model, optimiser, scheduler, RNG states, completed epochs and the log so far, written
  atomically at the end of every epoch (loadable with ``torch.load(weights_only=True)``);
- ``train_log.csv``: one row per epoch (columns :data:`LOG_COLUMNS`): ``lr`` is the rate of the epoch's
  last step; ``train_loss``/``train_acc`` average over the epoch's augmented images as trained (dropout
  on, weights changing); ``seconds`` is the epoch's wall time with validation, ``images_per_s`` the
  training images over the training time alone;
- ``model.pt``: the final model (:func:`smoothbench.models.store.save_model`); its presence marks the run
  finished.

Epochs: ``epochs`` counts the *main* epochs; ``warmup_epochs`` more run before them, so a run trains
``warmup_epochs + epochs`` epochs and the log numbers them 1..total (paper: 1 + 200 on CIFAR).

Validation after every epoch runs on the test split (``eval_subset`` images of it) with BatchNorm in eval
mode and MC dropout **off** (the deterministic network), so the logged test accuracy is reproducible.

Resume: the augmentation order of epoch ``e`` is a pure function of ``(seed, e)`` (data layer) and dropout
draws from torch's global RNG, whose state the checkpoint restores; so on the CPU a run killed at any
moment and resumed from its last checkpoint ends with bit-identical weights to an uninterrupted run
(GPU kernels and ``torch.compile`` are not bitwise deterministic, so there it is only statistically the
same). A resume must keep every setting in :data:`TRAJECTORY_SETTINGS` and the training data; device,
workers, ``eval_subset``, ``compile`` and ``channels_last`` may change. ``resume`` on a folder without a
checkpoint starts the run from scratch.

Distributed training (``torchrun --nproc-per-node N -m smoothbench train ...``, or ``--nproc N``): one
DistributedDataParallel process per GPU (or CPU process with gloo). ``batch_size`` stays the *global*
batch and must be divisible by the process count; each process takes a contiguous slice of every
global batch of the same per-(seed, epoch) order and augmentation draws, so the union of the slices of
step ``i`` is the one-process batch ``i``. Each process's mean loss is scaled by ``n_local · W / n_global``
so that DDP's gradient average is the gradient of the mean over the global batch (also for an uneven last
batch; a last batch of fewer images than processes is left out), and the learning-rate schedule counts
the same global steps. BatchNorm statistics are per process
unless ``sync_bn`` (then ``nn.SyncBatchNorm`` on GPUs, :class:`smoothbench.distributed.CPUSyncBatchNorm` on
the CPU); with it each step equals the one-process step up to floating-point summation order (which
BatchNorm networks amplify over many steps). Dropout draws
differ per process (rank ``r > 0`` reseeds torch's RNG from ``(seed, r)``) and every rank's RNG state is
checkpointed, so a distributed run resumes bit-identically on the CPU with the same process count (a
different count is refused). Rank 0 decides the resume and broadcasts the checkpoint; only rank 0 writes
files and reports progress; validation is sharded over the processes and summed. Streaming sources
(ImageNet folders) shard the same way: each process's DataLoader decodes only its slice of every global
batch.

Profile: :attr:`TrainResult.timings` holds the seconds this call spent in each section (on each process's
own clock; the CLI prints rank 0's): ``setup`` (config, data and model before the first epoch), ``data`` (waiting for the next batch:
decoding, host-to-device copy, normalisation), ``step`` (forward, backward and optimiser step),
``validation`` and ``io`` (checkpoint, log and model files); what is left of the wall time goes to
progress reports and the per-epoch sums. With ``TrainConfig.profile`` the CUDA device is synchronised at
every section boundary so that each section is charged its own kernels; without it nothing is
synchronised (no host syncs in the hot loop), so on a GPU the sections are host times only and queued
kernels land wherever the host next waits.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from smoothbench import __version__, distributed
from smoothbench.data import DATASETS, NORMALIZATION, ResidentImages, get_dataset
from smoothbench.device import autocast, to_channels_last
from smoothbench.distributed import epoch_images, is_main_process
from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open, atomic_torch_save
from smoothbench.models.registry import create_model, resolve_spec
from smoothbench.models.spec import ModelSpec
from smoothbench.models.store import MODEL_FILENAME, save_model, torch_load_safely
from smoothbench.provenance import package_versions
from smoothbench.timing import SectionTimer
from smoothbench.recipes import RECIPES, SCHEDULES, lr_factor

CONFIG_FILENAME = "config.json"
CHECKPOINT_FILENAME = "checkpoint.pt"
LOG_FILENAME = "train_log.csv"
RUN_FILES = (CONFIG_FILENAME, CHECKPOINT_FILENAME, LOG_FILENAME, MODEL_FILENAME)
CHECKPOINT_FORMAT = "smoothbench-checkpoint"
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_acc", "test_nll", "seconds", "images_per_s")

# Settings that change the trained weights: a resume must agree on all of them.
TRAJECTORY_SETTINGS = (
    "arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width", "dataset", "subset", "epochs",
    "warmup_epochs", "batch_size", "lr", "momentum", "weight_decay", "schedule", "milestones", "gamma",
    "seed", "precision", "sync_bn",
)
# What an old checkpoint without these trajectory entries was trained with.
TRAJECTORY_DEFAULTS = {"sync_bn": False, "world_size": 1}
# Progress text (loss/acc/speed) is refreshed every this many batches: reading the running loss forces a
# device sync, which would slow every GPU step if done per batch.
TEXT_EVERY = 20

Progress = Callable[[int, str], None]
# The sections of TrainResult.timings, in the order a run goes through them.
TIMED_SECTIONS = ("setup", "data", "step", "validation", "io")


@dataclass
class TrainConfig:
    """Everything a training run needs; ``None`` recipe fields take the dataset's recipe (:mod:`recipes`).

    ``batch_size`` is the global batch (all processes together); ``sync_bn`` synchronises BatchNorm
    statistics over the processes of a distributed run; ``subset``/``eval_subset`` limit the train
    and test images; ``device`` is auto/cpu/cuda, ``precision`` fp32/bf16 (autocast); ``compile`` wraps the
    model in ``torch.compile`` for training; ``out`` is the run folder (default
    ``runs/<dataset>/<model name>-seed<seed>``); ``profile`` synchronises the CUDA device around the timed
    sections of :attr:`TrainResult.timings` (see the module docstring).
    """

    arch: str = "resnet18"
    method: str = "dnn"
    smoothing: str = "none"
    blur: str = "box2-pad1"
    tau: float = 10.0
    dropout_rate: float | None = None
    width: int | None = None
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    warmup_epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    milestones: tuple[int, ...] | None = None
    gamma: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    subset: int | None = None
    eval_subset: int | None = None
    workers: int = 4
    out: str | None = None
    resume: bool = False
    force: bool = False
    profile: bool = False

    def settings(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class TrainResult:
    """What :func:`train` returns: final-epoch metrics, the run folder and the whole log.

    ``seconds`` is the wall time from the first epoch of this call to the saved ``model.pt``, ``images`` the
    training images its epochs used (all processes together) and ``timings`` the seconds per section of :data:`TIMED_SECTIONS`.
    """

    run_dir: Path
    model_path: Path
    spec: ModelSpec
    epochs: int
    test_acc: float
    test_nll: float
    train_loss: float
    train_acc: float
    seconds: float
    resumed_from_epoch: int
    log: list[dict[str, float]] = field(default_factory=list)
    images: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill ``None`` recipe fields from the dataset's recipe and validate; bad values raise UserError."""
    if cfg.dataset not in DATASETS:
        raise UserError(f"unknown dataset {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    recipe = RECIPES[DATASETS[cfg.dataset].recipe]
    filled = {f.name: getattr(recipe, f.name) for f in fields(recipe) if getattr(cfg, f.name) is None}
    cfg = replace(cfg, **filled)
    milestones = tuple(int(m) for m in cfg.milestones)
    cfg = replace(cfg, milestones=milestones, lr=float(cfg.lr), momentum=float(cfg.momentum),
                  weight_decay=float(cfg.weight_decay), gamma=float(cfg.gamma), tau=float(cfg.tau))
    checks = (
        (cfg.epochs >= 1, f"--epochs must be at least 1, got {cfg.epochs}"),
        (cfg.warmup_epochs >= 0, f"--warmup-epochs must be 0 or more, got {cfg.warmup_epochs}"),
        (cfg.batch_size >= 1, f"--batch-size must be at least 1, got {cfg.batch_size}"),
        (cfg.lr > 0, f"--lr must be positive, got {cfg.lr}"),
        (0 <= cfg.momentum < 1, f"--momentum must be in [0, 1), got {cfg.momentum}"),
        (cfg.weight_decay >= 0, f"--weight-decay must be 0 or more, got {cfg.weight_decay}"),
        (cfg.schedule in SCHEDULES, f"unknown --schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
        (all(m >= 1 for m in milestones) and all(a < b for a, b in zip(milestones, milestones[1:])),
         f"--milestones must be positive and strictly increasing main-epoch numbers, got {list(milestones)}"),
        (0 < cfg.gamma <= 1, f"--gamma must be in (0, 1], got {cfg.gamma}"),
        (cfg.seed >= 0, f"--seed must be 0 or more, got {cfg.seed}"),
        (cfg.precision in ("fp32", "bf16"), f"unknown --precision {cfg.precision!r}; choose fp32 or bf16"),
        (cfg.subset is None or cfg.subset >= 1, f"--subset must be at least 1, got {cfg.subset}"),
        (cfg.eval_subset is None or cfg.eval_subset >= 1, f"--eval-subset must be at least 1, got {cfg.eval_subset}"),
        (cfg.workers >= 0, f"--workers must be 0 or more, got {cfg.workers}"),
    )
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if cfg.out is None:
        spec = ModelSpec(arch=cfg.arch, method=cfg.method, smoothing=cfg.smoothing)
        cfg = replace(cfg, out=str(Path("runs") / cfg.dataset / f"{spec.name}-seed{cfg.seed}"))
    return cfg


# ----------------------------------------------------------------------------------------------------
# run folder


class RunFolder:
    """The files of one run; every write goes through here and happens on the main process only."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.writes = is_main_process()

    def file(self, name: str) -> Path:
        return self.path / name

    def claim(self, *, resume: bool, force: bool) -> dict[str, Any] | None:
        """Check the folder against resume/force; return the checkpoint to resume from, or None.

        A finished run (``model.pt`` present) is kept unless ``force``; an unfinished one (``checkpoint.pt``
        only) needs ``resume`` or ``force``. ``resume`` on a folder without a checkpoint starts from
        scratch, so one command both starts and continues a run. Nothing is deleted here (see :meth:`clear`).
        """
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} is a file; give a folder for the run")
        if force:
            return None
        if self.file(MODEL_FILENAME).exists():
            raise UserError(f"{self.path} holds a finished run; use --force to train it again or choose another --out")
        checkpoint = self.file(CHECKPOINT_FILENAME)
        if not checkpoint.exists():
            return None
        if not resume:
            raise UserError(f"{self.path} holds an unfinished run; add --resume to continue it or --force to start over")
        payload = torch_load_safely(checkpoint, "training checkpoint")
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{checkpoint} is not a smoothbench training checkpoint; use --force to start over")
        return payload

    def clear(self) -> None:
        """Delete our own files (and temporaries left by a killed atomic write); anything else stays."""
        if self.writes:
            for name in RUN_FILES:
                self.file(name).unlink(missing_ok=True)
                for temporary in self.path.glob(f".{name}.*.tmp"):
                    temporary.unlink()

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        if self.writes:
            with atomic_open(self.file(name), "w") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.write("\n")

    def write_log(self, rows: list[dict[str, float]]) -> None:
        if self.writes:
            with atomic_open(self.file(LOG_FILENAME), "w", newline="") as handle:
                handle.write(",".join(LOG_COLUMNS) + "\n")
                for row in rows:
                    handle.write(",".join(_csv_value(row[c]) for c in LOG_COLUMNS) + "\n")

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        if self.writes:
            atomic_torch_save(payload, self.file(CHECKPOINT_FILENAME))

    def save_model(self, model: torch.nn.Module, meta: dict[str, Any]) -> Path:
        if self.writes:
            save_model(model, self.file(MODEL_FILENAME), extra=meta)
        return self.file(MODEL_FILENAME)


def _csv_value(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


# ----------------------------------------------------------------------------------------------------
# RNG state as plain tensors and ints (so checkpoints load with weights_only=True)


def rng_state(device: torch.device) -> dict[str, Any]:
    """torch CPU (+ CUDA when used), numpy and python RNG states, as tensors and lists of ints."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    saved = state["numpy"]
    np.random.set_state(("MT19937", saved["keys"].numpy().astype(np.uint32), saved["pos"], saved["has_gauss"],
                         saved["cached_gaussian"]))
    saved = state["python"]
    random.setstate((saved["version"], tuple(saved["internal"]), saved["gauss_next"]))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


# ----------------------------------------------------------------------------------------------------
# the loop


def make_spec(cfg: TrainConfig) -> ModelSpec:
    """The model spec of a run: architecture flags plus the dataset's classes, stem, size and normalisation."""
    info = DATASETS[cfg.dataset]
    mean, std = NORMALIZATION[cfg.dataset]
    return ModelSpec(
        arch=cfg.arch, method=cfg.method, smoothing=cfg.smoothing, blur=cfg.blur, tau=cfg.tau,
        dropout_rate=cfg.dropout_rate, num_classes=info.num_classes, stem=info.stem, width=cfg.width,
        dataset=cfg.dataset, image_size=info.image_size, mean=tuple(mean), std=tuple(std),
    )


def iterations_per_epoch(n_images: int, batch_size: int, world: int = 1) -> int:
    """Optimiser steps per epoch for ``n_images`` and the *global* batch size (last partial batch kept,
    unless it has fewer images than the ``world`` processes: see :func:`smoothbench.distributed.epoch_images`)."""
    return math.ceil(epoch_images(n_images, batch_size, world) / batch_size)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, iters_per_epoch: int):
    """SGD (nesterov off, weight decay on every parameter) and a per-step LambdaLR of :func:`lr_factor`."""
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay, nesterov=False)

    def factor(step: int) -> float:
        return lr_factor(step, iters_per_epoch=iters_per_epoch, warmup_epochs=cfg.warmup_epochs,
                         epochs=cfg.epochs, schedule=cfg.schedule, milestones=cfg.milestones, gamma=cfg.gamma)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_step(model, optimizer, scheduler, x: torch.Tensor, y: torch.Tensor, *, precision: str,
               loss_scale: float = 1.0):
    """One SGD step on a batch; returns ``(summed loss, correct count)`` as device tensors (no sync).

    Loss is the mean cross-entropy over the batch, computed in float32 from (possibly bf16) logits; the
    gradient is that of ``loss_scale ×`` it (a distributed rank's share of the global mean, see the module
    docstring).
    """
    with autocast(x.device, precision):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    (loss * loss_scale if loss_scale != 1.0 else loss).backward()
    optimizer.step()
    scheduler.step()
    return loss.detach() * y.shape[0], (logits.detach().argmax(1) == y).sum()


@torch.inference_mode()
def evaluate(model, source, spec: ModelSpec, *, batch_size: int, device: torch.device, precision: str,
             channels_last: bool) -> tuple[float, float]:
    """Deterministic test accuracy and NLL (MC dropout off, BN in eval mode).

    ``acc = mean(argmax p = y)``, ``nll = mean(−log softmax(logits)[y])`` over images (not batch means).
    In a process group each process scores its shard of ``source`` and the sums are added up (pass the
    plain model, not the DDP wrapper, whose forward would wait for the other processes).
    """
    model.eval()
    model.mc(False)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # correct, nll, count
    shard, _ = distributed.shard_source(source)
    for x, y, _ in shard.eval_batches(batch_size, spec.mean, spec.std, device=device, channels_last=channels_last):
        with autocast(device, precision):
            logits = model(x)
        sums[0] += (logits.argmax(1) == y).sum()
        sums[1] += F.cross_entropy(logits.float(), y, reduction="sum").double()
        sums[2] += y.shape[0]
    model.train()
    correct, nll, count = distributed.all_reduce_sum(sums).tolist()
    return correct / count, nll / count


def _resident_on(source, device: torch.device):
    """CIFAR-sized sets move to the device once (batches and augmentation then stay there); others stream."""
    return source.to(device) if isinstance(source, ResidentImages) else source


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def train(cfg: TrainConfig, *, progress: Progress | None = None,
          log: Callable[[dict[str, float]], None] | None = None,
          on_plan: Callable[[int, int], None] | None = None) -> TrainResult:
    """Train a model as ``cfg`` says, writing the run folder; see the module docstring.

    ``on_plan(epochs, images_per_epoch)`` is called once before training with the number of epochs this
    call will run (fewer than the total when resuming), so a progress bar can size itself;
    ``progress(images, text)`` is called after every batch (on rank 0 only, with the global batch's
    images); ``log(row)`` after every epoch with the row written to ``train_log.csv``. Under torchrun
    every process calls this with the same ``cfg``.
    """
    entered = time.perf_counter()
    cfg = resolve_config(cfg)
    device = distributed.setup(cfg.device)
    timer = SectionTimer(TIMED_SECTIONS, device, sync=cfg.profile)
    world, rank = distributed.world_size(), distributed.rank()
    if cfg.batch_size % world:
        raise UserError(f"--batch-size {cfg.batch_size} (the global batch) is not divisible by the {world} processes; "
                        f"choose a multiple of {world}")
    spec = resolve_spec(make_spec(cfg))
    run = RunFolder(cfg.out)
    checkpoint = distributed.on_main(lambda: run.claim(resume=cfg.resume, force=cfg.force))

    with distributed.main_first():  # rank 0 downloads first
        train_source, test_source = (
            _resident_on(get_dataset(cfg.dataset, cfg.data_dir, split, download=cfg.download, subset=subset,
                                     seed=cfg.seed, workers=cfg.workers), device)
            for split, subset in (("train", cfg.subset), ("test", cfg.eval_subset))
        )
    settings = cfg.settings()
    trajectory = {k: settings[k] for k in TRAJECTORY_SETTINGS} | {"train_fingerprint": train_source.fingerprint,
                                                                   "world_size": world}
    if checkpoint is not None:
        _check_same_trajectory(checkpoint["trajectory"], trajectory, run.path)

    if cfg.force:
        run.clear()

    seed_everything(cfg.seed)
    spec = spec.with_(num_classes=train_source.num_classes)  # an image folder may hold fewer classes
    model = create_model(spec)
    if cfg.sync_bn and world > 1:
        model = distributed.convert_sync_batchnorm(model, device)
    model = to_channels_last(model.to(device), cfg.channels_last)
    if rank > 0:
        seed_everything(_rank_seed(cfg.seed, rank))  # own dropout draws; the initial weights are rank 0's
    iters = iterations_per_epoch(len(train_source), cfg.batch_size, world)
    optimizer, scheduler = make_optimizer(model, cfg, iters)
    start_epoch, rows = 0, []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng_ranks"][rank] if world > 1 else checkpoint["rng"], device)
        start_epoch, rows = checkpoint["epoch"], list(checkpoint["log"])

    run.write_json(CONFIG_FILENAME, {
        "settings": settings, "spec": spec.to_dict(), "smoothbench_version": __version__,
        "packages": package_versions(), "seed": cfg.seed, "device": _device_name(device),
        "data_fingerprint": {"train": train_source.fingerprint, "test": test_source.fingerprint},
        "n_train": len(train_source), "n_test": len(test_source), "iterations_per_epoch": iters,
        "total_epochs": cfg.warmup_epochs + cfg.epochs, "resumed_from_epoch": start_epoch, "world_size": world,
    })
    run.write_log(rows)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    net = torch.compile(net) if cfg.compile else net
    net.train()
    # Validation runs every process on its shard without the DDP wrapper (its forward syncs buffers).
    eval_net = net if world == 1 else model
    total = cfg.warmup_epochs + cfg.epochs
    if on_plan is not None:
        on_plan(total - start_epoch, epoch_images(len(train_source), cfg.batch_size, world))
    reporting = progress if distributed.is_main_process() else None
    timer.charge("setup", entered)
    started, images = time.perf_counter(), 0
    for epoch in range(start_epoch, total):
        epoch_start = time.perf_counter()
        loss_sum, correct, seen, last_lr = _train_epoch(net, optimizer, scheduler, train_source, spec, cfg, device,
                                                        epoch, total, reporting, timer)
        train_seconds = time.perf_counter() - epoch_start
        images += seen
        with timer.section("validation"):
            test_acc, test_nll = evaluate(eval_net, test_source, spec, batch_size=max(cfg.batch_size, 256),
                                          device=device, precision=cfg.precision, channels_last=cfg.channels_last)
        row = {
            "epoch": epoch + 1, "lr": last_lr,
            "train_loss": loss_sum / seen, "train_acc": correct / seen, "test_acc": test_acc,
            "test_nll": test_nll, "seconds": time.perf_counter() - epoch_start,
            "images_per_s": seen / train_seconds,
        }
        rows.append(row)
        with timer.section("io"):
            rng = rng_state(device)
            run.save_checkpoint({
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "trajectory": trajectory,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng, "log": rows,
                **({"rng_ranks": distributed.all_gather_objects(rng)} if world > 1 else {}),
            })
            run.write_log(rows)
        if log is not None:
            log(dict(row))

    final = rows[-1]
    with timer.section("io"):
        model_path = run.save_model(model.eval(), {
            "dataset": cfg.dataset, "seed": cfg.seed, "epochs": total, "test_acc": final["test_acc"],
            "test_nll": final["test_nll"], "subset": cfg.subset, "eval_subset": cfg.eval_subset,
            "data_fingerprint": train_source.fingerprint, "precision": cfg.precision,
        })
        distributed.barrier()  # model.pt exists for every process once train returns
    return TrainResult(
        run_dir=run.path, model_path=model_path, spec=spec, epochs=total, test_acc=final["test_acc"],
        test_nll=final["test_nll"], train_loss=final["train_loss"], train_acc=final["train_acc"],
        seconds=time.perf_counter() - started, resumed_from_epoch=start_epoch, log=rows, images=images,
        timings=dict(timer.seconds),
    )


def _rank_seed(seed: int, rank: int) -> int:
    """The RNG seed of process ``rank > 0`` of a distributed run, derived from ``(seed, rank)``."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, dtype=np.uint32)[0])


def _rank_batches(source, spec: ModelSpec, cfg: TrainConfig, device: torch.device, epoch: int):
    """This process's slice of every global batch of the epoch (all of it in one process)."""
    return source.train_batches(cfg.batch_size, spec.mean, spec.std, device=device, seed=cfg.seed, epoch=epoch,
                                channels_last=cfg.channels_last, rank=distributed.rank(),
                                world=distributed.world_size())


def _train_epoch(net, optimizer, scheduler, source, spec: ModelSpec, cfg: TrainConfig, device: torch.device,
                 epoch: int, total: int, progress: Progress | None,
                 timer: SectionTimer) -> tuple[float, float, int, float]:
    """One pass over the training images; returns (summed loss, correct, images, lr of the last step), summed
    over all processes. Waiting for batches is charged to ``timer``'s ``data`` section, steps to ``step``."""
    world = distributed.world_size()
    used = epoch_images(len(source), cfg.batch_size, world)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, images of this process
    seen, text, start = 0, "", time.perf_counter()
    for index, (x, y) in enumerate(timer.iterate(_rank_batches(source, spec, cfg, device, epoch), "data")):
        global_batch = min(cfg.batch_size, used - index * cfg.batch_size)
        last_lr = optimizer.param_groups[0]["lr"]
        with timer.section("step"):
            batch_loss, batch_correct = train_step(net, optimizer, scheduler, x, y, precision=cfg.precision,
                                                   loss_scale=y.shape[0] * world / global_batch)
        sums[0] += batch_loss.double()
        sums[1] += batch_correct
        sums[2] += y.shape[0]
        seen += global_batch
        if progress is not None:
            if index % TEXT_EVERY == 0:
                speed = seen / max(time.perf_counter() - start, 1e-9)
                text = (f"epoch {epoch + 1}/{total} loss {sums[0].item() / sums[2].item():.3f} "
                        f"acc {sums[1].item() / sums[2].item():.1%} {speed:,.0f} img/s")
            progress(global_batch, text)
    loss_sum, correct, images = distributed.all_reduce_sum(sums).tolist()
    return loss_sum, correct, int(images), last_lr


def _check_same_trajectory(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    for key, value in current.items():
        before = saved.get(key, TRAJECTORY_DEFAULTS.get(key))
        if before != value:
            raise UserError(
                f"cannot resume {path}: {key} was {before!r} and is now {value!r}; "
                "use the run's original setting or --force to start over"
            )
