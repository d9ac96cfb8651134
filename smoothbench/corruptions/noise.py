"""Noise corruptions: gaussian, shot, impulse (common) and speckle (extra).

Each image draws from its own generator (``ctx.rngs[i]``), exactly the arrays the reference draws
from numpy's global state (same shapes, same order), so values differ from the reference but the
distribution is the same. ``x`` is ``image / 255``; outputs are on the 0..255 scale, clipped like the
reference (``clip(., 0, 1) * 255``), computed in float64 as the reference does.
"""

from __future__ import annotations

import numpy as np
import torch

from smoothbench.corruptions.kernels import unit_float64
from smoothbench.corruptions.registry import CorruptionContext, register_corruption


def _normals(like: torch.Tensor, ctx: CorruptionContext) -> torch.Tensor:
    """One standard normal per value, image ``i`` from ``ctx.rngs[i]`` (float64, on ``like``'s device)."""
    z = np.empty(tuple(like.shape), dtype=np.float64)
    for i, rng in enumerate(ctx.rngs):
        rng.standard_normal(out=z[i])
    return torch.from_numpy(z).to(like.device)


def gaussian_noise_apply(x: torch.Tensor, c: float, z: torch.Tensor) -> torch.Tensor:
    """``clip(x + c z, 0, 1) * 255`` for standard normal ``z`` (the reference's ``normal(scale=c)``)."""
    return (unit_float64(x) + c * z).clamp_(0, 1) * 255


@register_corruption("gaussian_noise", group="noise", common=True)
def gaussian_noise(x: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation ``c`` per value."""
    return gaussian_noise_apply(x, c, _normals(x, ctx))


def shot_noise_apply(c: float, counts: torch.Tensor) -> torch.Tensor:
    """``clip(counts / c, 0, 1) * 255`` for ``counts ~ Poisson(x c)``."""
    return (counts / c).clamp_(0, 1) * 255


@register_corruption("shot_noise", group="noise", common=True)
def shot_noise(x: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Poisson (shot) noise: ``clip(Poisson(x c) / c, 0, 1) * 255``; one draw per value."""
    lam = unit_float64(x).cpu().numpy() * c
    counts = np.empty(lam.shape, dtype=np.float64)
    for i, rng in enumerate(ctx.rngs):
        counts[i] = rng.poisson(lam[i])
    return shot_noise_apply(c, torch.from_numpy(counts).to(x.device))


def impulse_noise_apply(x: torch.Tensor, amount: float, u_flip: torch.Tensor, u_salt: torch.Tensor) -> torch.Tensor:
    """skimage ``random_noise(mode='s&p', amount)``: a value flips where ``u_flip <= amount``, to 1
    (salt) where ``u_salt <= 0.5`` else to 0 (pepper); then ``clip * 255``.
    """
    flip = u_flip <= amount
    salt = u_salt <= 0.5
    x = unit_float64(x)
    out = torch.where(flip & salt, torch.ones_like(x), x)
    out = torch.where(flip & ~salt, torch.zeros_like(x), out)
    return out.clamp_(0, 1) * 255


@register_corruption("impulse_noise", group="noise", common=True)
def impulse_noise(x: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Salt-and-pepper noise on a fraction ``c`` of the values (half salt, half pepper)."""
    u = np.empty((2, *x.shape), dtype=np.float64)
    for i, rng in enumerate(ctx.rngs):
        rng.random(out=u[0, i])
        rng.random(out=u[1, i])
    u_t = torch.from_numpy(u).to(x.device)
    return impulse_noise_apply(x, c, u_t[0], u_t[1])


def speckle_noise_apply(x: torch.Tensor, c: float, z: torch.Tensor) -> torch.Tensor:
    """``clip(x + x c z, 0, 1) * 255`` for standard normal ``z``."""
    x = unit_float64(x)
    return (x + x * (c * z)).clamp_(0, 1) * 255


@register_corruption("speckle_noise", group="noise", common=False)
def speckle_noise(x: torch.Tensor, c: float, ctx: CorruptionContext) -> torch.Tensor:
    """Multiplicative Gaussian noise: each value is scaled by ``1 + N(0, c^2)``."""
    return speckle_noise_apply(x, c, _normals(x, ctx))
