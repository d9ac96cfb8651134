"""The one place that knows the device, precision and channels-last policy."""

from __future__ import annotations

import contextlib
from typing import ContextManager, TypeVar

import torch
from torch import nn

from smoothbench.errors import UserError, param

PRECISIONS = ("fp32", "bf16")

T = TypeVar("T", nn.Module, torch.Tensor)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA if available else CPU; ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as asked (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"{param('device')} {name!r} asked for but no CUDA GPU is available: use {param('device')} cpu "
                        "(or auto)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def autocast(device: torch.device | str, precision: str) -> ContextManager:
    """Mixed-precision context: ``"fp32"`` → no-op, ``"bf16"`` → ``torch.autocast(device type, bfloat16)``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")


def to_channels_last(obj: T, enabled: bool) -> T:
    """A model or 4-D tensor in channels-last memory format when ``enabled``; otherwise ``obj`` unchanged."""
    if not enabled:
        return obj
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=torch.channels_last)
    return obj.contiguous(memory_format=torch.channels_last)
