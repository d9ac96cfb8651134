"""Consistency metrics on hand-built probability sequences (arithmetic in the comments) and a real model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from smoothbench.consistency import (
    PROB_FLOOR,
    PerturbationMeter,
    cec,
    cec_unscaled,
    flip_probability,
    is_noise_perturbation,
    paper_consistency,
    seed_stability,
    size_consistency,
    top5_distance,
)

# One video, T=4 frames, K=3 classes. argmax per frame: 0, 1, 1, 1.
SEQ = np.array([[[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1]]])


def test_paper_consistency_and_flip_conventions_differ():
    # consecutive pairs (0,1) (1,1) (1,1): 2 of 3 agree
    assert paper_consistency(SEQ) == pytest.approx(2 / 3)
    # non-noise FP: consecutive flips = 1 of 3 = 1 - consistency
    assert flip_probability(SEQ, noise=False) == pytest.approx(1 / 3)
    # noise FP: every frame vs frame 0 (class 0): 1, 1, 1 differ -> 3 of 3
    assert flip_probability(SEQ, noise=True) == pytest.approx(1.0)


def test_cec_divides_by_k_and_unscaled_does_not():
    # cross-entropies of each frame against the previous one
    h1 = -(0.2 * math.log(0.7) + 0.7 * math.log(0.2) + 0.1 * math.log(0.1))
    h2 = -(0.3 * math.log(0.2) + 0.6 * math.log(0.7) + 0.1 * math.log(0.1))
    h3 = -(0.1 * math.log(0.3) + 0.8 * math.log(0.6) + 0.1 * math.log(0.1))
    mean_ce = (h1 + h2 + h3) / 3  # M(T-1) = 3 pairs
    assert cec_unscaled(SEQ) == pytest.approx(mean_ce, rel=1e-12)
    assert cec(SEQ) == pytest.approx(mean_ce / 3, rel=1e-12)  # the paper's extra /K, K = 3


def test_cec_floor_keeps_exact_zeros_finite():
    # frame 1 puts all mass where frame 0 has exactly 0: -1 * log(floor); the 0 * log 0 terms are 0
    p = np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert cec_unscaled(p) == pytest.approx(-math.log(PROB_FLOOR))
    assert np.isfinite(cec(p))


def test_top5_distance_small_k_and_noise_reference():
    # ranks: frame 0 orders classes (0,1,2); frames 1-3 order (1,0,2) (frame 3 ties 0 and 2 at 0.1:
    # lower class index first, like rankdata 'ordinal'). d = sum_j |j - min(sigma_j, 5)|.
    # consecutive: (0->1) sigma = (1,0,2) -> 2; (1->2) and (2->3) identical orders -> 0; mean 2/3
    assert top5_distance(SEQ, noise=False) == pytest.approx(2 / 3)
    # noise: every frame against frame 0 -> 2 each; mean 2
    assert top5_distance(SEQ, noise=True) == pytest.approx(2.0)


def test_top5_distance_class_leaving_top5():
    # K=10; frame 0 ranks classes 0..9; frame 1 drops class 0 to last place.
    p0 = np.linspace(0.19, 0.01, 10)
    p0 /= p0.sum()
    p1 = np.roll(p0, 1)  # class 0 gets the smallest value, class k>0 the value class k-1 had
    p = np.stack([p0, p1])[None]
    # sigma (new 0-based ranks of the old top-5) = (9, 0, 1, 2, 3):
    # |0 - min(9,5)| + |1-0| + |2-1| + |3-2| + |4-3| = 5 + 4 = 9
    assert top5_distance(p, noise=False) == pytest.approx(9.0)
    assert flip_probability(p, noise=False) == 1.0


def test_meter_in_chunks_equals_one_shot():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(10, 0.3), size=(7, 5))  # (M=7, T=5, K=10)
    for noise in (False, True):
        meter = PerturbationMeter(noise)
        for lo, hi in ((0, 3), (3, 4), (4, 7)):
            meter.update(p[lo:hi])
        res = meter.result()
        assert res["n_videos"] == 7 and res["frames"] == 5
        assert res["consistency"] == pytest.approx(paper_consistency(p), rel=1e-12)
        assert res["cec"] == pytest.approx(cec(p), rel=1e-12)
        assert res["cec_unscaled"] == pytest.approx(cec_unscaled(p), rel=1e-12)
        assert res["flip_prob"] == pytest.approx(flip_probability(p, noise), rel=1e-12)
        assert res["top5_dist"] == pytest.approx(top5_distance(p, noise), rel=1e-12)
    with pytest.raises(ValueError, match="frames"):
        meter.update(p[:, :4])
    with pytest.raises(ValueError, match="before any update"):
        PerturbationMeter(False).result()


def test_sequence_validation():
    with pytest.raises(ValueError, match="at least 2 frames"):
        paper_consistency(SEQ[:, :1])
    with pytest.raises(ValueError, match="3 dimensions"):
        cec(SEQ[0])


def test_is_noise_perturbation():
    assert is_noise_perturbation("gaussian_noise") and is_noise_perturbation("speckle_noise")
    assert not is_noise_perturbation("spatter") and not is_noise_perturbation("rotate")


def test_size_consistency_hand_case():
    p1 = np.array([[0.6, 0.4], [0.4, 0.6], [0.9, 0.1], [0.5, 0.5]])  # argmax 0 1 0 0 (tie -> 0)
    p4 = np.array([[0.7, 0.3], [0.7, 0.3], [0.8, 0.2], [0.2, 0.8]])  # argmax 0 0 0 1
    p8 = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])  # argmax 0 0 1 1
    rows = size_consistency({8: p8, 1: p1, 4: p4})  # any key order; rows come ascending
    assert [r["ensemble_size"] for r in rows] == [1, 4, 8]
    r1, r4, r8 = rows
    assert (r1["agreement"], r4["agreement"], r8["agreement"]) == (0.25, 0.75, 1.0)
    assert math.isnan(r1["flip_rate"])
    assert r4["flip_rate"] == 0.5  # vs size 1: rows 1 and 3 change
    assert r8["flip_rate"] == 0.25  # vs size 4: row 2 changes
    # tv rows for size 1: .2 .2 .6 .4 -> .35; size 4: .1 .1 .5 .1 -> .2
    assert r1["tv"] == pytest.approx(0.35) and r4["tv"] == pytest.approx(0.2)
    assert r8["tv"] == 0.0 and r8["kl"] == 0.0
    kl1 = np.mean([sum(a * math.log(a / b) for a, b in zip(pa, pb)) for pa, pb in zip(p8, p1)])
    assert r1["kl"] == pytest.approx(kl1, rel=1e-12)
    with pytest.raises(ValueError, match="same"):
        size_consistency({1: p1, 2: p1[:3]})
    with pytest.raises(ValueError, match="empty"):
        size_consistency({})


def test_seed_stability_hand_case():
    a = np.array([[0.6, 0.4], [0.3, 0.7]])
    b = np.array([[0.4, 0.6], [0.2, 0.8]])
    res = seed_stability(a, b)
    assert res["seed_agreement"] == 0.5  # argmax (0,1) vs (1,1)
    assert res["seed_tv"] == pytest.approx(0.15)  # (0.2 + 0.1) / 2
    assert seed_stability(a, a) == {"seed_agreement": 1.0, "seed_tv": 0.0}


def test_metrics_on_a_real_model_identities():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    model.eval()
    # 5 videos of 6 frames drifting away from a base image along a fixed random direction
    base = torch.rand(5, 1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    direction = torch.randn(5, 1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    drift = torch.linspace(0, 1, 6).view(1, 6, 1, 1, 1) * direction
    with torch.no_grad():
        probs = torch.softmax(model((base + drift).reshape(-1, 3, 16, 16)), -1).reshape(5, 6, 10).numpy()
    meter = PerturbationMeter(noise=False)
    meter.update(probs[:2])
    meter.update(probs[2:])
    res = meter.result()
    assert res["consistency"] == pytest.approx(1 - res["flip_prob"])  # consecutive, non-noise
    assert res["cec_unscaled"] == pytest.approx(10 * res["cec"])
    # Gibbs: cross-entropy H(p_t, p_{t-1}) >= entropy H(p_t), summed over the same pairs
    ent = -np.sum(probs[:, 1:] * np.log(probs[:, 1:])) / (5 * 5)
    assert res["cec_unscaled"] >= ent - 1e-12
    assert 0 <= res["top5_dist"] <= 25  # five terms, each at most 5
