"""Calibration: expected calibration errors in several binnings, and reliability-diagram bins.

ECE variants (all use ``bins`` = B bins; top-label unless stated):

- ``standard``: equal-width bins [0, 1/B), [1/B, 2/B), …, [(B-1)/B, 1] with edges ``linspace(0, 1,
  B+1)``; a confidence of exactly 1.0 falls in the last bin; empty bins are skipped.
  ECE = Σ_b (n_b/N) |acc_b − conf_b|.
- ``reference``: the binning of the paper's code (Park & Kim 2022, ``ops/tests.py``), kept to reproduce
  its numbers: counts and accuracies over (a, b], confidence sums over [a, b),
  conf_b = Σ c / (n_b + 1e-7), acc_b = 0 for an empty bin, weights n_b / (Σ_b n_b + 1e-7). So a
  prediction at confidence exactly 1.0 is counted but adds nothing to the confidence sums (and c = 0
  would never be counted).
- ``adaptive``: equal-mass bins: samples sorted by confidence (stable sort) and split into B
  contiguous groups whose sizes differ by at most one (``np.array_split``); ECE as ``standard``.
- ``classwise``: marginal (classwise) ECE in the style of Kull et al. 2019: for every class k,
  equal-width ``standard`` binning of p̄_ik over all N samples against the indicator 1[y_i = k];
  ECE = (1/K) Σ_k Σ_b (n_kb/N) |freq_kb − conf_kb|, averaged over all K classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from smoothbench.metrics.inputs import Predictions, as_predictions

#: The binnings :func:`ece` offers (its ``mode``); a row's ``ece`` column uses one of
#: :data:`smoothbench.schema.ROW_ECE_MODES`, and ``ece_adaptive`` / ``ece_classwise`` have columns of their own.
ECE_MODES = ("standard", "reference", "adaptive", "classwise")
_TOP_LABEL_MODES = ("standard", "reference", "adaptive")
# Constant the paper's code adds to denominators (reference ECE only).
_REFERENCE_EPS = 1e-7


@dataclass(frozen=True)
class _Bins:
    """Per-bin count, accuracy and mean confidence (NaN where empty) and the ECE weights."""

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray
    weight: np.ndarray  # n_b / N (reference: n_b / (Σ n_b + 1e-7))
    gap: np.ndarray  # conf_b − acc_b, 0 where empty


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")


def _equal_width_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin b with edges[b] ≤ v < edges[b+1]; v ≥ 1.0 goes to the last bin."""
    return np.minimum(np.searchsorted(edges, values, side="right") - 1, len(edges) - 2)


def _top_label_bins(pr: Predictions, bins: int, mode: str) -> _Bins:
    if mode not in _TOP_LABEL_MODES:
        raise ValueError(f"unknown top-label ECE mode {mode!r}; choose one of {', '.join(_TOP_LABEL_MODES)}")
    _check_bins(bins)
    conf, correct = pr.confidence, pr.correct.astype(np.float64)
    if mode == "adaptive":
        order = np.argsort(conf, kind="stable")
        sizes = np.array([len(chunk) for chunk in np.array_split(order, bins)])
        index = np.empty(pr.n, dtype=np.int64)
        index[order] = np.repeat(np.arange(bins), sizes)
        sorted_conf = conf[order]
        ends = np.cumsum(sizes)
        nonempty = sizes > 0
        lower = np.full(bins, np.nan)
        upper = np.full(bins, np.nan)
        lower[nonempty] = sorted_conf[(ends - sizes)[nonempty]]
        upper[nonempty] = sorted_conf[ends[nonempty] - 1]
    else:
        edges = np.linspace(0.0, 1.0, bins + 1)
        lower, upper = edges[:-1], edges[1:]
        if mode == "standard":
            index = _equal_width_index(conf, edges)
        else:  # reference: counts/accuracy over (a, b]
            index = np.searchsorted(edges, conf, side="left") - 1
    count = np.bincount(index[index >= 0], minlength=bins).astype(np.float64)
    hits = np.bincount(index[index >= 0], weights=correct[index >= 0], minlength=bins)
    if mode == "reference":
        # Confidence sums over [a, b): c = 1.0 lands past the last bin and is dropped.
        conf_index = np.searchsorted(edges, conf, side="right") - 1
        keep = conf_index < bins
        conf_sum = np.bincount(conf_index[keep], weights=conf[keep], minlength=bins)
        acc = np.divide(hits, count, out=np.zeros(bins), where=count > 0)
        mean_conf = conf_sum / (count + _REFERENCE_EPS)
        weight = count / (count.sum() + _REFERENCE_EPS)
        gap = mean_conf - acc
    else:
        conf_sum = np.bincount(index, weights=conf, minlength=bins)
        acc = np.divide(hits, count, out=np.zeros(bins), where=count > 0)
        mean_conf = np.divide(conf_sum, count, out=np.zeros(bins), where=count > 0)
        weight = count / pr.n
        gap = np.where(count > 0, mean_conf - acc, 0.0)
    empty = count == 0
    return _Bins(
        lower=lower,
        upper=upper,
        count=count,
        accuracy=np.where(empty, np.nan, acc),
        confidence=np.where(empty, np.nan, mean_conf),
        weight=weight,
        gap=np.where(empty, 0.0, gap),
    )


def _classwise_cells(pr: Predictions, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (class k, equal-width bin b) cell of the p̄_ik, flattened as k * B + b: count n_kb, the sum of
    the p̄_ik in it, and hits = #(y_i = k) in it."""
    _check_bins(bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    cell = _equal_width_index(pr.probs, edges) + np.arange(pr.k) * bins
    count = np.bincount(cell.ravel(), minlength=pr.k * bins)
    conf_sum = np.bincount(cell.ravel(), weights=pr.probs.ravel(), minlength=pr.k * bins)
    hits = np.bincount(cell[np.arange(pr.n), pr.labels], minlength=pr.k * bins)
    return count, conf_sum, hits


def _classwise_ece(pr: Predictions, bins: int) -> float:
    _, conf_sum, hits = _classwise_cells(pr, bins)
    # (n_kb/N) |freq_kb − conf_kb| = |Σ_{i in kb} (1[y_i = k] − p̄_ik)| / N; empty cells give 0.
    return float(np.abs(hits - conf_sum).sum() / (pr.n * pr.k))


def ece(probs: object, labels: object, bins: int = 15, mode: str = "standard") -> float:
    """Expected calibration error with ``bins`` bins; ``mode`` as in the module docstring.

    standard / adaptive: ECE = Σ_b (n_b/N) |acc_b − conf_b| over non-empty bins, where acc_b and
    conf_b are the accuracy and mean confidence c of bin b. reference: the paper code's binning and
    1e-7 terms. classwise: (1/K) Σ_k Σ_b (n_kb/N) |freq_kb − conf_kb| (Kull et al. 2019).
    """
    pr = as_predictions(probs, labels)
    if mode == "classwise":
        return _classwise_ece(pr, bins)
    if mode not in ECE_MODES:
        raise ValueError(f"unknown ECE mode {mode!r}; choose one of {', '.join(ECE_MODES)}")
    b = _top_label_bins(pr, bins, mode)
    return float((b.weight * np.abs(b.gap)).sum())


def ece_signed(probs: object, labels: object, bins: int = 15, mode: str = "standard") -> float:
    """Signed ECE = Σ_b (n_b/N) (conf_b − acc_b); positive = over-confident, in [−1, 1].

    Same binning as :func:`ece` for the top-label modes (standard, reference, adaptive); with
    ``mode="reference"`` it is the paper's ECSE ("ECE±").
    """
    b = _top_label_bins(as_predictions(probs, labels), bins, mode)
    return float((b.weight * b.gap).sum())


def reliability_bins(probs: object, labels: object, bins: int = 15, mode: str = "standard") -> pd.DataFrame:
    """Per-bin table of a top-label reliability diagram, one row per bin.

    Columns: ``bin`` (0..B-1), ``lower``/``upper`` (bin edges; for ``adaptive`` the smallest/largest
    confidence in the bin, NaN if empty), ``count`` (n_b), ``accuracy`` (acc_b), ``confidence``
    (conf_b), ``gap`` (conf_b − acc_b); accuracy, confidence and gap are NaN for empty bins. With the
    same mode, ECE = Σ_b (count_b/N) |gap_b| (up to the 1e-7 terms for ``reference``).
    """
    b = _top_label_bins(as_predictions(probs, labels), bins, mode)
    return pd.DataFrame(
        {
            "bin": np.arange(len(b.count)),
            "lower": b.lower,
            "upper": b.upper,
            "count": b.count.astype(np.int64),
            "accuracy": b.accuracy,
            "confidence": b.confidence,
            "gap": b.confidence - b.accuracy,
        }
    )


def mce(probs: object, labels: object, bins: int = 15, mode: str = "standard") -> float:
    """Maximum calibration error = max over non-empty bins b of |acc_b − conf_b|, in [0, 1].

    The worst bin of :func:`ece`'s binning, for the top-label modes (standard, reference, adaptive). A
    bin of a single image counts as much as a full one, so MCE is noisy with many bins or few images.
    """
    b = _top_label_bins(as_predictions(probs, labels), bins, mode)
    return float(np.abs(b.gap[b.count > 0]).max())


def rmsce(probs: object, labels: object, bins: int = 15, mode: str = "standard") -> float:
    """Root-mean-square calibration error = sqrt(Σ_b (n_b/N) (acc_b − conf_b)²), in [0, 1].

    Same bins and weights as :func:`ece` for the top-label modes (standard, reference, adaptive); RMSCE²
    is the reliability term of the top-label Brier score (c − 1[ŷ = y])² under these bins, and
    RMSCE ≥ ECE.
    """
    b = _top_label_bins(as_predictions(probs, labels), bins, mode)
    return float(np.sqrt((b.weight * b.gap**2).sum()))


def brier_decomposition(probs: object, labels: object, bins: int = 15) -> dict[str, float]:
    """Murphy's decomposition of the Brier score summed over classes (the ``brier`` column), per class.

    That Brier score is the sum over classes k of the binary Brier score of p̄_ik for the event y_i = k, so
    each class is decomposed on its own and the terms are summed. Grouping: the ``classwise`` ECE cells,
    i.e. the p̄_ik of class k in B equal-width bins; cell (k, b) holds n_kb images with mean forecast
    f_kb and label frequency o_kb, and ō_k = #(y = k)/N:

    - reliability = (1/N) Σ_k Σ_b n_kb (f_kb − o_kb)² (lower is better),
    - resolution = (1/N) Σ_k Σ_b n_kb (o_kb − ō_k)² (higher is better),
    - uncertainty = Σ_k ō_k (1 − ō_k) (the labels' own spread: the Brier score of always forecasting ō).

    brier = reliability − resolution + uncertainty holds exactly only when every cell holds equal
    forecasts (e.g. a few distinct forecasts, or bins fine enough to separate distinct values);
    otherwise the within-cell spread of the forecasts adds a remainder (Stephenson et al. 2008).
    """
    pr = as_predictions(probs, labels)
    count, conf_sum, hits = _classwise_cells(pr, bins)
    base_rate = np.bincount(pr.labels, minlength=pr.k) / pr.n  # ō_k
    nonempty = count > 0
    # n_kb (f_kb − o_kb)² = (Σ p̄ − hits)² / n_kb
    reliability = ((conf_sum - hits)[nonempty] ** 2 / count[nonempty]).sum() / pr.n
    frequency = np.divide(hits, count, out=np.zeros(len(count)), where=nonempty)  # o_kb
    resolution = (count * (frequency - np.repeat(base_rate, bins)) ** 2).sum() / pr.n
    return {
        "reliability": float(reliability),
        "resolution": float(resolution),
        "uncertainty": float((base_rate * (1.0 - base_rate)).sum()),
    }
