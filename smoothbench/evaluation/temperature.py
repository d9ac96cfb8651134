"""Post-hoc temperature scaling (Guo et al. 2017), fitted per ensemble size on held-out images.

Two ways to scale an ensemble (``calibration`` modes, :data:`smoothbench.schema.CALIBRATIONS`):

* ``temperature``: every member's (every MC sample's) logits are divided by ``T`` before the softmax, then the
  probabilities are averaged: ``p̄_T = (1/k) Σ_j softmax(z_j / T)``. For one deterministic model this is Guo et
  al.'s temperature scaling; for MC dropout and deep ensembles it is the usual "scale the members" choice.
* ``temperature-mean``: the averaged prediction itself is scaled, ``p̄_T ∝ exp(log p̄ / T)`` (the ensemble as
  one classifier; needs no logits, so it also serves models whose members cannot be re-run).

``T`` minimises the mean NLL of the held-out labels. We search ``log T`` on ``[log 0.05, log 20]`` with
scipy's bounded Brent method (``minimize_scalar(method="bounded")``, ``xatol`` 1e-6 on ``log T``): the NLL of
one temperature is a smooth 1-D function, and a bounded search cannot wander to T ≤ 0 as an unconstrained
LBFGS on ``T`` can. A fitted ``T`` at a bound means the held-out set asks for more than the bounds allow.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar

#: The search interval of the temperature.
TEMPERATURE_BOUNDS = (0.05, 20.0)
_LOG_T_TOLERANCE = 1e-6


def _minimise(nll) -> float:
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(lambda log_t: nll(math.exp(log_t)), bounds=(low, high), method="bounded",
                            options={"xatol": _LOG_T_TOLERANCE})
    return float(math.exp(found.x))


def member_scaled_nll(logits: np.ndarray | torch.Tensor, labels: np.ndarray, temperature: float) -> float:
    """Mean NLL of ``(1/P) Σ_p softmax(z_p / T)`` over the ``P`` passes of ``logits`` ``[P, N, K]``."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    # log p̄ = logsumexp_p(log_softmax(z_p / T)) − log P, without forming p̄ (no underflow for confident passes)
    log_probs = torch.logsumexp(torch.log_softmax(z / temperature, dim=-1), dim=0) - math.log(z.shape[0])
    return float(-log_probs.gather(1, y[:, None]).mean())


def fit_member_temperature(logits: np.ndarray | torch.Tensor, labels: np.ndarray) -> float:
    """The ``T`` of the ``temperature`` mode: the minimiser of :func:`member_scaled_nll` over ``logits``
    ``[passes, N, K]`` (all passes of the first ``k`` members for ensemble size ``k``)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    return _minimise(lambda t: member_scaled_nll(z, labels, t))


def scale_mean(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p̄ / T)`` per row (the ``temperature-mean`` mode); zero probabilities stay zero."""
    with np.errstate(divide="ignore"):
        log_p = np.log(np.asarray(probs, dtype=np.float64)) / temperature
    log_p -= log_p.max(axis=1, keepdims=True)
    scaled = np.exp(log_p)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_mean_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` of the ``temperature-mean`` mode: the minimiser of the NLL of :func:`scale_mean`."""
    rows = np.arange(len(labels))
    tiny = np.finfo(np.float64).tiny
    return _minimise(lambda t: float(-np.log(np.maximum(scale_mean(probs, t)[rows, labels], tiny)).mean()))
