"""Accuracy, calibration and uncertainty metrics of a predictive distribution (pure functions, no torch).

Every function takes ``probs`` (N, K), the ensemble prediction p̄ (the mean of the members' softmax
probabilities, averaged upstream), and integer ``labels`` (N,); numpy arrays or torch tensors. They are
converted once by :func:`as_predictions` to float64 numpy; passing its :class:`Predictions` as
``probs`` skips the conversion (``labels`` is then ignored). Notation: c_i = max_k p̄_ik is the
confidence, ŷ_i = argmax_k p̄_ik the prediction (ties go to the lowest class index), N the number of
samples, K the number of classes. Each metric is computed per sample and averaged (fractions, not
percents); no batch-mean-of-means.

Modules: :mod:`.inputs` (validation), :mod:`.classification`, :mod:`.calibration` (ECE binnings, reliability
bins, MCE, RMSCE, Brier decomposition), :mod:`.summary` (``summarize``: every row metric at once),
:mod:`.selective` (risk–coverage curves, AURC, AUGRC), :mod:`.diversity` (MI, disagreement from running sums
over members), :mod:`.ood` (OOD scores and AUROC/AUPR/FPR95), :mod:`.ranking` (threshold primitives).
"""

from smoothbench.metrics.calibration import (ECE_MODES, brier_decomposition, ece, ece_signed, mce,
                                             reliability_bins, rmsce)
from smoothbench.metrics.classification import (acc_90, accuracy, brier, entropy, freq_90, iou,
                                                misclassification_auroc, nll, per_image_entropy, top5, unc_90)
from smoothbench.metrics.diversity import (DiversitySums, disagreement, diversity_sums, diversity_summary,
                                           expected_entropy, mutual_information, per_image_disagreement,
                                           per_image_expected_entropy, per_image_mutual_information,
                                           per_image_variation_ratio, variation_ratio)
from smoothbench.metrics.inputs import Predictions, as_predictions, as_probabilities
from smoothbench.metrics.ood import (energy, entropy_score, max_logit, msp, mutual_information_score, ood_metrics,
                                     variation_ratio_score)
from smoothbench.metrics.selective import (augrc, aurc, coverage_at_risk, eaurc, oracle_aurc, risk_at_coverage,
                                           risk_coverage_curve)
from smoothbench.metrics.summary import summarize

from smoothbench.metrics.soft_labels import soft_label_nll

__all__ = ["ECE_MODES", "Predictions", "acc_90", "accuracy", "as_predictions", "brier", "ece", "ece_signed", "entropy",
           "freq_90", "iou", "misclassification_auroc", "nll", "reliability_bins", "summarize", "top5", "unc_90",
           # uncertainty beyond the paper
           "DiversitySums", "as_probabilities", "augrc", "aurc", "brier_decomposition", "coverage_at_risk",
           "disagreement", "diversity_sums", "diversity_summary", "eaurc", "energy", "entropy_score",
           "expected_entropy", "max_logit", "mce", "msp", "mutual_information", "mutual_information_score",
           "ood_metrics", "oracle_aurc", "per_image_disagreement", "per_image_entropy", "per_image_expected_entropy",
           "per_image_mutual_information", "per_image_variation_ratio", "risk_at_coverage", "risk_coverage_curve",
           "rmsce", "soft_label_nll", "variation_ratio", "variation_ratio_score"]
