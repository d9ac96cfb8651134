"""Selective prediction: risk–coverage curves and their areas, ranking images by the confidence c = max_k p̄_k.

A selective classifier accepts the images whose confidence is at least a threshold t and abstains on the
others. For one threshold: coverage = share of the N images accepted, selective risk = error rate among the
accepted, generalized risk (Traub et al. 2024) = accepted-and-wrong images / N.

Ties: a threshold cannot separate images of exactly equal confidence, so tied images are accepted or rejected
together. The operating points are the G distinct confidences t_1 > … > t_G; point g accepts the K_g images
with c ≥ t_g, E_g of them wrong: coverage K_g/N, selective risk R_g = E_g/K_g, generalized risk E_g/N
(K_0 = E_0 = 0). Every metric here is a function of these points alone, so it never depends on the order of the
images, as a tie broken by position would. Without ties, G = N and K_g = g.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import digamma

from smoothbench.metrics.inputs import as_predictions
from smoothbench.metrics.ranking import threshold_counts


@dataclass(frozen=True)
class _OperatingPoints:
    """The G operating points, most confident first: thresholds t_g, accepted counts K_g, errors E_g."""

    threshold: np.ndarray  # (G,) descending
    accepted: np.ndarray  # (G,) K_g, ascending, K_G = N
    wrong: np.ndarray  # (G,) E_g
    n: int

    @property
    def coverage(self) -> np.ndarray:
        return self.accepted / self.n

    @property
    def risk(self) -> np.ndarray:
        return self.wrong / self.accepted

    @property
    def group_share(self) -> np.ndarray:
        """n_g / N: the share of images at each distinct confidence (the width of its coverage slice)."""
        return np.diff(self.accepted, prepend=0) / self.n


def _operating_points(probs: object, labels: object) -> _OperatingPoints:
    pr = as_predictions(probs, labels)
    return _OperatingPoints(*threshold_counts(pr.confidence, ~pr.correct), pr.n)


def aurc(probs: object, labels: object) -> float:
    """Area under the risk–coverage curve (Geifman & El-Yaniv 2017), in [0, 1]; lower is better.

    AURC = Σ_g (n_g/N) R_g, n_g = K_g − K_{g−1}: the integral over coverage u in (0, 1] of the selective
    risk of the smallest operating point that covers u. Without ties this is (1/N) Σ_{k=1..N} E_k/k, the
    mean over k of the error rate of the k most confident predictions; a tie group shares its risk.
    (torch-uncertainty breaks ties by sort position instead; fd-shifts joins the points with trapezoids.)
    """
    points = _operating_points(probs, labels)
    return float((points.group_share * points.risk).sum())


def oracle_aurc(probs: object, labels: object) -> float:
    """AURC of an oracle that ranks the C = N − E correct predictions before the E wrong ones.

    Exact for finite N: (1/N) Σ_{k=C+1..N} (k − C)/k = (E − C (H_N − H_C)) / N, H_n the harmonic numbers
    (their difference computed as ψ(N + 1) − ψ(C + 1)). The often-quoted r + (1 − r) ln(1 − r), r = E/N, is
    its N → ∞ limit (the integral that this right Riemann sum approximates) and understates it for small N.
    """
    pr = as_predictions(probs, labels)
    n, n_correct = pr.n, int(pr.correct.sum())
    harmonic_gap = digamma(n + 1) - digamma(n_correct + 1)  # H_N − H_C
    return float((n - n_correct - n_correct * harmonic_gap) / n)


def eaurc(probs: object, labels: object) -> float:
    """Excess AURC = :func:`aurc` − :func:`oracle_aurc` (the exact finite-N oracle), ≥ 0; lower is better.

    Non-negative under the tie rule too: an operating point of K images has at least K − C errors.
    """
    pr = as_predictions(probs, labels)
    return aurc(pr, None) - oracle_aurc(pr, None)


def augrc(probs: object, labels: object) -> float:
    """Area under the generalized risk–coverage curve (Traub et al. 2024), in [0, 1/2]; lower is better.

    Generalized risk = accepted-and-wrong / N (errors over ALL images, not over the accepted). As in the
    paper's code (IML-DKFZ/fd-shifts ``generalized_risk_stats`` + trapezoid), the curve joins (0, 0) and the
    operating points (K_g/N, E_g/N) with straight lines: AUGRC = Σ_g (n_g/N) (E_{g−1} + E_g) / (2N). The
    straight segment across a tie group is the mean over random orders of the group, and
    AUGRC = (1 − AUROC_f) acc (1 − acc) + (1 − acc)²/2 exactly, AUROC_f the misclassification AUROC with
    tied pairs counted 1/2. (torch-uncertainty's ``AUGRC`` starts its curve at coverage 1/N and divides by
    1 − 1/N, a difference of order 1/N.)
    """
    points = _operating_points(probs, labels)
    previous = np.concatenate(([0.0], points.wrong[:-1]))
    return float((points.group_share * (previous + points.wrong)).sum() / (2 * points.n))


def risk_at_coverage(probs: object, labels: object, coverage: float = 0.8) -> float:
    """Selective risk at ``coverage`` u in (0, 1]: R_g of the first (most confident) operating point with
    K_g/N ≥ u; lower is better.

    A tie group straddling u is accepted whole, so the risk is that of a coverage ≥ u (the same step
    function that :func:`aurc` integrates). Without ties it is E_k/k with k = ⌈uN⌉.
    """
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage!r}")
    points = _operating_points(probs, labels)
    first = int(np.argmax(points.coverage >= coverage))
    return float(points.risk[first])


def coverage_at_risk(probs: object, labels: object, risk: float = 0.05) -> float:
    """Largest coverage K_g/N of an operating point whose selective risk R_g ≤ ``risk``; higher is better.

    The risk need not fall with the threshold, so all operating points are searched, not only up to the
    first crossing. Tie groups are accepted whole (coverages are K_g/N only). 0.0 if no operating point
    reaches the risk: only abstaining on every image does.
    """
    if not 0.0 <= risk <= 1.0:
        raise ValueError(f"risk must be in [0, 1], got {risk!r}")
    points = _operating_points(probs, labels)
    admissible = points.risk <= risk
    return float(points.coverage[admissible].max()) if admissible.any() else 0.0


def risk_coverage_curve(probs: object, labels: object) -> pd.DataFrame:
    """The risk–coverage curve, one row per operating point, by ascending coverage.

    Columns: ``coverage`` K_g/N, ``risk`` R_g = E_g/K_g and ``threshold`` t_g (accept c ≥ t_g). The curve
    is a step function: coverages in (K_{g−1}/N, K_g/N] have risk R_g, so AURC = Σ_g Δcoverage_g · risk_g.
    """
    points = _operating_points(probs, labels)
    return pd.DataFrame({"coverage": points.coverage, "risk": points.risk, "threshold": points.threshold})
