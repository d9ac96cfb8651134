"""Uncertainty metrics beyond the paper, checked against independent computations: scikit-learn for the OOD
metrics, torchmetrics for MCE/RMSCE, brute-force loops (following the documented tie rule) for the
risk–coverage metrics, hand-made cases for the Brier decomposition, and stored member probabilities for the
diversity sums."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from torchmetrics.functional.classification import multiclass_calibration_error

from smoothbench import metrics as m
from smoothbench import plots, schema
from smoothbench.errors import UserError

# Case A of test_metrics.py: c = .70 (right), .60 (wrong), .60 (right), .95 (wrong).
P_A = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.95, 0.05, 0.0]])
Y_A = np.array([0, 2, 2, 1])

NEW_COLUMNS = ("aurc", "eaurc", "augrc", "risk_at_80", "coverage_at_5", "mce", "rmsce", "brier_reliability",
               "brier_resolution", "brier_uncertainty", "mutual_information", "expected_entropy", "disagreement",
               "variation_ratio", "auroc_ood", "aupr_in", "aupr_out", "fpr95")


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def random_case(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Continuous confidences (no ties), about 60 % right."""
    rng = np.random.default_rng(seed)
    probs = softmax_np(rng.normal(size=(n, k)) * 2.5)
    labels = np.where(rng.random(n) < 0.5, probs.argmax(axis=1), rng.integers(0, k, n))
    return probs, labels


def tied_case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Forecasts on a 1/20 grid (multinomial counts / 20): many exactly tied confidences."""
    rng = np.random.default_rng(seed)
    probs = rng.multinomial(20, [0.55, 0.2, 0.15, 0.1], size=n) / 20.0
    probs = np.take_along_axis(probs, rng.permuted(np.tile(np.arange(4), (n, 1)), axis=1), axis=1)
    labels = np.where(rng.random(n) < 0.6, probs.argmax(axis=1), rng.integers(0, 4, n))
    return probs, labels


# ---------------------------------------------------------------------------------------------------------
# selective prediction: brute force with the documented rule (tied confidences accepted or rejected together)
def brute_points(probs: np.ndarray, labels: np.ndarray) -> list[tuple[float, float, float, float]]:
    """(coverage, selective risk, generalized risk, threshold) for every distinct confidence, descending."""
    conf = probs.max(axis=1)
    wrong = probs.argmax(axis=1) != labels
    n = len(labels)
    points = []
    for t in sorted(set(conf.tolist()), reverse=True):
        accepted = conf >= t
        points.append((accepted.sum() / n, wrong[accepted].mean(), (wrong & accepted).sum() / n, t))
    return points


def brute_risk_at(points, u: float) -> float:
    for coverage, risk, _, _ in points:  # ascending coverage
        if coverage >= u:
            return risk
    raise AssertionError("coverage 1 is always reached")


def brute_aurc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over k = 1..N of the risk at coverage k/N (a tie group shares the risk of the whole group)."""
    points = brute_points(probs, labels)
    n = len(labels)
    return sum(brute_risk_at(points, k / n) for k in range(1, n + 1)) / n


def brute_augrc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Trapezoids through (0, 0) and the operating points (coverage, generalized risk)."""
    area, last_cov, last_risk = 0.0, 0.0, 0.0
    for coverage, _, generalized, _ in brute_points(probs, labels):
        area += (coverage - last_cov) * (last_risk + generalized) / 2
        last_cov, last_risk = coverage, generalized
    return area


def brute_oracle_aurc(labels_correct: np.ndarray) -> float:
    errors = np.sort(~labels_correct)  # False (right) first
    return float(np.mean(np.cumsum(errors) / np.arange(1, len(errors) + 1)))


def test_selective_case_a_by_hand():
    # operating points: .95 (K=1, E=1), .70 (K=2, E=1), .60 tie group (K=4, E=2)
    assert m.aurc(P_A, Y_A) == pytest.approx(0.25 * 1 + 0.25 * 0.5 + 0.5 * 0.5)
    assert m.oracle_aurc(P_A, Y_A) == pytest.approx((1 / 3 + 1 / 2) / 4)  # C = 2: (1/N) Σ_{k=3,4} (k−2)/k
    assert m.eaurc(P_A, Y_A) == pytest.approx(0.625 - 5 / 24)
    # trapezoids through (0,0) (.25,.25) (.5,.25) (1,.5)
    assert m.augrc(P_A, Y_A) == pytest.approx(0.03125 + 0.0625 + 0.1875)
    assert m.risk_at_coverage(P_A, Y_A, 0.8) == 0.5
    assert m.risk_at_coverage(P_A, Y_A, 0.25) == 1.0
    assert m.risk_at_coverage(P_A, Y_A, 0.3) == 0.5  # K=2 is the first point covering 0.3
    assert m.coverage_at_risk(P_A, Y_A, 0.5) == 1.0
    assert m.coverage_at_risk(P_A, Y_A, 0.4) == 0.0  # no threshold reaches it
    curve = m.risk_coverage_curve(P_A, Y_A)
    assert list(curve.columns) == ["coverage", "risk", "threshold"]
    np.testing.assert_allclose(curve.to_numpy(), [[0.25, 1.0, 0.95], [0.5, 0.5, 0.7], [1.0, 0.5, 0.6]])


@pytest.mark.parametrize("case", ["continuous", "tied"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selective_against_brute_force(case, seed):
    probs, labels = random_case(60, 5, seed) if case == "continuous" else tied_case(60, seed)
    conf = probs.max(axis=1)
    if case == "tied":
        assert len(np.unique(conf)) < len(conf) / 3, "the case should have many ties"
    correct = probs.argmax(axis=1) == labels
    assert m.aurc(probs, labels) == pytest.approx(brute_aurc(probs, labels), abs=1e-12)
    assert m.oracle_aurc(probs, labels) == pytest.approx(brute_oracle_aurc(correct), abs=1e-12)
    assert m.eaurc(probs, labels) == pytest.approx(brute_aurc(probs, labels) - brute_oracle_aurc(correct), abs=1e-12)
    assert m.eaurc(probs, labels) >= 0
    assert m.augrc(probs, labels) == pytest.approx(brute_augrc(probs, labels), abs=1e-12)
    points = brute_points(probs, labels)
    for u in (0.01, 0.1, 0.25, 0.5, 0.8, 0.95, 1.0):
        assert m.risk_at_coverage(probs, labels, u) == pytest.approx(brute_risk_at(points, u), abs=1e-12)
    for r in (0.0, 0.05, 0.2, 0.4, 1.0):
        admissible = [coverage for coverage, risk, _, _ in points if risk <= r]
        assert m.coverage_at_risk(probs, labels, r) == pytest.approx(max(admissible, default=0.0), abs=1e-12)
    curve = m.risk_coverage_curve(probs, labels)
    np.testing.assert_allclose(curve[["coverage", "risk", "threshold"]].to_numpy(),
                               [(c, r, t) for c, r, _, t in points])
    # the curve is the step function AURC integrates
    steps = np.diff(curve["coverage"].to_numpy(), prepend=0.0)
    assert (steps * curve["risk"]).sum() == pytest.approx(m.aurc(probs, labels), abs=1e-12)


def test_no_ties_matches_the_per_sample_definitions():
    probs, labels = random_case(50, 4, 7)
    order = np.argsort(-probs.max(axis=1))
    wrong = (probs.argmax(axis=1) != labels)[order]
    n = len(labels)
    errors = np.cumsum(wrong)
    k = np.arange(1, n + 1)
    assert m.aurc(probs, labels) == pytest.approx(np.mean(errors / k))  # Geifman & El-Yaniv
    for u in (0.3, 0.8):
        assert m.risk_at_coverage(probs, labels, u) == pytest.approx(errors[math.ceil(u * n) - 1] / math.ceil(u * n))
    # AUGRC per sample: trapezoids of E_k / N over steps of 1/N from (0, 0)
    assert m.augrc(probs, labels) == pytest.approx(np.sum((np.r_[0, errors[:-1]] + errors) / 2) / n**2)


def test_augrc_tie_segments_are_the_mean_over_tie_orders():
    # 7 images, confidences with tie groups {.9 ×3}, {.6 ×2}, {.5 ×2}
    conf = np.array([0.9, 0.9, 0.9, 0.6, 0.6, 0.5, 0.5])
    wrong = np.array([True, False, False, True, False, False, True])
    probs = np.stack([conf, 1 - conf], axis=1)
    labels = np.where(wrong, 1, 0)
    areas = []
    for order in itertools.permutations(range(7)):
        if np.all(np.diff(conf[list(order)]) <= 0):  # every order the confidences allow
            errors = np.cumsum(wrong[list(order)])
            areas.append(np.sum((np.r_[0, errors[:-1]] + errors) / 2) / 49)
    assert len(areas) == 6 * 2 * 2  # 3! · 2! · 2!
    assert m.augrc(probs, labels) == pytest.approx(np.mean(areas))


@pytest.mark.parametrize("case", ["continuous", "tied"])
def test_augrc_identity_with_misclassification_auroc(case):
    probs, labels = random_case(80, 5, 3) if case == "continuous" else tied_case(80, 3)
    acc = m.accuracy(probs, labels)
    auroc = m.misclassification_auroc(probs, labels)
    assert m.augrc(probs, labels) == pytest.approx((1 - auroc) * acc * (1 - acc) + (1 - acc) ** 2 / 2)


def test_selective_limits():
    probs, labels = random_case(40, 3, 5)
    right = probs.argmax(axis=1)
    assert m.aurc(probs, right) == 0.0 and m.augrc(probs, right) == 0.0 and m.eaurc(probs, right) == 0.0
    assert m.coverage_at_risk(probs, right, 0.0) == 1.0
    wrong = (right + 1) % 3
    assert m.aurc(probs, wrong) == 1.0 and m.eaurc(probs, wrong) == pytest.approx(0.0, abs=1e-12)
    assert m.augrc(probs, wrong) == pytest.approx(0.5)  # oracle AUGRC r²/2 at r = 1
    assert m.coverage_at_risk(probs, wrong, 0.5) == 0.0
    # the exact oracle lies above its asymptotic closed form r + (1 − r) ln(1 − r), and tends to it
    r = 1 - m.accuracy(probs, labels)
    assert m.oracle_aurc(probs, labels) > r + (1 - r) * math.log(1 - r)
    big = np.tile(probs, (500, 1)), np.tile(labels, 500)
    assert m.oracle_aurc(*big) == pytest.approx(r + (1 - r) * math.log(1 - r), abs=1e-4)


def test_selective_argument_errors():
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\]"):
        m.risk_at_coverage(P_A, Y_A, 0.0)
    with pytest.raises(ValueError, match=r"risk must be in \[0, 1\]"):
        m.coverage_at_risk(P_A, Y_A, 1.5)
    with pytest.raises(ValueError, match="does not sum to 1"):
        m.aurc(P_A * 2, Y_A)


def test_risk_coverage_plot(tmp_path):
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    frames = {"model a": m.risk_coverage_curve(*random_case(100, 5, 0)),
              "model b": m.risk_coverage_curve(*tied_case(100, 0))}
    fig = plots.risk_coverage_plot(frames, tmp_path / "rc.png")
    assert len(fig.axes[0].get_lines()) == 2
    assert (tmp_path / "rc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rc.png"]
    assert plt.get_fignums() == open_before
    with pytest.raises(UserError, match="no curves to plot"):
        plots.risk_coverage_plot({}, tmp_path / "none.png")
    with pytest.raises(UserError, match="missing column"):
        plots.risk_coverage_plot({"x": frames["model a"].drop(columns="risk")}, tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------------------------
# calibration: MCE, RMSCE, Brier decomposition
def test_mce_rmsce_case_a_by_hand():
    # 10 bins: bin 6 {.6 wrong, .6 right} gap .1; bin 7 {.7 right} gap .3; bin 9 {.95 wrong} gap .95
    assert m.mce(P_A, Y_A, bins=10) == pytest.approx(0.95)
    assert m.rmsce(P_A, Y_A, bins=10) == pytest.approx(math.sqrt(0.5 * 0.01 + 0.25 * 0.09 + 0.25 * 0.9025))
    assert m.rmsce(P_A, Y_A, bins=10) >= m.ece(P_A, Y_A, bins=10)


def brute_top_label_bins(probs: np.ndarray, labels: np.ndarray, bins: int) -> list[tuple[float, float, float]]:
    """(weight n_b/N, acc_b, conf_b) of every non-empty equal-width bin [b/B, (b+1)/B), 1.0 in the last."""
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    out = []
    for b in range(bins):
        inside = (conf >= b / bins) & ((conf < (b + 1) / bins) | (b == bins - 1))
        if inside.any():
            out.append((inside.mean(), correct[inside].mean(), conf[inside].mean()))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_mce_rmsce_against_brute_force_and_torchmetrics(seed):
    probs, labels = random_case(300, 6, seed)
    assert probs.max() < 1.0  # torchmetrics' own bin for c = 1.0 does not matter here
    cells = brute_top_label_bins(probs, labels, 15)
    assert m.mce(probs, labels) == pytest.approx(max(abs(a - c) for _, a, c in cells))
    assert m.rmsce(probs, labels) == pytest.approx(math.sqrt(sum(w * (a - c) ** 2 for w, a, c in cells)))
    tp, ty = torch.from_numpy(probs), torch.from_numpy(labels)
    for norm, ours in (("max", m.mce), ("l2", m.rmsce)):
        theirs = multiclass_calibration_error(tp, ty, num_classes=6, n_bins=15, norm=norm).item()
        assert ours(probs, labels) == pytest.approx(theirs, abs=1e-6)
    # every top-label mode is accepted; MCE is the worst bin of reliability_bins in each
    for mode in ("standard", "reference", "adaptive"):
        table = m.reliability_bins(probs, labels, bins=10, mode=mode)
        assert m.mce(probs, labels, bins=10, mode=mode) == pytest.approx(table["gap"].abs().max())


def test_mce_rmsce_mode_errors():
    with pytest.raises(ValueError, match="standard, reference, adaptive"):
        m.mce(P_A, Y_A, mode="classwise")
    with pytest.raises(ValueError, match="positive integer"):
        m.rmsce(P_A, Y_A, bins=0)


def test_brier_decomposition_by_hand():
    # K=2: (.8,.2) with y=0 twice; (.3,.7) with y=0 and y=1.
    probs = np.array([[0.8, 0.2], [0.8, 0.2], [0.3, 0.7], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    parts = m.brier_decomposition(probs, labels, bins=10)
    # class 0: cells {.8: o=1}, {.3: o=.5}, ō=.75 → REL (2·.04+2·.04)/4 = .04, RES (2·.0625+2·.0625)/4
    # class 1: cells {.2: o=0}, {.7: o=.5}, ō=.25 → the same; UNC .1875 per class
    assert parts == pytest.approx({"reliability": 0.08, "resolution": 0.125, "uncertainty": 0.375})
    assert m.brier(probs, labels) == pytest.approx(0.33)
    assert parts["reliability"] - parts["resolution"] + parts["uncertainty"] == pytest.approx(0.33)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brier_identity_where_cells_hold_equal_forecasts(seed):
    # 1/20-grid forecasts in 40 bins: equal values share a cell and distinct values never do
    probs, labels = tied_case(300, seed)
    parts = m.brier_decomposition(probs, labels, bins=40)
    assert parts["reliability"] - parts["resolution"] + parts["uncertainty"] == pytest.approx(
        m.brier(probs, labels), abs=1e-12)
    freq = np.bincount(labels, minlength=4) / len(labels)
    assert parts["uncertainty"] == pytest.approx(1 - (freq**2).sum())


def test_brier_decomposition_limits_and_inexact_binning():
    probs, labels = random_case(400, 5, 4)
    one_hot = np.eye(5)[labels]
    perfect = m.brier_decomposition(one_hot, labels)
    assert perfect["reliability"] == 0.0
    assert perfect["resolution"] == pytest.approx(perfect["uncertainty"])
    climatology = np.tile(np.bincount(labels, minlength=5) / 400, (400, 1))
    flat = m.brier_decomposition(climatology, labels)
    assert flat["reliability"] == pytest.approx(0.0, abs=1e-12) and flat["resolution"] == pytest.approx(0.0)
    assert flat["uncertainty"] == pytest.approx(m.brier(climatology, labels))
    # continuous forecasts in 15 bins: the within-cell spread leaves a remainder
    parts = m.brier_decomposition(probs, labels)
    assert abs(parts["reliability"] - parts["resolution"] + parts["uncertainty"] - m.brier(probs, labels)) > 1e-4


# ---------------------------------------------------------------------------------------------------------
# diversity
def members_case(m_count: int, n: int = 30, k: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(1, n, k)) * 1.5
    return softmax_np(shared + rng.normal(size=(m_count, n, k)))


def direct_diversity(members: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image values straight from the stored (M, N, K) member probabilities."""
    def h(p):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)

    count, n = members.shape[0], members.shape[1]
    votes = members.argmax(axis=2)  # (M, N)
    pairs = [(a, b) for a in range(count) for b in range(count) if a != b]
    disagreement = (np.array([[votes[a, i] != votes[b, i] for (a, b) in pairs] for i in range(n)]).mean(axis=1)
                    if pairs else np.full(n, np.nan))
    majority = np.array([np.bincount(votes[:, i]).max() for i in range(n)])
    expected = h(members).mean(axis=0)
    return {"expected_entropy": expected, "mutual_information": h(members.mean(axis=0)) - expected,
            "disagreement": disagreement, "variation_ratio": 1 - majority / count}


@pytest.mark.parametrize("count", [1, 2, 5])
def test_running_sums_equal_direct_computation(count):
    members = members_case(count)
    sums = m.DiversitySums.zeros(30, 4)
    for member in members:
        sums.update(member)
    direct = direct_diversity(members)
    per_image = {"expected_entropy": m.per_image_expected_entropy, "mutual_information": m.per_image_mutual_information,
                 "disagreement": m.per_image_disagreement, "variation_ratio": m.per_image_variation_ratio}
    for name, function in per_image.items():
        np.testing.assert_allclose(function(sums), direct[name], atol=1e-12, err_msg=name)
        np.testing.assert_allclose(function(members), direct[name], atol=1e-12, err_msg=name)  # convenience path
    summary = m.diversity_summary(sums)
    assert set(summary) <= set(schema.METRICS)
    for name, value in summary.items():
        np.testing.assert_allclose(value, np.mean(direct[name]), atol=1e-12, err_msg=name)
    # H(p̄) = aleatoric + epistemic
    assert m.entropy(members.mean(axis=0), np.zeros(30, dtype=int)) == pytest.approx(
        m.expected_entropy(sums) + m.mutual_information(sums))


def test_one_member_and_identical_members():
    one = members_case(1)
    assert m.mutual_information(one) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(m.disagreement(one))
    assert m.variation_ratio(one) == 0.0
    same = np.repeat(one, 4, axis=0)
    assert m.mutual_information(same) == pytest.approx(0.0, abs=1e-12)
    assert m.disagreement(same) == 0.0 and m.variation_ratio(same) == 0.0
    assert m.expected_entropy(same) == pytest.approx(m.entropy(one[0], np.zeros(30, dtype=int)))


def test_snapshots_and_concatenation():
    members = members_case(5)
    sums = m.DiversitySums.zeros(30, 4)
    snapshots = {}
    for size, member in enumerate(members, start=1):
        sums.update(torch.from_numpy(member).float())  # a loop hands torch tensors over
        if size in (2, 5):
            snapshots[size] = sums.copy()
    assert snapshots[2].members == 2
    np.testing.assert_allclose(m.per_image_mutual_information(snapshots[2]),
                               direct_diversity(members[:2])["mutual_information"], atol=1e-6)
    parts = [m.diversity_sums(members[:, :12]), m.diversity_sums(members[:, 12:])]
    joined = m.DiversitySums.concatenate(parts)
    whole = m.diversity_sums(members)
    np.testing.assert_allclose(joined.prob_sum, whole.prob_sum)
    np.testing.assert_array_equal(joined.votes, whole.votes)
    assert m.disagreement(joined) == pytest.approx(m.disagreement(whole))


def test_diversity_errors():
    with pytest.raises(ValueError, match="same number of members"):
        m.DiversitySums.concatenate([m.diversity_sums(members_case(2)), m.diversity_sums(members_case(3))])
    with pytest.raises(ValueError, match=r"must have shape \(30, 4\)"):
        m.DiversitySums.zeros(30, 4).update(np.full((29, 4), 0.25))
    with pytest.raises(ValueError, match="no members yet"):
        m.mutual_information(m.DiversitySums.zeros(3, 2))
    with pytest.raises(ValueError, match=r"shape \(M, N, K\) with M >= 1"):
        m.disagreement(np.full((30, 4), 0.25))
    with pytest.raises(ValueError, match="negative or non-finite"):
        m.diversity_sums(np.log(members_case(2)))


# ---------------------------------------------------------------------------------------------------------
# OOD detection
def sklearn_ood(scores_in: np.ndarray, scores_out: np.ndarray) -> dict[str, float]:
    y = np.r_[np.ones(len(scores_in)), np.zeros(len(scores_out))]
    s = np.r_[scores_in, scores_out]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"auroc": roc_auc_score(y, s), "aupr_in": average_precision_score(y, s),
            "aupr_out": average_precision_score(1 - y, -s), "fpr95": fpr[np.argmax(tpr >= 0.95)]}


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("n_in", "n_out", "seed"), [(100, 60, 0), (40, 200, 1), (20, 20, 2), (257, 131, 3)])
def test_ood_metrics_against_sklearn(ties, n_in, n_out, seed):
    rng = np.random.default_rng(seed)
    scores_in, scores_out = rng.normal(1.0, 1.0, n_in), rng.normal(0.0, 1.2, n_out)
    if ties:
        scores_in, scores_out = np.round(scores_in, 1), np.round(scores_out, 1)
    ours = m.ood_metrics(scores_in, scores_out)
    assert ours == pytest.approx(sklearn_ood(scores_in, scores_out), abs=1e-12)
    assert list(ours) == ["auroc", "aupr_in", "aupr_out", "fpr95"]


def test_ood_metrics_by_hand():
    # pairs (in, out): 3>0 3>2 2>0 2=2 (½) 1>0 1<2 → 4.5/6
    result = m.ood_metrics([3.0, 2.0, 1.0], [0.0, 2.0])
    assert result["auroc"] == pytest.approx(0.75)
    # 95 % of 3 ID images needs all 3 (t = 1): OOD accepted: the 2.0 → 1/2
    assert result["fpr95"] == 0.5
    separated = m.ood_metrics([5.0, 6.0, 7.0], [1.0, 2.0])
    assert separated == {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}


def test_ood_scores():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 5)) * 3
    probs = softmax_np(logits)
    np.testing.assert_allclose(m.msp(probs), probs.max(axis=1))
    np.testing.assert_allclose(m.max_logit(logits), logits.max(axis=1))
    for t in (1.0, 2.5):
        np.testing.assert_allclose(m.energy(logits, t), t * np.log(np.exp(logits / t).sum(axis=1)))
    np.testing.assert_allclose(m.energy(logits, 1e-3), logits.max(axis=1), atol=1e-2)  # T → 0: max logit
    np.testing.assert_allclose(m.entropy_score(probs), np.sum(probs * np.log(probs), axis=1))
    members = members_case(3)
    sums = m.diversity_sums(members)
    np.testing.assert_allclose(m.mutual_information_score(sums), -m.per_image_mutual_information(members))
    np.testing.assert_allclose(m.variation_ratio_score(members), -m.per_image_variation_ratio(sums))
    # a confident ID set against a flat OOD set: every score ranks ID higher
    flat = np.full((20, 5), 0.2)
    assert m.ood_metrics(m.msp(np.eye(5)[rng.integers(0, 5, 20)]), m.msp(flat))["auroc"] == 1.0


def test_ood_errors():
    with pytest.raises(ValueError, match="scores_in must be a non-empty 1-D array"):
        m.ood_metrics(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="scores_out must be a non-empty 1-D array"):
        m.ood_metrics(np.ones(3), [])
    with pytest.raises(ValueError, match="scores_out must be finite"):
        m.ood_metrics(np.ones(3), [np.nan])
    with pytest.raises(ValueError, match="temperature must be positive"):
        m.energy(np.zeros((2, 3)), temperature=0.0)
    with pytest.raises(ValueError, match=r"logits must have shape \(N, K\)"):
        m.max_logit(np.zeros(3))
    with pytest.raises(ValueError, match="logits must be finite"):
        m.energy(np.array([[0.0, np.inf]]))
    with pytest.raises(ValueError, match="does not sum to 1"):
        m.msp(np.ones((2, 3)))


def test_new_columns_are_in_the_schema():
    for name in NEW_COLUMNS:
        metric = schema.METRICS[name]
        assert metric.meaning and metric.better in ("higher", "lower", "abs-lower", "none")
