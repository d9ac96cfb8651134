"""Rows for ``smoothbench models``: every architecture × method × smoothing (× head) with its parameter count."""

from __future__ import annotations

import torch

from smoothbench.errors import UserError
from smoothbench.models.registry import create_model, get_entry, list_models
from smoothbench.models.spec import HEADS, METHODS, SMOOTHINGS, STEMS


def model_rows(num_classes: int = 10, stem: str = "cifar", head: str | None = None) -> list[dict]:
    """One row ``{arch, family, method, smoothing, head, params}`` per registered arch × method × smoothing, with
    the classifier ``head`` given (``gap`` or ``mlp``; ``None``: each family's own).

    Architectures that do not offer ``stem`` (e.g. the CIFAR-only WRN for ``imagenet``) are left out.
    Models are built on the ``meta`` device (shapes only, no memory), once per arch × method: smoothing
    layers own no parameters (blur kernels are buffers), so every smoothing kind shares that count.
    """
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    if head not in (None, *HEADS):
        raise UserError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    rows = []
    with torch.device("meta"):
        for arch in list_models():
            entry = get_entry(arch)
            if stem not in entry.stems:
                continue
            for method in METHODS:
                params = create_model(arch, method=method, num_classes=num_classes, stem=stem,
                                      head=head).num_parameters()
                rows.extend({"arch": arch, "family": entry.family, "method": method, "smoothing": smoothing,
                             "head": head or entry.head, "params": params} for smoothing in SMOOTHINGS)
    return rows
