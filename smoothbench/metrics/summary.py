"""``summarize``: every per-row metric of :data:`smoothbench.schema.ROW_METRICS` from one validation."""

from __future__ import annotations

from smoothbench.metrics.calibration import brier_decomposition, ece, ece_signed, mce, rmsce
from smoothbench.metrics.classification import (acc_90, accuracy, brier, entropy, freq_90, iou,
                                                misclassification_auroc, nll, top5, unc_90)
from smoothbench.metrics.diversity import DiversitySums, diversity_summary
from smoothbench.metrics.inputs import as_predictions
from smoothbench.metrics.selective import augrc, aurc, coverage_at_risk, eaurc, risk_at_coverage
from smoothbench.schema import ROW_ECE_MODES


def summarize(probs: object, labels: object, *, ece_bins: int = 15, ece_mode: str = "standard",
              members: DiversitySums | None = None) -> dict[str, float]:
    """All metrics of :data:`smoothbench.schema.ROW_METRICS` in that order, validating the inputs once.

    ``ece``, ``ece_signed``, ``mce`` and ``rmsce`` use ``ece_mode`` ("standard" or "reference"); ``ece_adaptive``
    and ``ece_classwise`` use their own modes; all use ``ece_bins`` bins, as does the (classwise) Brier
    decomposition. The 0.9 metrics use t = 0.9; ``risk_at_80`` is the selective risk at coverage 0.8 and
    ``coverage_at_5`` the largest coverage at risk ≤ 0.05. The diversity columns need the ensemble's
    ``members`` sums (:class:`~smoothbench.metrics.diversity.DiversitySums`); without them they are NaN.
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
        "mce": mce(pr, None, ece_bins, ece_mode),
        "rmsce": rmsce(pr, None, ece_bins, ece_mode),
        **{f"brier_{part}": value for part, value in brier_decomposition(pr, None, ece_bins).items()},
        "aurc": aurc(pr, None),
        "eaurc": eaurc(pr, None),
        "augrc": augrc(pr, None),
        "risk_at_80": risk_at_coverage(pr, None, 0.8),
        "coverage_at_5": coverage_at_risk(pr, None, 0.05),
        **(diversity_summary(members) if members is not None else dict.fromkeys(_DIVERSITY, float("nan"))),
    }


_DIVERSITY = ("mutual_information", "expected_entropy", "disagreement", "variation_ratio")
