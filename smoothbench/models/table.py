"""Rows for ``smoothbench models``: every architecture × method × smoothing with its parameter count."""

from __future__ import annotations

import torch

from smoothbench.errors import UserError
from smoothbench.models.registry import create_model, get_entry, list_models
from smoothbench.models.spec import METHODS, SMOOTHINGS, STEMS


def model_rows(num_classes: int = 10, stem: str = "cifar") -> list[dict]:
    """One row ``{arch, family, method, smoothing, params}`` per registered arch × method × smoothing.

    Architectures that do not offer ``stem`` (e.g. the CIFAR-only WRN for ``imagenet``) are left out.
    Models are built on the ``meta`` device (shapes only, no memory), once per arch × method: smoothing
    layers own no parameters (blur kernels are buffers), so every smoothing kind shares that count.
    """
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    rows = []
    with torch.device("meta"):
        for arch in list_models():
            entry = get_entry(arch)
            if stem not in entry.stems:
                continue
            for method in METHODS:
                params = create_model(arch, method=method, num_classes=num_classes, stem=stem).num_parameters()
                rows.extend({"arch": arch, "family": entry.family, "method": method, "smoothing": smoothing,
                             "params": params} for smoothing in SMOOTHINGS)
    return rows
