"""Hessian eigenvalues and trace of the loss per mini-batch: the "max eigenvalue spectrum".

The loss of one mini-batch ``B`` is ``L_B(θ) = (1/|B|) Σ_{i∈B} −log softmax(f_θ(x_i))_{y_i} + λ·l2(θ)`` (the
authors' weight-decay term, :mod:`smoothbench.analysis.objective`; ``λ = 0`` gives PyHessian's plain
cross-entropy), over every parameter that requires gradients. BatchNorm runs in eval mode (its running
statistics, as PyHessian sets ``model.eval()``), and an MC-dropout model draws one **fixed keyed mask per
image** (sample 0 of :func:`~smoothbench.models.layers.mc_row_keys`, the mask ``eval``'s first MC sample
uses), so ``L_B`` is a deterministic function of ``θ`` whose Hessian exists.

Hessian-vector products ``Hv = ∇(∇L·v)`` come from double backprop (one gradient with ``create_graph``, one
``torch.autograd.grad`` per product), as PyHessian's ``hessian_vector_product``.

* **Top eigenvalues** (PyHessian ``eigenvalues``, the paper's Algorithm 1 per mini-batch): power iteration
  from a Gaussian start (seeded per batch), ``λ = vᵀHv`` with ``‖v‖ = 1``, ``v ← Hv/‖Hv‖``, until the relative
  change ``|λ_t − λ_{t−1}| / (|λ_{t−1}| + 1e-6)`` falls below ``tol`` or ``iterations`` products were spent.
  Power iteration converges to the eigenvalue of **largest magnitude**, with its sign (a negative one marks
  non-convexity). The next ``k−1`` come by deflation: each iterate is projected off the eigenvectors found so
  far (Gram–Schmidt, as PyHessian's ``orthnormal``), giving the next largest in magnitude.
* **Trace** (Hutchinson): the mean of ``zᵀHz`` over ``samples`` Rademacher vectors ``z`` (entries ±1), with its
  standard error ``std/√samples``. PyHessian stops when the running mean changes by less than ``tol``; here
  the number of samples is fixed and the error reported.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothbench.analysis.objective import l2_term
from smoothbench.models.layers import mc_row_keys
from smoothbench.progress import Progress

Vector = list[Tensor]


def dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """``Σ_t ⟨a_t, b_t⟩`` over the tensors of two parameter-shaped vectors."""
    return sum((x * y).sum() for x, y in zip(a, b))


def normalized(v: Sequence[Tensor]) -> Vector:
    """``v / ‖v‖`` (a zero vector stays zero)."""
    norm = dot(v, v).sqrt()
    return [x / norm.clamp_min(torch.finfo(x.dtype).tiny) for x in v]


def orthogonal(v: Sequence[Tensor], basis: Sequence[Vector]) -> Vector:
    """``v`` with its components along the orthonormal ``basis`` vectors removed (Gram–Schmidt)."""
    v = list(v)
    for u in basis:
        along = dot(v, u)
        v = [x - along * y for x, y in zip(v, u)]
    return v


class HessianOperator:
    """``v ↦ Hv`` for ``loss`` with respect to ``params``: the gradient is built once with ``create_graph``,
    then each product is one backward pass through it."""

    def __init__(self, loss: Tensor, params: Sequence[Tensor]) -> None:
        self.params = list(params)
        self.grads = torch.autograd.grad(loss, self.params, create_graph=True)

    def __call__(self, v: Sequence[Tensor]) -> Vector:
        return list(torch.autograd.grad(self.grads, self.params, grad_outputs=list(v), retain_graph=True))

    def random_like(self, generator: torch.Generator, rademacher: bool = False) -> Vector:
        """A Gaussian (or Rademacher ±1) vector shaped like the parameters, drawn on the CPU from ``generator``."""
        out = []
        for p in self.params:
            if rademacher:
                z = torch.randint(0, 2, p.shape, generator=generator).to(p.dtype) * 2 - 1
            else:
                z = torch.randn(p.shape, generator=generator, dtype=p.dtype)
            out.append(z.to(p.device))
        return out


def top_eigenvalues(hvp: HessianOperator, k: int, *, iterations: int, tol: float,
                    generator: torch.Generator) -> tuple[list[float], list[int]]:
    """The ``k`` eigenvalues of largest magnitude by power iteration with deflation, and the Hessian-vector
    products each took (see the module docstring)."""
    found: list[Vector] = []
    values, spent = [], []
    for _ in range(k):
        v = normalized(orthogonal(hvp.random_like(generator), found))
        value = None
        for step in range(1, iterations + 1):
            hv = hvp(v)
            new = float(dot(hv, v))
            v = normalized(orthogonal(hv, found))
            converged = value is not None and abs(new - value) / (abs(value) + 1e-6) < tol
            value = new
            if converged:
                break
        values.append(value)
        spent.append(step)
        found.append(v)
    return values, spent


def hutchinson_trace(hvp: HessianOperator, samples: int, generator: torch.Generator) -> tuple[float, float]:
    """``(mean of zᵀHz, its standard error)`` over ``samples`` Rademacher vectors ``z``."""
    draws = []
    for _ in range(samples):
        z = hvp.random_like(generator, rademacher=True)
        draws.append(float(dot(hvp(z), z)))
    error = float(np.std(draws, ddof=1) / np.sqrt(samples)) if samples > 1 else float("nan")
    return float(np.mean(draws)), error


def batch_loss(model: nn.Module, x: Tensor, y: Tensor, params: Sequence[Tensor], weight_decay: float) -> tuple[Tensor, Tensor]:
    """``(L_B, its NLL part)``: mean cross-entropy of the batch plus ``weight_decay · l2`` (logits in float32 or
    wider)."""
    logits = model(x)
    nll = F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), y)
    return nll + weight_decay * l2_term(params) if weight_decay else nll, nll


def hessian_spectra(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor, Tensor]], *, top_k: int = 1,
                    iterations: int = 100, tol: float = 1e-3, trace_samples: int = 0, weight_decay: float = 0.0,
                    seed: int = 0, progress: Progress | None = None) -> pd.DataFrame:
    """One row per mini-batch ``(x, y, ids)``: ``batch``, ``n_images``, ``nll``, ``loss``, ``eigenvalue_1..k``
    (largest magnitude first), ``iterations_1..k``, and with ``trace_samples`` the ``trace`` and ``trace_se``.

    ``ids`` (the images' positions) key the MC-dropout masks; the model is put in eval mode and left with MC
    dropout off and no keys.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    stochastic = model.spec.method == "mcdo" and (model.spec.dropout_rate or 0) > 0
    model.eval()
    rows = []
    try:
        model.mc(stochastic)
        for b, (x, y, ids) in enumerate(batches):
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, b]).generate_state(1)[0]))
            if stochastic:
                model.set_mc_keys(mc_row_keys(seed, ids, torch.zeros_like(ids)))
            with torch.enable_grad():
                loss, nll = batch_loss(model, x, y, params, weight_decay)
                hvp = HessianOperator(loss, params)
                values, spent = top_eigenvalues(hvp, top_k, iterations=iterations, tol=tol, generator=generator)
                row = {"batch": b, "n_images": int(y.shape[0]), "nll": nll.item(), "loss": loss.item(),
                       **{f"eigenvalue_{i + 1}": v for i, v in enumerate(values)},
                       **{f"iterations_{i + 1}": n for i, n in enumerate(spent)}}
                if trace_samples:
                    row["trace"], row["trace_se"] = hutchinson_trace(hvp, trace_samples, generator)
            rows.append(row)
            del hvp, loss, nll  # free this batch's double-backprop graph before the next one is built
            if progress is not None:
                progress.advance(1, f"batch {b}: λ_max {values[0]:.4g}")
    finally:
        model.mc(False)
        model.set_mc_keys(None)
    return pd.DataFrame(rows)


def eigenvalue_histogram(values: Sequence[float], bins: int) -> pd.DataFrame:
    """The spectrum table: ``lower``, ``upper``, ``count`` and ``density`` (count / (n · width)) of ``bins``
    equal-width bins over the values' range."""
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    widths = np.diff(edges)
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": counts,
                         "density": counts / (counts.sum() * widths)})
