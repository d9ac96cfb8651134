"""The inputs every metric takes: validated ``(probs (N, K), labels (N,))`` and the top-label quantities
they share (confidence, prediction, correctness), converted once to float64 / int64 numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_ROW_SUM_TOLERANCE = 1e-3
@dataclass(frozen=True)
class Predictions:
    """Validated inputs plus the top-label quantities every metric shares."""

    probs: np.ndarray  # (N, K) float64
    labels: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) c_i = max_k p̄_ik
    predicted: np.ndarray  # (N,) ŷ_i = argmax_k p̄_ik
    correct: np.ndarray  # (N,) bool, ŷ_i = y_i

    @property
    def n(self) -> int:
        return self.probs.shape[0]

    @property
    def k(self) -> int:
        return self.probs.shape[1]


def _to_numpy(x: object, dtype: type | None) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor: no torch import needed for the conversion
        x = x.detach().cpu()
        x = (x.double() if dtype is np.float64 else x).numpy()
    return np.asarray(x, dtype=dtype)


def as_probabilities(probs: object) -> np.ndarray:
    """Convert ``probs`` (N, K) to float64 numpy and check that it holds probabilities (no labels needed).

    Raises ValueError unless probs is 2-D with N ≥ 1 rows, finite and in [0, 1], each row summing to 1
    within 1e-3. A :class:`Predictions` gives its ``probs``.
    """
    if isinstance(probs, Predictions):
        return probs.probs
    p = _to_numpy(probs, np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"probs must have shape (N, K) with N >= 1, got {p.shape}")
    if not np.isfinite(p).all() or p.min() < 0.0:
        raise ValueError("expected probabilities, got negative or non-finite values (logits?)")
    if np.abs(p.sum(axis=1) - 1.0).max() > _ROW_SUM_TOLERANCE:
        raise ValueError("expected probabilities, got something that does not sum to 1 (logits?)")
    return p


def as_predictions(probs: object, labels: object) -> Predictions:
    """Convert ``probs`` (N, K) and ``labels`` (N,) to float64 / int64 numpy once, and validate them.

    Raises ValueError unless probs passes :func:`as_probabilities` and labels is a 1-D integer array of
    length N with values in [0, K).
    """
    if isinstance(probs, Predictions):
        return probs
    p = as_probabilities(probs)
    y = _to_numpy(labels, None)
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},) to match probs {p.shape}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got range [{y.min()}, {y.max()}]")
    predicted = p.argmax(axis=1)
    confidence = p[np.arange(p.shape[0]), predicted]
    return Predictions(p, y, confidence, predicted, predicted == y)
