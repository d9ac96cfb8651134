"""The training loop: epochs, validation, bit-exact resume, distributed data parallel, profile.

Run folders and their files are described in :mod:`smoothbench.training.run_folder`.

Epochs: ``epochs`` counts the *main* epochs; ``warmup_epochs`` more run before them, so a run trains
``warmup_epochs + epochs`` epochs and the log numbers them 1..total (paper: 1 + 200 on CIFAR).

Validation after every epoch runs on the test split (``eval_subset`` images of it) with BatchNorm in eval
mode and MC dropout **off** (the deterministic network), so the logged test accuracy is reproducible.

Resume: the augmentation order of epoch ``e`` is a pure function of ``(seed, e)`` (data layer) and dropout
draws from torch's global RNG, whose state the checkpoint restores; so on the CPU a run killed at any
moment and resumed from its last checkpoint ends with bit-identical weights to an uninterrupted run
(GPU kernels and ``torch.compile`` are not bitwise deterministic, so there it is only statistically the
same). A resume must keep every setting in :data:`TRAJECTORY_SETTINGS` and the training data; device,
workers, ``eval_subset``, ``compile`` and ``channels_last`` may change. ``resume`` needs the run folder to
exist; in an existing folder without a checkpoint it starts the run.

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

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from smoothbench import __version__, distributed
from smoothbench.data import ResidentImages, get_dataset
from smoothbench.device import autocast, to_channels_last
from smoothbench.distributed import epoch_images
from smoothbench.errors import UserError, param
from smoothbench.models.registry import create_model, resolve_spec
from smoothbench.models.spec import ModelSpec
from smoothbench.progress import Progress
from smoothbench.provenance import package_versions
from smoothbench.recipes import lr_factor
from smoothbench.timing import SectionTimer
from smoothbench.training.config import TrainConfig, model_spec, resolve_config
from smoothbench.training.rng_state import rng_state, seed_everything, set_rng_state
from smoothbench.training.run_folder import CHECKPOINT_FORMAT, CONFIG_FILENAME, RunFolder

# What an old checkpoint without these trajectory entries was trained with.
TRAJECTORY_DEFAULTS = {"sync_bn": False, "world_size": 1, "source": None, "holdout": 0, "head": None}
# Progress text (loss/acc/speed) is refreshed every this many batches: reading the running loss forces a
# device sync, which would slow every GPU step if done per batch.
TEXT_EVERY = 20
# The sections of TrainResult.timings, in the order a run goes through them.
TIMED_SECTIONS = ("setup", "data", "step", "validation", "io")


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
def validate(model, source, spec: ModelSpec, *, batch_size: int, device: torch.device, precision: str,
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
    for x, y, _ in shard.eval_batches(batch_size, spec.preprocess, device=device, channels_last=channels_last):
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


def run_training(cfg: TrainConfig, *, progress: Progress | None = None,
                 on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train a model as ``cfg`` says, writing the run folder; see the module docstring.

    ``progress`` starts before the first epoch with the images this call will train (fewer than the whole
    run's when resuming), then advances after every batch (on rank 0 only, by the global batch's images).
    ``on_epoch(row)`` runs after every epoch's checkpoint with the row written to ``train_log.csv``. Under torchrun every process calls this with the same ``cfg``.
    """
    entered = time.perf_counter()
    cfg = resolve_config(cfg)
    device = distributed.setup(cfg.device)
    timer = SectionTimer(TIMED_SECTIONS, device, sync=cfg.profile)
    world, rank = distributed.world_size(), distributed.rank()
    if cfg.batch_size % world:
        raise UserError(f"{param('batch_size')} {cfg.batch_size} (the global batch) is not divisible by the {world} "
                        f"processes; choose a multiple of {world}")
    spec = model_spec(cfg)
    spec = spec if spec.source is not None else resolve_spec(spec)
    run = RunFolder(cfg.out)
    checkpoint = distributed.on_main(lambda: run.claim(resume=cfg.resume, force=cfg.force))

    with distributed.main_first():  # rank 0 downloads first
        train_source = _resident_on(training_images(cfg), device)
        test_source = _resident_on(get_dataset(cfg.dataset, cfg.data_dir, "test", download=cfg.download,
                                               subset=cfg.eval_subset, seed=cfg.seed, workers=cfg.workers), device)
    settings = cfg.settings()
    trajectory = cfg.trajectory() | {"train_fingerprint": train_source.fingerprint,
                                                                   "world_size": world}
    if checkpoint is not None:
        _check_same_trajectory(checkpoint["trajectory"], trajectory, run.path)

    if cfg.force:
        run.clear()

    seed_everything(cfg.seed)
    spec = spec.with_(num_classes=train_source.num_classes)  # an image folder may hold fewer classes
    model = create_model(spec)
    if spec.source is not None:  # a model from elsewhere: what surgery made of it decides method and rate
        from smoothbench.models.foreign import dropout_rate

        rate = dropout_rate(model)
        spec = spec.with_(method="mcdo" if rate > 0 else "dnn", dropout_rate=rate)
        model.spec = spec
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
    reporting = progress if distributed.is_main_process() else None
    if reporting is not None:
        reporting.start((total - start_epoch) * epoch_images(len(train_source), cfg.batch_size, world),
                        f"train {spec.name}")
    timer.charge("setup", entered)
    started, images = time.perf_counter(), 0
    for epoch in range(start_epoch, total):
        epoch_start = time.perf_counter()
        loss_sum, correct, seen, last_lr = _train_epoch(net, optimizer, scheduler, train_source, spec, cfg, device,
                                                        epoch, total, reporting, timer)
        train_seconds = time.perf_counter() - epoch_start
        images += seen
        with timer.section("validation"):
            test_acc, test_nll = validate(eval_net, test_source, spec, batch_size=max(cfg.batch_size, 256),
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
        if on_epoch is not None:
            on_epoch(dict(row))

    final = rows[-1]
    with timer.section("io"):
        model_path = run.save_model(model.eval(), {
            "dataset": cfg.dataset, "seed": cfg.seed, "epochs": total, "test_acc": final["test_acc"],
            "test_nll": final["test_nll"], "subset": cfg.subset, "eval_subset": cfg.eval_subset,
            "data_fingerprint": train_source.fingerprint, "precision": cfg.precision, "holdout": cfg.holdout,
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
    return source.train_batches(cfg.batch_size, spec.preprocess, device=device, seed=cfg.seed, epoch=epoch,
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
            progress.advance(global_batch, text)
    loss_sum, correct, images = distributed.all_reduce_sum(sums).tolist()
    return loss_sum, correct, int(images), last_lr


def training_images(cfg: TrainConfig):
    """The training split without its last ``holdout`` images (kept unseen for calibration), then the
    ``subset`` (a class-balanced sample drawn from ``seed``)."""
    source = get_dataset(cfg.dataset, cfg.data_dir, "train", download=cfg.download, workers=cfg.workers)
    if cfg.holdout:
        if cfg.holdout >= len(source):
            raise UserError(f"{param('holdout')} {cfg.holdout} leaves no training images: {cfg.dataset} train has "
                            f"{len(source)}")
        source = source.select(np.arange(len(source) - cfg.holdout))
    return source if cfg.subset is None else source.stratified(cfg.subset, cfg.seed)


def _check_same_trajectory(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    for key, value in current.items():
        before = saved.get(key, TRAJECTORY_DEFAULTS.get(key))
        if before != value:
            raise UserError(
                f"cannot resume {path}: {key} was {before!r} and is now {value!r}; "
                f"use the run's original setting or {param('force')} to start over"
            )
