"""Accuracy, calibration and uncertainty metrics of a predictive distribution (pure functions, no torch).

Every function takes ``probs`` (N, K), the ensemble prediction p̄ (the mean of the members' softmax
probabilities, averaged upstream), and integer ``labels`` (N,); numpy arrays or torch tensors. They are
converted once by :func:`as_predictions` to float64 numpy; passing its :class:`Predictions` as
``probs`` skips the conversion (``labels`` is then ignored). Notation: c_i = max_k p̄_ik is the
confidence, ŷ_i = argmax_k p̄_ik the prediction (ties go to the lowest class index), N the number of
samples, K the number of classes. Each metric is computed per sample and averaged (fractions, not
percents); no batch-mean-of-means.

Modules: :mod:`.inputs` (validation), :mod:`.classification`, :mod:`.calibration` (ECE binnings, reliability
bins), :mod:`.summary` (``summarize``: every row metric at once).
"""

from smoothbench.metrics.calibration import ECE_MODES, ece, ece_signed, reliability_bins
from smoothbench.metrics.classification import (acc_90, accuracy, brier, entropy, freq_90, iou,
                                                misclassification_auroc, nll, top5, unc_90)
from smoothbench.metrics.inputs import Predictions, as_predictions
from smoothbench.metrics.summary import summarize

__all__ = ["ECE_MODES", "Predictions", "acc_90", "accuracy", "as_predictions", "brier", "ece", "ece_signed", "entropy",
           "freq_90", "iou", "misclassification_auroc", "nll", "reliability_bins", "summarize", "top5", "unc_90"]
