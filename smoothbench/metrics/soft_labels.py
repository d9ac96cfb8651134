"""Likelihood against soft labels: how well a predictive distribution matches a *distribution* of labels
(e.g. CIFAR-10H's human label distributions) rather than one hard label per image."""

from __future__ import annotations

import numpy as np

from smoothbench.metrics.inputs import as_probabilities

#: Tolerance on the row sums of the soft labels (the same as for probabilities).
_ROW_SUM_TOLERANCE = 1e-3


def soft_label_nll(probs: object, soft_labels: object) -> float:
    """Soft-label negative log-likelihood (cross-entropy to the label distribution), in nats:

        NLL_soft = −(1/N) Σ_i Σ_k h_ik · log max(p̄_ik, tiny)

    with ``probs`` p̄ (N, K) the predicted distribution, ``soft_labels`` h (N, K) the label distribution
    of every image (rows non-negative, summing to 1), and tiny = the smallest normal float64 (≈2.2e-308),
    the clip :func:`smoothbench.metrics.nll` uses: a zero probability on a class people chose costs
    ≈708.4·h_ik instead of inf, and a term with h_ik = 0 is 0 whatever p̄_ik. With one-hot h (h_ik =
    1[k = y_i]) it equals :func:`smoothbench.metrics.nll` exactly. Its minimum over p̄ is the mean entropy of
    h (reached at p̄ = h), not 0.

    Raises ValueError unless both are (N, K) with N ≥ 1, probs are probabilities (see
    :func:`~smoothbench.metrics.inputs.as_probabilities`) and soft labels finite, non-negative rows summing
    to 1 within 1e-3.
    """
    p = as_probabilities(probs)
    h = soft_labels.detach().cpu().double().numpy() if hasattr(soft_labels, "detach") else soft_labels
    h = np.asarray(h, dtype=np.float64)
    if h.shape != p.shape:
        raise ValueError(f"soft_labels must have the shape of probs {p.shape}, got {h.shape}")
    if not np.isfinite(h).all() or h.min() < 0.0:
        raise ValueError("soft_labels must be finite and non-negative")
    if np.abs(h.sum(axis=1) - 1.0).max() > _ROW_SUM_TOLERANCE:
        raise ValueError("soft_labels rows must sum to 1 (label distributions)")
    log_p = np.log(np.maximum(p, np.finfo(np.float64).tiny))
    return float(-np.einsum("ik,ik->i", h, log_p).mean())
