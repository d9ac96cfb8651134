"""Accuracy, likelihood and uncertainty of a predictive distribution: acc, top5, nll, brier, entropy, the
paper's 0.9-confidence metrics, mean IoU and the misclassification AUROC."""

from __future__ import annotations

import numpy as np
from scipy.special import entr

from smoothbench.metrics.inputs import as_predictions, as_probabilities
from smoothbench.metrics.ranking import rank_auroc

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


def per_image_entropy(probs: object) -> np.ndarray:
    """Entropy in nats of every row, H(p_i) = −Σ_k p_ik log p_ik with 0 log 0 = 0, for probabilities (N, K)."""
    return entr(as_probabilities(probs)).sum(axis=1)


def entropy(probs: object, labels: object) -> float:
    """Mean predictive entropy in nats = (1/N) Σ_i H(p̄_i) (:func:`per_image_entropy`).

    ``labels`` are only validated (kept for a uniform signature).
    """
    return float(per_image_entropy(as_predictions(probs, labels)).mean())


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

    Mann–Whitney AUROC (:func:`smoothbench.metrics.ranking.rank_auroc`) of c with the correct predictions
    positive: a tied pair counts 1/2. NaN if all predictions are correct or all are wrong.
    """
    pr = as_predictions(probs, labels)
    return rank_auroc(pr.confidence, pr.correct)
