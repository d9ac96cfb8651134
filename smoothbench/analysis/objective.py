"""The loss the landscape and the Hessian analyses share: NLL plus the authors' weight-decay term.

The authors' landscape code (how-do-vits-work ``ops/loss_landscapes.py``, the same method as the paper code's
``ops/loss_landscapes.py``) records next to each grid point's NLL the weight norms ``l1 = Σ_t ‖θ_t‖₁`` and
``l2 = Σ_t ‖θ_t‖₂`` over the parameter tensors ``θ_t`` (``ops/norm.py``: a **sum of per-tensor L2 norms**,
not a global norm and not squared), and their notebook (``losslandscape.ipynb``, "Plot the Loss Landscape")
plots ``loss = NLL + weight_decay · l2`` with the training recipe's weight decay. The paper code's own
``ops/loss_landscapes.py`` records NLL alone (its CSV has no norms). smoothbench keeps the authors' definition
for ``loss`` and also reports ``l2_squared = Σ θ²``: SGD with weight decay λ minimises
``NLL + (λ/2)·l2_squared``, a different term, computable from the columns.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from smoothbench.data.info import DATASETS
from smoothbench.recipes import RECIPES


def recipe_weight_decay(dataset: str) -> float:
    """The weight decay of ``dataset``'s training recipe (CIFAR 5e-4, ImageNet 1e-4): the authors' default."""
    return RECIPES[DATASETS[dataset].recipe].weight_decay


@torch.no_grad()
def weight_norms(model: nn.Module) -> dict[str, float]:
    """``l1 = Σ_t ‖θ_t‖₁``, ``l2 = Σ_t ‖θ_t‖₂`` (the authors' sums of per-tensor norms) and ``l2_squared = Σ θ²``,
    over every parameter tensor of ``model``, accumulated in float64."""
    params = [p.detach().double() for p in model.parameters()]
    return {"l1": float(sum(p.abs().sum() for p in params)),
            "l2": float(sum(torch.linalg.vector_norm(p) for p in params)),
            "l2_squared": float(sum(p.square().sum() for p in params))}


def l2_term(params: Iterable[Tensor]) -> Tensor:
    """The authors' ``l2 = Σ_t ‖θ_t‖₂``, differentiable twice. A tensor that is exactly zero adds 0 and is
    left out: the norm has no second derivative there."""
    norms = [torch.linalg.vector_norm(p) for p in params if bool(p.detach().any())]
    return torch.stack(norms).sum() if norms else torch.zeros(())
