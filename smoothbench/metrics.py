"""Accuracy, calibration and uncertainty metrics of a predictive distribution.

Every function takes ``probs`` (N, K), the ensemble prediction p̄ (the mean of the members' softmax
probabilities, averaged upstream), and integer ``labels`` (N,); numpy arrays or torch tensors. They are
converted once by :func:`as_predictions` to float64 numpy; passing its :class:`Predictions` as
``probs`` skips the conversion (``labels`` is then ignored). Notation: c_i = max_k p̄_ik is the
confidence, ŷ_i = argmax_k p̄_ik the prediction (ties go to the lowest class index), N the number of
samples, K the number of classes. Each metric is computed per sample and averaged (fractions, not
percents); no batch-mean-of-means.

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
from scipy.special import entr
from scipy.stats import rankdata

from smoothbench.schema import ROW_ECE_MODES

#: The binnings :func:`ece` offers (its ``mode``); a row's ``ece`` column uses one of
#: :data:`smoothbench.schema.ROW_ECE_MODES`, and ``ece_adaptive`` / ``ece_classwise`` have columns of their own.
ECE_MODES = ("standard", "reference", "adaptive", "classwise")
_TOP_LABEL_MODES = ("standard", "reference", "adaptive")
_ROW_SUM_TOLERANCE = 1e-3
# Constant the paper's code adds to denominators (reference ECE only).
_REFERENCE_EPS = 1e-7


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


def as_predictions(probs: object, labels: object) -> Predictions:
    """Convert ``probs`` (N, K) and ``labels`` (N,) to float64 / int64 numpy once, and validate them.

    Raises ValueError unless probs is 2-D with N ≥ 1 rows, finite and in [0, 1], each row summing to 1
    within 1e-3, and labels is a 1-D integer array of length N with values in [0, K).
    """
    if isinstance(probs, Predictions):
        return probs
    p = _to_numpy(probs, np.float64)
    y = _to_numpy(labels, None)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"probs must have shape (N, K) with N >= 1, got {p.shape}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},) to match probs {p.shape}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must lie in [0, {p.shape[1]}), got range [{y.min()}, {y.max()}]")
    if not np.isfinite(p).all() or p.min() < 0.0:
        raise ValueError("expected probabilities, got negative or non-finite values (logits?)")
    if np.abs(p.sum(axis=1) - 1.0).max() > _ROW_SUM_TOLERANCE:
        raise ValueError("expected probabilities, got something that does not sum to 1 (logits?)")
    predicted = p.argmax(axis=1)
    confidence = p[np.arange(p.shape[0]), predicted]
    return Predictions(p, y, confidence, predicted, predicted == y)


def accuracy(probs: object, labels: object) -> float:
    """Accuracy = (1/N) Σ_i 1[ŷ_i = y_i]."""
    return float(as_predictions(probs, labels).correct.mean())


def top5(probs: object, labels: object) -> float:
    """Top-5 accuracy = (1/N) Σ_i 1[#{k : p̄_ik > p̄_iy_i} < 5].

    The label counts as in the top 5 when fewer than 5 classes are strictly more probable (ties
    resolved in the label's favour); with K < 5 it is always 1.0.
    """
    pr = as_predictions(probs, labels)
    p_true = pr.probs[np.arange(pr.n), pr.labels]
    above = (pr.probs > p_true[:, None]).sum(axis=1)
    return float((above < 5).mean())


def nll(probs: object, labels: object) -> float:
    """Negative log-likelihood = (1/N) Σ_i −log max(p̄_iy_i, tiny), tiny = smallest normal float64.

    The clamp (≈2.2e-308) keeps a zero probability finite: its term is ≈708.4 instead of inf.
    """
    pr = as_predictions(probs, labels)
    p_true = pr.probs[np.arange(pr.n), pr.labels]
    return float(-np.log(np.maximum(p_true, np.finfo(np.float64).tiny)).mean())


def brier(probs: object, labels: object) -> float:
    """Brier score = (1/N) Σ_i Σ_k (p̄_ik − 1[k = y_i])², summed over classes as the paper; in [0, 2]."""
    pr = as_predictions(probs, labels)
    diff = pr.probs.copy()
    diff[np.arange(pr.n), pr.labels] -= 1.0
    return float(np.einsum("ik,ik->i", diff, diff).mean())


def entropy(probs: object, labels: object) -> float:
    """Mean predictive entropy in nats = (1/N) Σ_i −Σ_k p̄_ik log p̄_ik, with 0 log 0 = 0.

    ``labels`` are only validated (kept for a uniform signature).
    """
    return float(entr(as_predictions(probs, labels).probs).sum(axis=1).mean())


def acc_90(probs: object, labels: object, threshold: float = 0.9) -> float:
    """Accuracy of confident predictions = p(ŷ = y | c > t), t = ``threshold``; NaN if no c > t."""
    pr = as_predictions(probs, labels)
    confident = pr.confidence > threshold
    return float(pr.correct[confident].mean()) if confident.any() else float("nan")


def unc_90(probs: object, labels: object, threshold: float = 0.9) -> float:
    """Share of errors flagged uncertain = p(c ≤ t | ŷ ≠ y), t = ``threshold``; NaN if no errors."""
    pr = as_predictions(probs, labels)
    wrong = ~pr.correct
    return float((pr.confidence[wrong] <= threshold).mean()) if wrong.any() else float("nan")


def freq_90(probs: object, labels: object, threshold: float = 0.9) -> float:
    """Share of confident predictions = #(c > t) / N, t = ``threshold``."""
    return float((as_predictions(probs, labels).confidence > threshold).mean())


def iou(probs: object, labels: object) -> float:
    """Mean IoU = mean over classes k with ≥ 1 true sample of TP_k / (TP_k + FP_k + FN_k).

    TP_k = #(ŷ = k, y = k), FP_k = #(ŷ = k, y ≠ k), FN_k = #(ŷ ≠ k, y = k) (paper's ``miou``).
    """
    pr = as_predictions(probs, labels)
    true_count = np.bincount(pr.labels, minlength=pr.k)
    pred_count = np.bincount(pr.predicted, minlength=pr.k)
    tp = np.bincount(pr.labels[pr.correct], minlength=pr.k)
    present = true_count > 0
    union = true_count + pred_count - tp  # TP + FP + FN
    return float((tp[present] / union[present]).mean())


def misclassification_auroc(probs: object, labels: object) -> float:
    """AUROC of the confidence c separating correct (positive) from wrong predictions.

    AUROC = U / (n_pos n_neg), U = Σ_{i correct} rank(c_i) − n_pos (n_pos + 1) / 2 (Mann–Whitney U,
    ranks over all N with ties averaged, so a tied pair counts 1/2). NaN if all predictions are
    correct or all are wrong.
    """
    pr = as_predictions(probs, labels)
    n_pos = int(pr.correct.sum())
    n_neg = pr.n - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(pr.confidence)
    u = ranks[pr.correct].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


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


def _classwise_ece(pr: Predictions, bins: int) -> float:
    _check_bins(bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Flattened (class, bin) cell of every p̄_ik: k * B + bin.
    cell = _equal_width_index(pr.probs, edges) + np.arange(pr.k) * bins
    conf_sum = np.bincount(cell.ravel(), weights=pr.probs.ravel(), minlength=pr.k * bins)
    hits = np.bincount(cell[np.arange(pr.n), pr.labels], minlength=pr.k * bins)
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


def summarize(probs: object, labels: object, *, ece_bins: int = 15, ece_mode: str = "standard") -> dict[str, float]:
    """All metrics of :data:`smoothbench.schema.ROW_METRICS` in that order, validating the inputs once.

    ``ece`` and ``ece_signed`` use ``ece_mode`` ("standard" or "reference"); ``ece_adaptive`` and
    ``ece_classwise`` use their own modes; all use ``ece_bins`` bins. The 0.9 metrics use t = 0.9.
    """
    if ece_mode not in ROW_ECE_MODES:
        raise ValueError(f"unknown ece_mode {ece_mode!r}; choose one of {', '.join(ROW_ECE_MODES)}")
    pr = as_predictions(probs, labels)
    return {
        "acc": accuracy(pr, None),
        "top5": top5(pr, None),
        "nll": nll(pr, None),
        "brier": brier(pr, None),
        "entropy": entropy(pr, None),
        "ece": ece(pr, None, ece_bins, ece_mode),
        "ece_signed": ece_signed(pr, None, ece_bins, ece_mode),
        "ece_adaptive": ece(pr, None, ece_bins, "adaptive"),
        "ece_classwise": ece(pr, None, ece_bins, "classwise"),
        "auroc_misclf": misclassification_auroc(pr, None),
        "acc_90": acc_90(pr, None),
        "unc_90": unc_90(pr, None),
        "freq_90": freq_90(pr, None),
        "iou": iou(pr, None),
    }
