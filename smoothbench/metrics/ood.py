"""Out-of-distribution detection: threshold-free metrics of an OOD score, and the scores themselves.

Convention: in-distribution (ID) images are the positive class and a higher score means "more
in-distribution"; a detector accepts (calls ID) every image whose score is ≥ a threshold. The ID and OOD
scores are pooled before ranking, and images of equal score are accepted or rejected together.

Scores are per image (numpy arrays, not floats): from the averaged probabilities p̄ (:func:`msp`,
:func:`entropy_score`), from logits (:func:`max_logit`, :func:`energy`) or from the members' diversity sums
(:func:`mutual_information_score`, :func:`variation_ratio_score`). Uncertainties are negated so that every
score follows the convention.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from smoothbench.metrics.classification import per_image_entropy
from smoothbench.metrics.diversity import DiversitySums, per_image_mutual_information, per_image_variation_ratio
from smoothbench.metrics.inputs import _to_numpy, as_probabilities
from smoothbench.metrics.ranking import average_precision, fpr_at_tpr, rank_auroc


def _scores(values: object, name: str) -> np.ndarray:
    s = _to_numpy(values, np.float64)
    if s.ndim != 1 or s.size < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array of scores, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite scores")
    return s


def ood_metrics(scores_in: object, scores_out: object) -> dict[str, float]:
    """AUROC, AUPR-in, AUPR-out and FPR95 of a score separating ID (``scores_in``) from OOD (``scores_out``).

    - ``auroc``: P(s_in > s_out) + ½ P(s_in = s_out), the Mann–Whitney AUROC (a tied pair counts 1/2);
    - ``aupr_in``: average precision with ID positive, AP = Σ_g (R_g − R_{g−1}) P_g over the distinct
      thresholds (the step-wise sum of scikit-learn's ``average_precision_score``);
    - ``aupr_out``: the same with OOD positive and the scores negated;
    - ``fpr95``: the share of OOD images accepted at the highest threshold that accepts ≥ 95 % of the ID
      images (the fewest accepted images reaching that rate; ``roc_curve``'s first point with TPR ≥ 0.95).
    All in [0, 1]; AUPR values depend on the ID : OOD ratio, AUROC and FPR95 do not.
    """
    s_in, s_out = _scores(scores_in, "scores_in"), _scores(scores_out, "scores_out")
    scores = np.concatenate([s_in, s_out])
    is_in = np.concatenate([np.ones(len(s_in), dtype=bool), np.zeros(len(s_out), dtype=bool)])
    return {
        "auroc": rank_auroc(scores, is_in),
        "aupr_in": average_precision(scores, is_in),
        "aupr_out": average_precision(-scores, ~is_in),
        "fpr95": fpr_at_tpr(scores, is_in, 0.95),
    }


def _logits(logits: object) -> np.ndarray:
    z = _to_numpy(logits, np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"logits must have shape (N, K) with N >= 1, got {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("logits must be finite, got NaN or infinite values")
    return z


def msp(probs: object) -> np.ndarray:
    """Maximum softmax probability c_i = max_k p̄_ik of the averaged prediction (Hendrycks & Gimpel 2017)."""
    return as_probabilities(probs).max(axis=1)


def max_logit(logits: object) -> np.ndarray:
    """Maximum logit max_k z_ik (Hendrycks et al. 2022).

    For an ensemble (deep ensemble or MC dropout) pass the mean of the members' logits: logits, unlike
    probabilities, are not averaged anywhere else, and the max of the mean logit is the ensemble's score.
    """
    return _logits(logits).max(axis=1)


def energy(logits: object, temperature: float = 1.0) -> np.ndarray:
    """Negative free energy T · logsumexp_k(z_ik / T) (Liu et al. 2020); higher = more in-distribution.

    As :func:`max_logit`, an ensemble passes its mean logits. T → 0 gives the max logit.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    return temperature * logsumexp(_logits(logits) / temperature, axis=1)


def entropy_score(probs: object) -> np.ndarray:
    """−H(p̄_i) = Σ_k p̄_ik log p̄_ik, the negated predictive entropy (nats)."""
    return -per_image_entropy(probs)


def mutual_information_score(members: DiversitySums | object) -> np.ndarray:
    """−MI_i, the negated mutual information of the members (sums or member probabilities (M, N, K))."""
    return -per_image_mutual_information(members)


def variation_ratio_score(members: DiversitySums | object) -> np.ndarray:
    """−(1 − max_c n_ic / M), the negated variation ratio of the members' argmax votes."""
    return -per_image_variation_ratio(members)
