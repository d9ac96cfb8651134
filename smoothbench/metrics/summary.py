"""``summarize``: every per-row metric of :data:`smoothbench.schema.ROW_METRICS` from one validation."""

from __future__ import annotations

from smoothbench.metrics.calibration import ece, ece_signed
from smoothbench.metrics.classification import (acc_90, accuracy, brier, entropy, freq_90, iou,
                                                misclassification_auroc, nll, top5, unc_90)
from smoothbench.metrics.inputs import as_predictions
from smoothbench.schema import ROW_ECE_MODES


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
