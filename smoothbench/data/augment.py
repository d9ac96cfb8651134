"""Batched, device-side image ops: normalisation, CIFAR crop + flip, and per-epoch random generators."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from smoothbench.errors import UserError

CROP_PADDING = 4


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, epoch)`` through ``numpy.random.SeedSequence``.

    The augmentation randomness of an epoch depends on nothing else (not the device, batch size or
    worker count), so a run is reproducible and resumable at epoch granularity.
    """
    if seed < 0 or epoch < 0:
        raise UserError(f"seed ({seed}) and epoch ({epoch}) must be >= 0")
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def channel_stats(mean: Sequence[float], std: Sequence[float], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean`` and ``std`` as float32 ``[1, C, 1, 1]`` tensors on ``device``, for :func:`normalize`.

    Build them once per pass over the data, not per batch: on a GPU each is a host-to-device copy, and such
    a copy synchronises the device with the host.
    """
    as_tensor = lambda values: torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)  # noqa: E731
    return as_tensor(mean), as_tensor(std)


def normalize(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel: uint8 [B,3,H,W] → float32 [B,3,H,W] on the same device
    (``mean``/``std`` from :func:`channel_stats`)."""
    return x_uint8.float().div_(255.0).sub_(mean).div_(std)


def draw_crop_flip(n: int, generator: torch.Generator, padding: int = CROP_PADDING) -> tuple[torch.Tensor, ...]:
    """Per-image random crop offsets ``dy, dx`` in ``[0, 2·padding]`` and flip flags, drawn in that order."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    return dy, dx, flip


def crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, padding: int = CROP_PADDING
) -> torch.Tensor:
    """RandomCrop(H×W, zero padding ``padding``) then horizontal flip, for a whole batch at once.

    The batch is zero-padded once and every crop is gathered with one advanced-indexing op (the airbench
    idea), instead of per-image transforms in worker processes. Output pixel ``(r, c)`` of image ``b`` is
    ``padded[b, :, dy[b] + r, dx[b] + c']`` with ``c' = W-1-c`` if ``flip[b]`` else ``c``.
    """
    b, ch, h, w = x.shape
    device = x.device
    dy, dx, flip = dy.to(device), dx.to(device), flip.to(device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = dy[:, None] + torch.arange(h, device=device)
    cols_in = torch.arange(w, device=device)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - cols_in, cols_in)
    return padded[
        torch.arange(b, device=device)[:, None, None, None],
        torch.arange(ch, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
