"""The facts every table shares: row keys, the metric table, and the canonical corruption and perturbation names.

This is the one home of these facts (no torch here, so the CLI, the leaderboard and the report can read it
cheaply). A result table is one row per measurement with a header; its *row key* names the columns that
identify a measurement, so that rewriting a row with the same key replaces it (see
:mod:`smoothbench.tables.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# ----------------------------------------------------------------------------------------------------------
# row keys
#
# The rule for every results file: a row's key holds what was measured (model, checkpoint, data, cell,
# ensemble size) and every setting that changes its numbers. So results of other settings coexist in one
# file, a rerun with the same settings replaces its own rows, and a resumed sweep never skips a cell that
# was computed with other settings. Speed settings that change numbers by float rounding at most
# (batch size, MC chunk, device, channels-last, compile, process count) are not part of it.

#: Settings that change the numbers of every evaluation row: the MC-dropout seed and the forward precision.
RUN_SETTINGS = ("seed", "precision")
#: The post-hoc calibration of eval, corruption and OOD rows: empty, or the mode and the held-out images its
#: temperatures were fitted on (e.g. ``temperature:cifar10/train[45000:50000]``); it changes the ``*_ts`` columns.
CALIBRATION_SETTINGS = ("calibration",)
#: Settings that change the calibration columns (``ece``, ``ece_signed``).
ECE_SETTINGS = ("ece_mode", "ece_bins")
#: Which images of a set were evaluated: ``subset`` (N, a class-balanced sample drawn from a fixed seed) and
#: ``subset_sha256`` (the SHA-256 of a published image list, ``--subset-file``; empty without one).
SUBSET_SETTINGS = ("subset", "subset_sha256")
#: One clean evaluation (``smoothbench eval``) at one ensemble size.
EVAL_ROW_KEY = ("model", "checkpoint_sha256", "dataset", "split", "ensemble_size", "members", "mc_samples"
                ) + SUBSET_SETTINGS + RUN_SETTINGS + ECE_SETTINGS + CALIBRATION_SETTINGS
#: One (corruption, severity) cell of a corruption sweep; severity 0 is the clean set. ``source``
#: (clean / released / generated) lets released and generated cells share a file; ``corruption_seed`` keys
#: the random draws of generated cells.
CORRUPTION_ROW_KEY = EVAL_ROW_KEY + ("corruption", "severity", "corruption_params", "source", "corruption_seed")
#: One consistency measurement: ``kind`` is ``mc-size`` or ``perturbation``; ``source`` tells released
#: from generated CIFAR-10-P sequences.
CONSISTENCY_ROW_KEY = ("model", "checkpoint_sha256", "dataset", "kind", "perturbation", "ensemble_size", "members",
                       "mc_samples") + SUBSET_SETTINGS + ("source",) + RUN_SETTINGS
#: The columns that identify one model evaluation (a model at one ensemble size on one dataset, with its
#: settings): the rows of its corruption cells share them, clean and corrupted alike.
EVALUATION_IDENTITY = ("model", "checkpoint_sha256", "dataset", "ensemble_size", "members", "mc_samples"
                       ) + SUBSET_SETTINGS + RUN_SETTINGS + ECE_SETTINGS + CALIBRATION_SETTINGS
#: One corruption-summary row: one model evaluation, corruption source and seed, corruption set, baseline.
SUMMARY_ROW_KEY = EVALUATION_IDENTITY + ("source", "corruption_seed", "corruptions", "baseline")

#: One OOD-detection measurement: the in-distribution test set (``dataset``, ``split``) against the OOD set
#: ``ood_set`` under one ``score``, at one ensemble size.
OOD_ROW_KEY = ("model", "checkpoint_sha256", "dataset", "split", "ood_set", "score", "ensemble_size", "members",
               "mc_samples") + SUBSET_SETTINGS + RUN_SETTINGS + CALIBRATION_SETTINGS
#: One evaluation on a natural-shift set (``shift`` is ``clean`` for the usual test set); its ``subset_sha256``
#: identifies the set's own published image list (``--subset-file SET=FILE``).
SHIFT_ROW_KEY = EVAL_ROW_KEY + ("shift",)

#: Columns always read as text (a hex digest made only of digits must not become a number).
TEXT_COLUMNS = ("model", "arch", "method", "smoothing", "blur", "dataset", "split", "checkpoint_sha256",
                "data_fingerprint", "c_data_fingerprint", "corruption", "corruption_params", "source", "kind",
                "perturbation", "smoothbench_version", "ece_mode", "precision", "preprocess", "normalization",
                "corruptions", "baseline", "calibration", "ood_set", "score", "shift", "subset_sha256",
                "ood_fingerprint")
#: Columns whose values are whole numbers (or empty): read and written as integers, never as ``7.0``.
INTEGER_COLUMNS = ("ensemble_size", "members", "mc_samples", "seed", "n_images", "subset", "ece_bins", "severity",
                   "corruption_seed", "width", "n_corruptions", "n_cells", "n_severities", "n_videos", "frames",
                   "n_ood")
#: Columns every result row must have, non-empty: a row without them is not a measurement.
REQUIRED_COLUMNS = ("model", "ensemble_size")

#: Values of the ``ece_mode`` setting and column: the binning of the ``ece`` and ``ece_signed`` columns
#: (``smoothbench.metrics`` documents both; its ``ece()`` also offers ``adaptive`` and ``classwise``, which
#: have columns of their own).
ROW_ECE_MODES = ("standard", "reference")
#: The ``precision`` setting and column: forward passes in float32, or under bfloat16 autocast.
PRECISIONS = ("fp32", "bf16")
#: Post-hoc calibration modes (:mod:`smoothbench.evaluation.temperature`): scale each member's logits, or
#: the log of the averaged prediction.
CALIBRATIONS = ("temperature", "temperature-mean")
#: OOD scores of ``smoothbench ood`` (:mod:`smoothbench.metrics.ood`); every one is "higher = more
#: in-distribution". ``max_logit`` and ``energy`` use the members' mean logits.
OOD_SCORES = ("msp", "max_logit", "energy", "entropy", "mutual_information", "variation_ratio")
#: The OOD scores computed when none are named.
DEFAULT_OOD_SCORES = ("msp", "entropy", "max_logit", "energy", "mutual_information")


# ----------------------------------------------------------------------------------------------------------
# metrics
Direction = Literal["higher", "lower", "abs-lower", "none"]


@dataclass(frozen=True)
class Metric:
    """One metric column: its name, which way is better, how tables show it, and what it means.

    ``better``: ``higher``, ``lower``, ``abs-lower`` (best at 0, ranked by absolute value) or ``none`` (a
    descriptive quantity with no better direction; ranked in ascending order when asked to sort by it).
    ``percent``: tables show the fraction × 100 with a ``%`` (files always hold fractions).
    """

    name: str
    better: Direction
    percent: bool
    meaning: str


_METRICS = (
    # per-row metrics of smoothbench.metrics.summarize, in its order
    Metric("acc", "higher", True, "top-1 accuracy"),
    Metric("top5", "higher", True, "top-5 accuracy"),
    Metric("nll", "lower", False, "negative log-likelihood of the label, nats per image"),
    Metric("brier", "lower", False, "Brier score summed over classes (0-2)"),
    Metric("entropy", "none", False, "mean predictive entropy, nats"),
    Metric("ece", "lower", True, "expected calibration error (ece_mode binning, ece_bins bins)"),
    Metric("ece_signed", "abs-lower", True, "signed ECE: positive = over-confident"),
    Metric("ece_adaptive", "lower", True, "ECE with equal-mass bins"),
    Metric("ece_classwise", "lower", True, "classwise (marginal) ECE"),
    Metric("auroc_misclf", "higher", True, "AUROC of the confidence separating right from wrong predictions"),
    Metric("acc_90", "higher", True, "accuracy of the predictions with confidence > 0.9"),
    Metric("unc_90", "higher", True, "share of errors with confidence <= 0.9"),
    Metric("freq_90", "none", True, "share of predictions with confidence > 0.9"),
    Metric("iou", "higher", True, "mean over classes of TP / (TP + FP + FN)"),
    # consistency rows
    Metric("accuracy", "higher", True, "top-1 accuracy at this ensemble size (consistency rows)"),
    Metric("agreement", "higher", True, "share of images whose argmax equals the largest ensemble's"),
    Metric("flip_rate", "lower", True, "share of argmax changes from the previous requested size"),
    Metric("tv", "lower", False, "mean total variation to the largest ensemble's prediction"),
    Metric("kl", "lower", False, "mean KL(largest ensemble || this size)"),
    Metric("seed_agreement", "higher", True, "argmax agreement with an independent ensemble of this size"),
    Metric("seed_tv", "lower", False, "mean total variation to an independent ensemble of this size"),
    Metric("consistency", "higher", True, "CIFAR-10-P: consecutive-frame argmax agreement (the paper's)"),
    Metric("cec", "lower", False, "CIFAR-10-P: cross-entropy consistency, divided by the number of classes"),
    Metric("cec_unscaled", "lower", False, "CIFAR-10-P: cross-entropy consistency without that division"),
    Metric("flip_prob", "lower", True, "CIFAR-10-P: flip probability (Hendrycks & Dietterich)"),
    Metric("top5_dist", "lower", False, "CIFAR-10-P: top-5 distance (Hendrycks & Dietterich)"),
    # corruption summaries
    Metric("clean_acc", "higher", True, "accuracy on the clean test set (severity 0)"),
    Metric("cAcc", "higher", True, "mean accuracy over corruptions x severities 1-5"),
    Metric("cNLL", "lower", False, "mean NLL over corruptions x severities 1-5"),
    Metric("cECE", "lower", True, "mean ECE over corruptions x severities 1-5"),
    Metric("cBrier", "lower", False, "mean Brier score over corruptions x severities 1-5"),
    Metric("mCE", "lower", True, "mean corruption error relative to the baseline (Hendrycks & Dietterich)"),
    Metric("relative_mCE", "lower", True, "mCE of the drop from clean error, relative to the baseline's"),
    Metric("mCNLL", "lower", True, "mean corruption NLL relative to the baseline (the paper's Fig. 9)"),
    Metric("mCECE", "lower", True, "mean corruption ECE relative to the baseline (the paper's Fig. 9)"),
    # training log
    Metric("train_acc", "higher", True, "training accuracy over the epoch's augmented images"),
    Metric("test_acc", "higher", True, "deterministic test accuracy after the epoch"),
    # uncertainty beyond the paper: selective prediction (smoothbench.metrics.selective)
    Metric("aurc", "lower", True, "area under the risk-coverage curve (ranking by confidence)"),
    Metric("eaurc", "lower", True, "AURC minus the exact finite-N AURC of an oracle ranking"),
    Metric("augrc", "lower", True, "area under the generalized risk-coverage curve (Traub et al. 2024)"),
    Metric("risk_at_80", "lower", True, "error rate of the 80% most confident predictions"),
    Metric("coverage_at_5", "higher", True, "largest share of predictions kept with error rate <= 5%"),
    # calibration (smoothbench.metrics.calibration)
    Metric("mce", "lower", True, "maximum calibration error: the worst bin's abs(acc - conf)"),
    Metric("rmsce", "lower", True, "root-mean-square calibration error over the ECE bins"),
    Metric("brier_reliability", "lower", False, "Brier reliability: squared miscalibration of the forecasts"),
    Metric("brier_resolution", "higher", False, "Brier resolution: how far binned outcomes move off the base rate"),
    Metric("brier_uncertainty", "none", False, "Brier uncertainty: sum_k base_k (1 - base_k) of the labels"),
    # ensemble diversity (smoothbench.metrics.diversity)
    Metric("mutual_information", "none", False, "entropy of the mean minus mean member entropy, nats (epistemic)"),
    Metric("expected_entropy", "none", False, "mean member entropy, nats (aleatoric)"),
    Metric("disagreement", "none", True, "share of member pairs whose argmax differ"),
    Metric("variation_ratio", "none", True, "share of members not voting for the majority class"),
    # OOD detection (smoothbench.metrics.ood), in-distribution positive
    Metric("auroc_ood", "higher", True, "AUROC of the score separating in- from out-of-distribution images"),
    Metric("aupr_in", "higher", True, "average precision with in-distribution images positive"),
    Metric("aupr_out", "higher", True, "average precision with out-of-distribution images positive"),
    Metric("fpr95", "lower", True, "share of OOD images accepted where 95% of in-distribution images are"),
    # natural shifts (smoothbench.metrics.soft_labels)
    Metric("nll_cifar10h", "lower", False, "cross-entropy against CIFAR-10H's human label distributions, nats"),
)
#: Row metrics that post-hoc calibration changes: each has a ``<name>_ts`` twin computed on the
#: temperature-scaled prediction (rows with a ``calibration``), with the same direction.
CALIBRATED_METRICS = ("acc", "nll", "brier", "ece", "ece_signed", "mce", "rmsce", "aurc")
_CALIBRATED = tuple(Metric(f"{m.name}_ts", m.better, m.percent, f"{m.meaning}, after temperature scaling")
                    for m in _METRICS if m.name in CALIBRATED_METRICS)
_CALIBRATION_METRICS = (Metric("temperature", "none", False, "fitted temperature T (1 = unchanged; > 1 softens)"),)
#: Every metric column, by name.
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS + _CALIBRATED + _CALIBRATION_METRICS}

#: Per-row metric columns written by ``smoothbench.metrics.summarize`` (fractions), in its order.
ROW_METRICS = ("acc", "top5", "nll", "brier", "entropy", "ece", "ece_signed", "ece_adaptive", "ece_classwise",
               "auroc_misclf", "acc_90", "unc_90", "freq_90", "iou", "mce", "rmsce", "brier_reliability",
               "brier_resolution", "brier_uncertainty", "aurc", "eaurc", "augrc", "risk_at_80", "coverage_at_5",
               "mutual_information", "expected_entropy", "disagreement", "variation_ratio")
#: The ``*_ts`` columns of calibrated rows, in :data:`CALIBRATED_METRICS` order.
CALIBRATED_ROW_METRICS = tuple(f"{name}_ts" for name in CALIBRATED_METRICS)
#: Metric columns of OOD rows (``smoothbench.metrics.ood_metrics``; ``auroc`` is written ``auroc_ood``).
OOD_METRICS = ("auroc_ood", "aupr_in", "aupr_out", "fpr95")
#: Metric columns of ensemble-size consistency rows (``kind = mc-size``), besides ``accuracy``.
MC_SIZE_METRICS = ("agreement", "flip_rate", "tv", "kl", "seed_agreement", "seed_tv")
#: Metric columns of CIFAR-10-P rows (``kind = perturbation``) that the leaderboard averages.
PERTURBATION_METRICS = ("consistency", "cec", "flip_prob", "top5_dist")
#: Metric columns of consistency rows of either kind.
CONSISTENCY_METRICS = MC_SIZE_METRICS + PERTURBATION_METRICS
#: Corruption-summary metrics (``smoothbench.tables.summaries.summarize_corruptions``) that the leaderboard ranks.
CORRUPTION_METRICS = ("cAcc", "cNLL", "cECE", "cBrier", "mCE", "relative_mCE", "mCNLL", "mCECE")


def is_percent(name: str) -> bool:
    """Whether tables show metric ``name`` as a percentage (unknown columns are shown raw)."""
    metric = METRICS.get(name)
    return metric is not None and metric.percent


def direction(name: str) -> Direction:
    """Which way metric ``name`` is better (``none`` for an unknown column)."""
    metric = METRICS.get(name)
    return metric.better if metric is not None else "none"


# ----------------------------------------------------------------------------------------------------------
# corruptions and perturbations
CORRUPTION_GROUPS = ("noise", "blur", "weather", "digital")


@dataclass(frozen=True)
class CorruptionName:
    """A canonical corruption: its name, group (Hendrycks & Dietterich / imagecorruptions: brightness is a
    weather corruption) and whether it is one of the 15 common (benchmark) corruptions."""

    name: str
    group: str
    common: bool


#: The 19 corruptions in the order of the reference creation scripts (hendrycks/robustness
#: ``make_cifar_c.py`` / ``make_imagenet_c.py``): the 15 common ones, then the 4 extras. The corruption
#: engine's registry refuses any function registered under another name or group.
CORRUPTIONS: tuple[CorruptionName, ...] = tuple(CorruptionName(*entry) for entry in (
    ("gaussian_noise", "noise", True),
    ("shot_noise", "noise", True),
    ("impulse_noise", "noise", True),
    ("defocus_blur", "blur", True),
    ("glass_blur", "blur", True),
    ("motion_blur", "blur", True),
    ("zoom_blur", "blur", True),
    ("snow", "weather", True),
    ("frost", "weather", True),
    ("fog", "weather", True),
    ("brightness", "weather", True),
    ("contrast", "digital", True),
    ("elastic_transform", "digital", True),
    ("pixelate", "digital", True),
    ("jpeg_compression", "digital", True),
    ("speckle_noise", "noise", False),
    ("gaussian_blur", "blur", False),
    ("spatter", "weather", False),
    ("saturate", "digital", False),
))
#: The 15 benchmark corruptions of CIFAR-10-C / ImageNet-C, in order.
COMMON_CORRUPTIONS = tuple(c.name for c in CORRUPTIONS if c.common)
#: The 4 held-out ("extra") corruptions of the released sets.
EXTRA_CORRUPTIONS = tuple(c.name for c in CORRUPTIONS if not c.common)
#: Severities of a corrupted set (0 is the clean set in sweep rows).
SEVERITIES = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class PerturbationName:
    """A CIFAR-10-P perturbation: its name and the number of frames of each sequence."""

    name: str
    frames: int


#: The 10 evaluated CIFAR-10-P perturbations in ``cifar-p-eval.py`` order.
PERTURBATIONS: tuple[PerturbationName, ...] = tuple(PerturbationName(*entry) for entry in (
    ("gaussian_noise", 31),
    ("shot_noise", 31),
    ("motion_blur", 21),
    ("zoom_blur", 31),
    ("spatter", 31),
    ("brightness", 31),
    ("translate", 16),
    ("rotate", 31),
    ("tilt", 31),
    ("scale", 31),
))
