"""The 2-D loss landscape around a model's weights (Li et al. 2018; the authors' ``ops/loss_landscapes.py``).

Grid: the weights ``θ(x, y) = θ₀ + x·d₁ + y·d₂`` for ``x, y`` on ``n`` points evenly spaced over
``[-extent, extent]`` (``extent·(2i/(n−1) − 1)``, so an odd ``n`` has the trained weights at its centre
exactly); the authors run 21×21 points, over ±1 in how-do-vits-work and ±0.1 in the paper code's CSV. Rows
run ``y`` outer, ``x`` inner, as the authors' ``meshgrid`` order.

Directions ``d₁, d₂``: one standard Gaussian per perturbed tensor, drawn from a CPU ``torch.Generator``
seeded with ``seed`` (the same directions on every device), then normalised against the weights ``w``:

* ``filter`` (Li et al.'s filter normalisation, ``loss-landscape/net_plotter.py``): every filter — a slice
  ``d[i]`` along dim 0 — is rescaled to the norm of the weights' filter: ``d[i] · ‖w[i]‖ / (‖d[i]‖ + 1e-10)``;
* ``paper`` (the paper code's ``normalize_filter``): norms are taken **over dim 0**, one per position of the
  other dims (across filters, not per filter): ``d · ‖w‖₀ / (‖d‖₀ + 1e-7)``, ``‖·‖₀`` the norm over dim 0.

In both, the directions of every 1-D tensor (biases, BatchNorm affine parameters; running statistics and
counters too in the paper code, which perturbs the whole state dict) are zero (Li et al.'s ``ignore=biasbn``,
the paper code's ``ignore_bn``). Only floating-point **parameters** of two or more dimensions move; buffers
never do (for CNNs this equals the paper code, whose buffers are all 1-D or 0-D; a 2-D buffer such as a
transformer's relative-position index must not be perturbed).

Each point is scored by :func:`smoothbench.evaluation.scoring.evaluate`, the function behind ``smoothbench
eval`` (same keyed MC-dropout masks, every ensemble size from one pass, every metric), so the centre row
equals ``eval``'s on the same images and settings; the loss terms are :mod:`smoothbench.analysis.objective`'s.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import pandas as pd
import torch
from torch import Tensor, nn

from smoothbench.analysis.objective import weight_norms
from smoothbench.errors import UserError, param
from smoothbench.evaluation.ensembles import announce_long_run
from smoothbench.evaluation.members import Members
from smoothbench.evaluation.scoring import evaluate
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.progress import Progress

NORMALIZATIONS = ("filter", "paper")


@dataclass
class Directions:
    """The perturbed parameters and the two directions, one tensor per parameter (on its device)."""

    params: list[nn.Parameter]
    x: list[Tensor]
    y: list[Tensor]


def normalized_direction(d: Tensor, w: Tensor, normalization: str) -> Tensor:
    """``d`` rescaled against the weights ``w`` of one tensor (``filter`` or ``paper``, see the module docstring)."""
    if normalization == "filter":
        shape = (-1,) + (1,) * (d.dim() - 1)
        scale = torch.linalg.vector_norm(w.flatten(1), dim=1) / (torch.linalg.vector_norm(d.flatten(1), dim=1) + 1e-10)
        return d * scale.view(shape)
    if normalization == "paper":
        return d * (torch.linalg.vector_norm(w, dim=0, keepdim=True)
                    / (torch.linalg.vector_norm(d, dim=0, keepdim=True) + 1e-7))
    raise UserError(f"{param('normalization')} must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")


def random_directions(model: nn.Module, normalization: str, seed: int) -> Directions:
    """Two normalised Gaussian directions over ``model``'s parameters of two or more dimensions."""
    params = [p for p in model.parameters() if p.is_floating_point() and p.dim() >= 2]
    if not params:
        raise UserError("the model has no weight matrices or filters to perturb")
    generator = torch.Generator().manual_seed(seed)
    drawn = []
    for _ in range(2):
        drawn.append([normalized_direction(torch.randn(p.shape, generator=generator),
                                           p.detach().float().cpu(), normalization).to(p.device, p.dtype)
                      for p in params])
    return Directions(params, *drawn)


def grid_coordinates(n: int, extent: float) -> list[float]:
    """``n`` points evenly over ``[-extent, extent]``: ``extent·(2i/(n−1) − 1)``, the middle one exactly 0."""
    if n < 2:
        raise UserError(f"{param('grid')} must be at least 2 (points per axis), got {n}")
    if not extent > 0:
        raise UserError(f"{param('extent')} must be positive, got {extent}")
    return [extent * (2 * i / (n - 1) - 1) for i in range(n)]


@contextmanager
def moving(directions: Directions) -> Iterator[Callable[[float, float], None]]:
    """Yields ``move(x, y)``, which sets the parameters to ``θ₀ + x·d₁ + y·d₂`` (``θ₀`` itself at (0, 0));
    the trained weights are restored exactly on exit, whatever happens."""
    saved = [p.detach().clone() for p in directions.params]

    @torch.no_grad()
    def move(x: float, y: float) -> None:
        for p, w, dx, dy in zip(directions.params, saved, directions.x, directions.y):
            p.copy_(w if x == 0 and y == 0 else w + x * dx + y * dy)

    try:
        yield move
    finally:
        move(0.0, 0.0)


def landscape(members: Members, images, settings: EvalSettings, directions: Directions, coordinates: list[float], *,
              weight_decay: float, context: dict | None = None, progress: Progress | None = None) -> pd.DataFrame:
    """One row per grid point and ensemble size: ``eval``'s row (:func:`~smoothbench.evaluation.scoring.evaluate`:
    model columns, ``context``, ``x``, ``y``, every metric, provenance) plus the weight norms and
    ``loss = nll + weight_decay · l2``. ``directions`` are over ``members.models[0]``; ``settings.device`` must
    be resolved and the model on it."""
    model = members.models[0]
    rows = []
    points = len(coordinates) ** 2
    with moving(directions) as move:
        for y in coordinates:
            for x in coordinates:
                start = time.perf_counter()
                move(x, y)
                scored, predictions = evaluate(members, images, settings, context={**(context or {}), "x": x, "y": y},
                                               announce=False)
                norms = weight_norms(model)
                rows += [{**row, **norms, "loss": row["nll"] + weight_decay * norms["l2"]} for row in scored]
                if len(rows) == len(scored):  # the first point projects the whole grid
                    announce_long_run((time.perf_counter() - start) * points, predictions.sample_forwards * points,
                                      len(images))
                if progress is not None:
                    progress.advance(1, f"x={x:+.3g} y={y:+.3g}")
    return pd.DataFrame(rows)
