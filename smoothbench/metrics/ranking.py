"""Ranking primitives shared by the misclassification, selective-prediction and OOD metrics: a score ranks
samples (higher = accepted first), and a threshold t accepts every sample with score ≥ t, so samples of equal
score are always accepted or rejected together."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def rank_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of ``scores`` (higher = positive) separating ``positive`` (bool) from the other samples.

    AUROC = U / (n_pos n_neg), U = Σ_{i positive} rank(s_i) − n_pos (n_pos + 1) / 2 (Mann–Whitney U,
    ranks over all samples with ties averaged, so a tied pair counts 1/2). NaN if either class is empty.
    """
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = rankdata(scores)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def threshold_counts(scores: np.ndarray, flagged: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts at every distinct score t_1 > … > t_G: (t_g, K_g = #(s ≥ t_g), F_g = #(s ≥ t_g, flagged)).

    The G operating points of thresholding ``scores``; K_G is the number of samples.
    """
    thresholds, group = np.unique(scores, return_inverse=True)  # ascending distinct scores
    size = np.bincount(group, minlength=len(thresholds))[::-1]
    hits = np.bincount(group, weights=flagged.astype(np.float64), minlength=len(thresholds))[::-1]
    return thresholds[::-1], np.cumsum(size), np.cumsum(hits).round().astype(np.int64)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision AP = Σ_g (R_g − R_{g−1}) P_g over the distinct scores t_1 > … > t_G (R_0 = 0).

    P_g and R_g are the precision and recall of accepting s ≥ t_g: the step-wise sum of scikit-learn's
    ``average_precision_score`` (no interpolation), tied scores entering together. NaN without positives.
    """
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    _, accepted, true_pos = threshold_counts(scores, positive)
    recall_step = np.diff(true_pos, prepend=0) / n_pos
    return float((recall_step * true_pos / accepted).sum())


def fpr_at_tpr(scores: np.ndarray, positive: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold whose true-positive rate is ≥ ``tpr``.

    Scanning the distinct scores t_1 > … > t_G, the first t_g with #(positive, s ≥ t_g)/n_pos ≥ tpr is
    used (the fewest accepted samples reaching the rate), and FPR = #(negative, s ≥ t_g)/n_neg: the first
    point of scikit-learn's ``roc_curve`` with that TPR. NaN if either class is empty.
    """
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, accepted, true_pos = threshold_counts(scores, positive)
    first = int(np.argmax(true_pos / n_pos >= tpr))
    return float((accepted[first] - true_pos[first]) / n_neg)
