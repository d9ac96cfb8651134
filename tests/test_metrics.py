"""Metrics on hand-computed cases, against torchmetrics/torch where definitions coincide, and against
the paper code's ECE re-implemented here in its original loop form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

from smoothbench import metrics as m
from smoothbench import schema

# Case A: 4 samples, 3 classes.
#   row  probs             y  ŷ  c     correct
#   0    (.70, .20, .10)   0  0  .70   yes
#   1    (.10, .60, .30)   2  1  .60   no
#   2    (.20, .20, .60)   2  2  .60   yes
#   3    (.95, .05, .00)   1  0  .95   no
P_A = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.95, 0.05, 0.0]])
Y_A = np.array([0, 2, 2, 1])


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def random_case(n: int, k: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return softmax_np(rng.normal(size=(n, k)) * scale), rng.integers(0, k, n)


def test_case_a_by_hand():
    assert m.accuracy(P_A, Y_A) == pytest.approx(2 / 4)
    # −(log .7 + log .3 + log .6 + log .05) / 4
    assert m.nll(P_A, Y_A) == pytest.approx(-(math.log(0.7) + math.log(0.3) + math.log(0.6) + math.log(0.05)) / 4)
    # rows: .09+.04+.01=.14; .01+.36+.49=.86; .04+.04+.16=.24; .9025+.9025+0=1.805; sum 3.045
    assert m.brier(P_A, Y_A) == pytest.approx(3.045 / 4)
    # row 3 has a 0 probability: 0 log 0 = 0
    h = [-sum(v * math.log(v) for v in row if v > 0) for row in P_A]
    assert m.entropy(P_A, Y_A) == pytest.approx(sum(h) / 4)
    assert m.top5(P_A, Y_A) == 1.0  # K = 3 < 5
    # only row 3 has c > .9, and it is wrong
    assert m.acc_90(P_A, Y_A) == 0.0
    assert m.freq_90(P_A, Y_A) == pytest.approx(1 / 4)
    # errors: rows 1 (c=.6 ≤ .9) and 3 (c=.95) → 1/2
    assert m.unc_90(P_A, Y_A) == pytest.approx(1 / 2)
    # threshold .5: confident rows all 4 → acc 2/4; errors with c ≤ .5: none
    assert m.acc_90(P_A, Y_A, threshold=0.5) == pytest.approx(0.5)
    assert m.unc_90(P_A, Y_A, threshold=0.5) == 0.0
    # IoU: class 0 TP1 FP1 (row 3) FN0 → 1/2; class 1 TP0 FP1 FN1 → 0; class 2 TP1 FP0 FN1 → 1/2
    assert m.iou(P_A, Y_A) == pytest.approx((0.5 + 0 + 0.5) / 3)
    # AUROC pairs (correct c, wrong c): (.7,.6)=1 (.7,.95)=0 (.6,.6)=½ (.6,.95)=0 → 1.5/4
    assert m.misclassification_auroc(P_A, Y_A) == pytest.approx(0.375)


def test_case_a_ece_by_hand():
    # B=4, edges 0 .25 .5 .75 1. bin 2 [.5,.75): rows 0,1,2, acc 2/3, conf 1.9/3 → (3/4)(.1/3) = .025
    # bin 3 [.75,1]: row 3, acc 0, conf .95 → (1/4)(.95) = .2375
    assert m.ece(P_A, Y_A, bins=4) == pytest.approx(0.025 + 0.2375)
    assert m.ece_signed(P_A, Y_A, bins=4) == pytest.approx(-0.025 + 0.2375)


def test_iou_skips_classes_without_true_samples():
    # 3 classes, no sample has y = 2; class 2 is predicted once (row 1, wrong).
    p = np.array([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.2, 0.7, 0.1]])
    y = np.array([0, 1, 1])
    # class 0: TP1 FP0 FN0 → 1; class 1: TP1 FP0 FN1 → 1/2; class 2 skipped
    assert m.iou(p, y) == pytest.approx(0.75)


def test_top5_counts_strictly_larger_classes():
    p = np.array(
        [
            [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],  # y=4: 4 classes above → in top 5
            [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.05],  # y=5: 5 classes above → out
            [0.16, 0.16, 0.16, 0.16, 0.16, 0.16, 0.04],  # y=5: a tie, nobody strictly above → in
        ]
    )
    assert m.top5(p, np.array([4, 5, 5])) == pytest.approx(2 / 3)


def test_nll_finite_when_true_class_has_zero_probability():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    value = m.nll(p, np.array([1, 0]))
    # (−log(tiny) + log 2) / 2, tiny = 2.2250738585072014e-308
    assert math.isfinite(value)
    assert value == pytest.approx((-math.log(np.finfo(np.float64).tiny) + math.log(2)) / 2)


def test_nan_conventions():
    p = np.array([[0.6, 0.4], [0.3, 0.7]])
    assert math.isnan(m.acc_90(p, np.array([0, 1])))  # no c > .9
    assert math.isnan(m.unc_90(p, np.array([0, 1])))  # no errors
    assert math.isnan(m.misclassification_auroc(p, np.array([0, 1])))  # no wrong predictions
    assert math.isnan(m.misclassification_auroc(p, np.array([1, 0])))  # no correct predictions


def test_ece_standard_confidence_one_and_bin_edges():
    # B=4. row: probs, y, c, correct → standard bin
    #   (1.0, 0.0)  y0  c=1.0  yes → bin 3 (last bin includes 1.0)
    #   (0.5, 0.5)  y1  c=.5   no (tie → class 0) → bin 2 [.5,.75) (lower edge belongs to the bin)
    #   (.25, .75)  y1  c=.75  yes → bin 3 [.75, 1]
    #   (0.9, 0.1)  y1  c=.9   no → bin 3
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75], [0.9, 0.1]])
    y = np.array([0, 1, 1, 1])
    table = m.reliability_bins(p, y, bins=4)
    assert table["count"].tolist() == [0, 0, 1, 3]
    assert table["lower"].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert table["upper"].tolist() == [0.25, 0.5, 0.75, 1.0]
    # bin 3: acc 2/3, conf (1+.75+.9)/3 = 2.65/3
    assert table["accuracy"].iloc[3] == pytest.approx(2 / 3)
    assert table["confidence"].iloc[3] == pytest.approx(2.65 / 3)
    assert table["gap"].iloc[3] == pytest.approx(0.65 / 3)
    assert table[["accuracy", "confidence", "gap"]].iloc[:2].isna().all().all()
    # ECE = (1/4)|0 − .5| + (3/4)(.65/3) = .125 + .1625
    assert m.ece(p, y, bins=4) == pytest.approx(0.2875)
    assert m.ece_signed(p, y, bins=4) == pytest.approx(0.2875)


def paper_ece_loop(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[float, float]:
    """The paper code's ECE / ECSE written out with loops: cm counts over (a, b], confidence sums over
    [a, b), gacc = 0 for empty bins, conf_b = sum / (count + 1e-7), weight = count / (Σ count + 1e-7)."""
    edges = np.linspace(0, 1, n_bins + 1)
    counts, accs, confs = [], [], []
    for a, b in zip(edges, edges[1:]):
        count = hits = 0
        conf_sum = 0.0
        for row, y in zip(probs, labels):
            c = max(row)
            if a < c <= b:
                count += 1
                hits += int(np.argmax(row) == y)
            if a <= c < b:
                conf_sum += c
        counts.append(count)
        accs.append(hits / count if count else 0.0)
        confs.append(conf_sum / (count + 1e-7))
    total = sum(counts) + 1e-7
    ece = sum(n / total * abs(acc - conf) for n, acc, conf in zip(counts, accs, confs))
    ecse = sum(n / total * (conf - acc) for n, acc, conf in zip(counts, accs, confs))
    return ece, ecse


def test_reference_ece_by_hand_with_saturated_confidence():
    # 3 predictions at c = 1.0 and one at .8, all correct. B=4.
    p = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.8, 0.2]])
    y = np.array([0, 1, 0, 0])
    # reference: bin (.75,1] counts 4, acc 1; conf sums over [.75,1) hold only .8 → conf .8/4 = .2
    #   ECE = (4/4)|1 − .2| = .8 (less 1e-7 terms); ECSE = −.8
    assert m.ece(p, y, bins=4, mode="reference") == pytest.approx(0.8, abs=1e-6)
    assert m.ece_signed(p, y, bins=4, mode="reference") == pytest.approx(-0.8, abs=1e-6)
    # standard: bin [.75,1] conf 3.8/4 = .95, acc 1 → .05
    assert m.ece(p, y, bins=4) == pytest.approx(0.05)


@pytest.mark.parametrize("n_bins", [10, 15])
def test_reference_ece_matches_paper_loop_form(n_bins):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(400, 10)) * rng.choice([1.0, 4.0, 40.0], size=(400, 1))
    # float32 softmax, as in the paper's pipeline: large margins saturate to exactly 1.0
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=1).numpy()
    # put a few confidences exactly on the edges 0.5 and 0.6000000000000001 (= linspace(0,1,11)[6])
    probs = probs.astype(np.float64)
    probs[:3] = [0.5, 0.25, 0.25] + [0.0] * 7
    probs[3:5] = [np.linspace(0, 1, 11)[6], 0.3, 0.1 - 1e-16] + [0.0] * 7
    labels = rng.integers(0, 10, 400)
    labels[:20] = probs[:20].argmax(axis=1)
    assert (probs.max(axis=1) == 1.0).sum() > 20
    expected_ece, expected_ecse = paper_ece_loop(probs, labels, n_bins)
    assert m.ece(probs, labels, bins=n_bins, mode="reference") == pytest.approx(expected_ece, rel=1e-12)
    assert m.ece_signed(probs, labels, bins=n_bins, mode="reference") == pytest.approx(expected_ecse, rel=1e-12)
    standard = m.ece(probs, labels, bins=n_bins)
    assert abs(standard - expected_ece) > 0.05  # saturated predictions leave the reference conf sums


def test_ece_standard_matches_torchmetrics():
    probs, labels = random_case(600, 10, 2.0, seed=2)
    conf = probs.max(axis=1)
    scaled = conf * 15
    keep = (conf < 1.0) & (np.abs(scaled - np.round(scaled)) > 1e-4)  # away from edges
    probs, labels = probs[keep], labels[keep]
    expected = multiclass_calibration_error(
        torch.tensor(probs, dtype=torch.float32), torch.tensor(labels), num_classes=10, n_bins=15, norm="l1"
    ).item()
    assert m.ece(probs, labels) == pytest.approx(expected, abs=2e-6)


def test_accuracy_and_nll_match_torch():
    probs, labels = random_case(300, 7, 3.0, seed=3)
    tp, ty = torch.tensor(probs), torch.tensor(labels)
    assert m.accuracy(probs, labels) == pytest.approx(
        multiclass_accuracy(tp, ty, num_classes=7, average="micro").item()
    )
    assert m.nll(probs, labels) == pytest.approx(F.nll_loss(torch.log(tp), ty).item(), rel=1e-12)


def test_torch_float32_inputs_match_numpy():
    probs, labels = random_case(200, 5, 2.0, seed=4)
    p32 = probs.astype(np.float32)
    from_torch = m.summarize(torch.tensor(p32), torch.tensor(labels))
    from_numpy = m.summarize(p32.astype(np.float64), labels)
    assert from_torch == pytest.approx(from_numpy, nan_ok=True)


def test_adaptive_bins_are_equal_mass():
    # 10 binary predictions p = (c, 1−c), label 0 iff correct. B=3 → groups of 4, 3, 3 by confidence.
    conf = np.array([0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99])
    correct = np.array([1, 0, 1, 0, 1, 1, 0, 1, 1, 1], dtype=bool)
    order = np.random.default_rng(5).permutation(10)  # the function must sort
    p = np.stack([conf, 1 - conf], axis=1)[order]
    y = np.where(correct, 0, 1)[order]
    table = m.reliability_bins(p, y, bins=3, mode="adaptive")
    assert table["count"].tolist() == [4, 3, 3]
    assert table["lower"].tolist() == pytest.approx([0.55, 0.75, 0.9])
    assert table["upper"].tolist() == pytest.approx([0.7, 0.85, 0.99])
    # group 1: acc .5, conf .625 → .4 × .125 = .05; group 2: acc 2/3, conf .8 → .3 × (.4/3) = .04
    # group 3: acc 1, conf 2.84/3 → .3 × (.16/3) = .016
    assert m.ece(p, y, bins=3, mode="adaptive") == pytest.approx(0.05 + 0.04 + 0.016)


def test_adaptive_with_fewer_samples_than_bins():
    p = np.array([[0.9, 0.1], [0.3, 0.7]])
    y = np.array([0, 0])
    table = m.reliability_bins(p, y, bins=5, mode="adaptive")
    assert table["count"].tolist() == [1, 1, 0, 0, 0]
    # sorted c: .7 (wrong) → bin 0, .9 (right) → bin 1; ECE = (1/2)|0 − .7| + (1/2)|1 − .9| = .4
    assert m.ece(p, y, bins=5, mode="adaptive") == pytest.approx(0.4)


def test_classwise_ece_by_hand():
    # B=2, edges 0 .5 1; N=2, K=3.
    p = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]])
    y = np.array([0, 2])
    # class 0: .6 → bin 1 with 1[y=0]=1: |1−.6|=.4; .2 → bin 0, 0: .2 → (.4+.2)/2 = .3
    # class 1: .3 → bin 0: .3; .5 (edge) → bin 1: .5 → (.3+.5)/2 = .4
    # class 2: .1 and .3 both bin 0 with indicators 0, 1: |1 − .4| = .6 → .6/2 = .3
    assert m.ece(p, y, bins=2, mode="classwise") == pytest.approx((0.3 + 0.4 + 0.3) / 3)


def test_auroc_matches_brute_force_pairs():
    rng = np.random.default_rng(6)
    probs, labels = random_case(150, 4, 1.5, seed=6)
    probs = np.round(probs, 2)  # create ties in confidence
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.where(rng.random(150) < 0.4, probs.argmax(axis=1), labels)  # about half correct
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == labels
    pos, neg = conf[correct], conf[~correct]
    score = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    assert len(pos) > 10 and len(neg) > 10
    assert m.misclassification_auroc(probs, labels) == pytest.approx(score / (len(pos) * len(neg)))


def test_reliability_bins_reproduce_ece():
    probs, labels = random_case(500, 10, 2.5, seed=7)
    table = m.reliability_bins(probs, labels)
    assert list(table.columns) == ["bin", "lower", "upper", "count", "accuracy", "confidence", "gap"]
    assert table["count"].sum() == 500
    weighted = (table["count"] / 500 * table["gap"].abs()).sum()
    assert weighted == pytest.approx(m.ece(probs, labels))


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        (np.ones(3) / 3, np.array([0]), "shape"),
        (np.empty((0, 3)), np.empty(0, dtype=int), "N >= 1"),
        (np.full((2, 2), 0.5), np.array([0, 1, 0]), "labels must have shape"),
        (np.full((2, 2), 0.5), np.array([0.0, 1.0]), "integers"),
        (np.full((2, 2), 0.5), np.array([0, 2]), r"\[0, 2\)"),
        (np.array([[2.0, -1.0], [0.5, 0.5]]), np.array([0, 1]), "negative or non-finite"),
        (np.array([[np.nan, 0.5], [0.5, 0.5]]), np.array([0, 1]), "negative or non-finite"),
        (np.array([[1.5, 0.5], [0.5, 0.5]]), np.array([0, 1]), "does not sum to 1 \\(logits\\?\\)"),
    ],
)
def test_validation_errors(probs, labels, message):
    with pytest.raises(ValueError, match=message):
        m.accuracy(probs, labels)


def test_row_sum_tolerance():
    y = np.array([0])
    assert m.accuracy(np.array([[0.6, 0.4009]]), y) == 1.0  # off by 9e-4: accepted
    with pytest.raises(ValueError, match="does not sum to 1"):
        m.accuracy(np.array([[0.6, 0.402]]), y)  # off by 2e-3


def test_mode_and_bins_errors():
    with pytest.raises(ValueError, match="standard, reference, adaptive, classwise"):
        m.ece(P_A, Y_A, mode="quantile")
    with pytest.raises(ValueError, match="standard, reference, adaptive"):
        m.ece_signed(P_A, Y_A, mode="classwise")
    with pytest.raises(ValueError, match="standard, reference"):
        m.summarize(P_A, Y_A, ece_mode="adaptive")
    with pytest.raises(ValueError, match="positive integer"):
        m.ece(P_A, Y_A, bins=0)


def test_summarize_keys_and_values():
    probs, labels = random_case(300, 12, 3.0, seed=8)
    result = m.summarize(probs, labels, ece_bins=10, ece_mode="reference")
    assert tuple(result) == schema.ROW_METRICS
    assert all(schema.METRICS[name].meaning for name in result)  # every column has its one home in the schema
    assert all(isinstance(v, float) for v in result.values())
    assert result["acc"] == m.accuracy(probs, labels)
    assert result["ece"] == m.ece(probs, labels, bins=10, mode="reference")
    assert result["ece_signed"] == m.ece_signed(probs, labels, bins=10, mode="reference")
    assert result["ece_adaptive"] == m.ece(probs, labels, bins=10, mode="adaptive")
    assert result["ece_classwise"] == m.ece(probs, labels, bins=10, mode="classwise")
    assert result["auroc_misclf"] == m.misclassification_auroc(probs, labels)
    assert result["iou"] == m.iou(probs, labels)
