"""``summarize``: every per-row metric of :data:`smoothbench.schema.ROW_METRICS` from one validation."""

from __future__ import annotations

import functools
from typing import Sequence

from smoothbench.metrics.calibration import brier_decomposition, ece, ece_signed, mce, rmsce
from smoothbench.metrics.classification import (acc_90, accuracy, brier, entropy, freq_90, iou,
                                                misclassification_auroc, nll, top5, unc_90)
from smoothbench.metrics.diversity import DiversitySums, diversity_summary
from smoothbench.metrics.inputs import as_predictions
from smoothbench.metrics.selective import augrc, aurc, coverage_at_risk, eaurc, risk_at_coverage
from smoothbench.schema import ROW_ECE_MODES, ROW_METRICS


def summarize(probs: object, labels: object, *, ece_bins: int = 15, ece_mode: str = "standard",
              members: DiversitySums | None = None, include: Sequence[str] | None = None) -> dict[str, float]:
    """All metrics of :data:`smoothbench.schema.ROW_METRICS` in that order (or only those in ``include``),
    validating the inputs once.

    ``ece``, ``ece_signed``, ``mce`` and ``rmsce`` use ``ece_mode`` ("standard" or "reference"); ``ece_adaptive``
    and ``ece_classwise`` use their own modes; all use ``ece_bins`` bins, as does the (classwise) Brier
    decomposition. The 0.9 metrics use t = 0.9; ``risk_at_80`` is the selective risk at coverage 0.8 and
    ``coverage_at_5`` the largest coverage at risk ≤ 0.05. The diversity columns need the ensemble's
    ``members`` sums (:class:`~smoothbench.metrics.diversity.DiversitySums`); without them they are NaN.
    """
    if ece_mode not in ROW_ECE_MODES:
        raise ValueError(f"unknown ece_mode {ece_mode!r}; choose one of {', '.join(ROW_ECE_MODES)}")
    unknown = set(include or ()) - set(ROW_METRICS)
    if unknown:
        raise ValueError(f"unknown row metrics {sorted(unknown)}")
    pr = as_predictions(probs, labels)
    decomposition = functools.cache(lambda: brier_decomposition(pr, None, ece_bins))
    diversity = functools.cache(lambda: diversity_summary(members) if members is not None
                                else dict.fromkeys(_DIVERSITY, float("nan")))
    compute = {
        "acc": lambda: accuracy(pr, None),
        "top5": lambda: top5(pr, None),
        "nll": lambda: nll(pr, None),
        "brier": lambda: brier(pr, None),
        "entropy": lambda: entropy(pr, None),
        "ece": lambda: ece(pr, None, ece_bins, ece_mode),
        "ece_signed": lambda: ece_signed(pr, None, ece_bins, ece_mode),
        "ece_adaptive": lambda: ece(pr, None, ece_bins, "adaptive"),
        "ece_classwise": lambda: ece(pr, None, ece_bins, "classwise"),
        "auroc_misclf": lambda: misclassification_auroc(pr, None),
        "acc_90": lambda: acc_90(pr, None),
        "unc_90": lambda: unc_90(pr, None),
        "freq_90": lambda: freq_90(pr, None),
        "iou": lambda: iou(pr, None),
        "mce": lambda: mce(pr, None, ece_bins, ece_mode),
        "rmsce": lambda: rmsce(pr, None, ece_bins, ece_mode),
        **{f"brier_{part}": (lambda part=part: decomposition()[part])
           for part in ("reliability", "resolution", "uncertainty")},
        "aurc": lambda: aurc(pr, None),
        "eaurc": lambda: eaurc(pr, None),
        "augrc": lambda: augrc(pr, None),
        "risk_at_80": lambda: risk_at_coverage(pr, None, 0.8),
        "coverage_at_5": lambda: coverage_at_risk(pr, None, 0.05),
        **{name: (lambda name=name: diversity()[name]) for name in _DIVERSITY},
    }
    return {name: compute[name]() for name in ROW_METRICS if include is None or name in include}


_DIVERSITY = ("mutual_information", "expected_entropy", "disagreement", "variation_ratio")
