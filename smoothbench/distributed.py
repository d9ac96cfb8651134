"""Process-group plumbing for ``torchrun``: setup, rank helpers, shards, gathers, SyncBatchNorm, relaunch.

Every command runs unchanged under ``torchrun --nproc-per-node N -m smoothbench ...`` (or
``python -m torch.distributed.run ...``): :func:`setup` reads torchrun's ``WORLD_SIZE``/``RANK``/
``LOCAL_RANK``, joins the process group (``nccl`` on GPUs, ``gloo`` on the CPU) and gives each process
the GPU of its local rank. With one process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) every helper here is a
no-op: ``rank() == 0``, ``world_size() == 1``, gathers return their input.

Shards are contiguous: with ``n`` rows and ``W`` processes, rank ``r`` owns ``[start_r, start_{r+1})``
where the first ``n mod W`` shards hold one row more (:func:`shard_bounds`), so concatenating the
shards in rank order gives the rows back in their original order.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from smoothbench.device import resolve_device
from smoothbench.errors import UserError, param
from smoothbench.progress import Progress, Scaled

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# setup and rank helpers


def env_world_size() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 when not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """This process's global rank as torchrun set it (``RANK``; 0 when not under torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str) -> torch.device:
    """Resolve ``device`` for this process and, under torchrun with several processes, join the group.

    With ``WORLD_SIZE > 1``: ``auto``/``cuda`` mean the GPU of this process's ``LOCAL_RANK`` (an explicit
    ``cuda:N`` is refused, it would put every process on one GPU); the backend is ``nccl`` for GPUs and
    ``gloo`` for the CPU. Calling it again in the same process returns the same device.
    """
    resolved = resolve_device(device)
    if env_world_size() == 1:
        return resolved
    if resolved.type == "cuda":
        if device not in ("auto", "cuda"):
            raise UserError(f"{param('device')} {device} cannot be shared by {env_world_size()} processes; use "
                            f"{param('device')} cuda "
                            "(each process takes the GPU of its local rank)")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                            "start at most that many processes per node")
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, device_id=resolved if resolved.type == "cuda" else None)
    elif dist.get_backend() != backend:
        raise UserError(f"this process group uses {dist.get_backend()} but {param('device')} {device} needs {backend}; "
                        "use one device kind per run")
    return resolved


def is_initialized() -> bool:
    """True when a process group with more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes in the active group (1 without one)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's rank in the active group (0 without one)."""
    return dist.get_rank() if is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0, or when there is no group: the one process that writes files and prints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op in one process)."""
    if is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (e.g. a download into a shared folder).

    If the block fails on rank 0 the others still run it (and usually fail the same way), so nobody
    waits forever.
    """
    if not is_main_process():
        barrier()
        yield
        return
    try:
        yield
    finally:
        barrier()


# ----------------------------------------------------------------------------------------------------
# shards


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``rank`` of ``n`` rows cut into ``world`` contiguous shards.

    Sizes are ``n // world`` plus one for the first ``n % world`` shards, so they differ by at most one.
    """
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def local_rows(n: int) -> tuple[int, int]:
    """``[start, stop)`` of this process's shard of ``n`` rows (all of them in one process)."""
    return shard_bounds(n, rank(), world_size())


def epoch_images(n: int, batch_size: int, world: int) -> int:
    """Training images used per epoch: all ``n``, except that a last partial batch of fewer images than
    processes is left out, so that every process gets at least one image of every step."""
    tail = n % batch_size
    return n - tail if 0 < tail < world else n


def rank_batch_ranges(n: int, batch_size: int, rank: int, world: int) -> list[range]:
    """Positions (in epoch order) of process ``rank``'s slice of every global batch of an epoch of ``n`` images.

    Global batches of ``batch_size`` cover the first :func:`epoch_images` positions; each is cut into ``world``
    contiguous shards (:func:`shard_bounds`), so the ranges of step ``i`` over all ranks make up global batch
    ``i``, and in one process they are the batches themselves (the last one may be short).
    """
    used = epoch_images(n, batch_size, world)
    ranges = []
    for start in range(0, used, batch_size):
        low, high = shard_bounds(min(batch_size, used - start), rank, world)
        ranges.append(range(start + low, start + high))
    return ranges


def shard_source(source):
    """``(this process's contiguous shard of source, its first position in source)``.

    Uses the source's ``select``, so positions inside the shard start at 0: add the returned offset to
    get positions in ``source`` (e.g. to key MC-dropout masks).
    """
    if world_size() == 1:
        return source, 0
    start, stop = local_rows(len(source))
    return source.select(np.arange(start, stop, dtype=np.int64)), start


def scaled_progress(progress: Progress | None, local_total: int, global_total: int) -> Progress | None:
    """``progress`` reporting this shard's progress in units of the whole set.

    After ``d`` of ``local_total`` local units it has reported ``floor(d · global_total / local_total)``
    in all, so a bar sized for the whole set ends exactly full on rank 0, which shows it.
    """
    if progress is None or local_total == global_total or local_total == 0:
        return progress
    return Scaled(progress, local_total, global_total)


# ----------------------------------------------------------------------------------------------------
# collectives


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for nccl, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all processes (a new tensor; ``tensor`` itself in one process)."""
    if not is_initialized():
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total


def gather_rows(local: np.ndarray) -> np.ndarray:
    """Every process's ``local`` rows concatenated in rank order, returned on every process.

    Shards may differ in length (they are padded to the longest for the transfer); the other axes and
    the dtype must agree. With shards from :func:`local_rows` this rebuilds the whole array in order.
    """
    if not is_initialized():
        return local
    device = _comm_device()
    counts = torch.tensor([local.shape[0]], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(counts) for _ in range(world_size())]
    dist.all_gather(sizes, counts)
    sizes = [int(s.item()) for s in sizes]
    padded = torch.zeros((max(sizes), *local.shape[1:]), dtype=torch.from_numpy(local[:0]).dtype, device=device)
    padded[: local.shape[0]] = torch.from_numpy(np.ascontiguousarray(local)).to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return np.concatenate([part[:size].cpu().numpy() for part, size in zip(parts, sizes)])


def all_gather_objects(obj: T) -> list[T]:
    """``obj`` of every process, in rank order (pickled; for small objects such as RNG states)."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and give its result (or its :class:`UserError`) to every process.

    For decisions that must agree on all ranks (resume or not, which sweep cells are done) and for
    files only rank 0 should read.
    """
    if not is_initialized():
        return fn()
    message: list[Any] = [None, None]
    if is_main_process():
        try:
            message = [fn(), None]
        except UserError as err:
            message = [None, str(err)]
    dist.broadcast_object_list(message, src=0)
    if message[1] is not None:
        raise UserError(message[1])
    return message[0]


# ----------------------------------------------------------------------------------------------------
# SyncBatchNorm


class _AllReduceSum(torch.autograd.Function):
    """``Σ_r x_r`` over processes, differentiable: every rank's loss depends on the sum, so the gradient
    of ``x_q`` is the sum over ranks of the gradients arriving at the sum (another all-reduce)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = x.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = grad.clone()
        dist.all_reduce(total)
        return total


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the global batch, for CPU (gloo) groups.

    ``torch.nn.SyncBatchNorm`` refuses CPU tensors (its kernels are CUDA-only), hence this module. With
    ``N = Σ_r n_r`` values per channel over all ranks: ``μ = Σ x / N``, ``σ² = Σ (x − μ)² / N`` (two
    all-reduces, differentiable), ``y = (x − μ) / √(σ² + ε) · γ + β``; running statistics move by
    ``momentum`` towards ``μ`` and the unbiased ``σ² · N / (N − 1)``, as in ``nn.BatchNorm``. In eval mode
    or one process it is plain BatchNorm. Works for any input of 2 or more dimensions (BatchNorm1d/2d/3d).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or not is_initialized():
            return super().forward(input)
        x = input.float()
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = float(all_reduce_sum(torch.tensor(float(x.numel() // x.shape[1]), dtype=torch.float64)))
        mean = _AllReduceSum.apply(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * (count / max(count - 1.0, 1.0))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(input.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``model`` synchronised over the process group (``nn.SyncBatchNorm`` on GPUs,
    :class:`CPUSyncBatchNorm` on the CPU). State-dict keys stay those of ``nn.BatchNorm2d``."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_cpu(model)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and not isinstance(module, CPUSyncBatchNorm):
        synced = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                  module.track_running_stats)
        synced.load_state_dict(module.state_dict())
        return synced.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, _convert_cpu(child))
    return module


# ----------------------------------------------------------------------------------------------------
# relaunch


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``python -m smoothbench ARGV`` in ``nproc`` processes on this machine through torch's elastic
    launcher (what ``torchrun --standalone --nproc-per-node NPROC -m smoothbench ARGV`` does); returns
    the exit status (that of the first failed process, or 0)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    if nproc < 1:
        raise UserError(f"{param('nproc')} must be at least 1, got {nproc}")
    if env_world_size() > 1:
        raise UserError(f"{param('nproc')} cannot be used inside torchrun (the processes are already started); drop it")
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "smoothbench", *argv]))
    except ChildFailedError as err:
        return int(err.get_first_failure()[1].exitcode) or 1
    return 0
