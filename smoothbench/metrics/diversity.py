"""Ensemble diversity of MC-dropout samples or deep-ensemble members, at any ensemble size, from running sums.

An evaluation loop cannot keep every member's prediction (50 MC samples × N × K), so everything here is
computed from per-image sums that grow member by member (:class:`DiversitySums`): S_ik = Σ_m p_mik (member
probabilities), Σ_m H(p_mi) (member entropies) and the argmax votes n_ic = #{m : argmax_k p_mik = c} (ties to
the lowest class), plus the member count M. A copy of the sums at ensemble size M gives that size's values, so
every size comes out of one pass.

Per image i, with p̄_i = S_i / M and H(p) = −Σ_k p_k log p_k in nats (0 log 0 = 0):

- expected entropy (aleatoric part) = (1/M) Σ_m H(p_mi);
- mutual information (epistemic part, BALD) = H(p̄_i) − expected entropy, ≥ 0 (Jensen; clipped at 0
  against rounding);
- disagreement = share of ordered member pairs m ≠ m' whose argmax differ
  = 1 − Σ_c n_ic (n_ic − 1) / (M (M − 1)); NaN for M = 1 (no pairs);
- variation ratio = 1 − max_c n_ic / M.

The dataset values are the means over images. Every function takes a :class:`DiversitySums` or the member
probabilities (M, N, K) themselves, which go through the same sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smoothbench.metrics.classification import per_image_entropy
from smoothbench.metrics.inputs import _to_numpy, as_probabilities


@dataclass
class DiversitySums:
    """Per-image running sums over the M members added so far (see the module docstring)."""

    prob_sum: np.ndarray  # (N, K) S_ik = Σ_m p_mik
    entropy_sum: np.ndarray  # (N,) Σ_m H(p_mi)
    votes: np.ndarray  # (N, K) int64 n_ic
    members: int = 0  # M

    @classmethod
    def zeros(cls, n: int, k: int) -> DiversitySums:
        """Empty sums for N images and K classes (M = 0)."""
        return cls(np.zeros((n, k)), np.zeros(n), np.zeros((n, k), dtype=np.int64))

    def update(self, member_probs: object) -> None:
        """Add one member's probabilities (N, K) (numpy or torch, validated as probabilities)."""
        p = as_probabilities(member_probs)
        if p.shape != self.prob_sum.shape:
            raise ValueError(f"member probabilities must have shape {self.prob_sum.shape}, got {p.shape}")
        self.prob_sum += p
        self.entropy_sum += per_image_entropy(p)
        self.votes[np.arange(p.shape[0]), p.argmax(axis=1)] += 1
        self.members += 1

    def copy(self) -> DiversitySums:
        """An independent snapshot (e.g. at one ensemble size while the loop adds more members)."""
        return DiversitySums(self.prob_sum.copy(), self.entropy_sum.copy(), self.votes.copy(), self.members)

    @classmethod
    def concatenate(cls, parts: Sequence[DiversitySums]) -> DiversitySums:
        """Join the sums of disjoint image sets (batches, process shards) that have the same M."""
        counts = {part.members for part in parts}
        if len(counts) != 1:
            raise ValueError(f"can only concatenate sums over the same number of members, got {sorted(counts)}")
        return cls(np.concatenate([part.prob_sum for part in parts]),
                   np.concatenate([part.entropy_sum for part in parts]),
                   np.concatenate([part.votes for part in parts]), counts.pop())


def diversity_sums(member_probs: object) -> DiversitySums:
    """The sums of member probabilities (M, N, K), added member by member as a loop would."""
    stack = _to_numpy(member_probs, np.float64)
    if stack.ndim != 3 or stack.shape[0] < 1:
        raise ValueError(f"member probabilities must have shape (M, N, K) with M >= 1, got {stack.shape}")
    sums = DiversitySums.zeros(stack.shape[1], stack.shape[2])
    for member in stack:
        sums.update(member)
    return sums


def _as_sums(members: DiversitySums | object) -> DiversitySums:
    if not isinstance(members, DiversitySums):
        return diversity_sums(members)
    if members.members < 1:
        raise ValueError("the diversity sums hold no members yet; update them with at least one member")
    return members


def per_image_expected_entropy(members: DiversitySums | object) -> np.ndarray:
    """(1/M) Σ_m H(p_mi) per image, nats: the aleatoric part of the predictive entropy."""
    sums = _as_sums(members)
    return sums.entropy_sum / sums.members


def per_image_mutual_information(members: DiversitySums | object) -> np.ndarray:
    """H(p̄_i) − (1/M) Σ_m H(p_mi) per image, nats, clipped at 0: the epistemic part (0 for M = 1)."""
    sums = _as_sums(members)
    if sums.members == 1:  # exactly 0: the difference of two rounded sums would be noise around it
        return np.zeros(len(sums.entropy_sum))
    mean = sums.prob_sum / sums.members
    return np.maximum(per_image_entropy(mean) - per_image_expected_entropy(sums), 0.0)


def per_image_disagreement(members: DiversitySums | object) -> np.ndarray:
    """1 − Σ_c n_ic (n_ic − 1) / (M (M − 1)) per image: the share of member pairs whose argmax differ.

    NaN for M = 1 (no pairs).
    """
    sums = _as_sums(members)
    m = sums.members
    if m == 1:
        return np.full(len(sums.entropy_sum), np.nan)
    agreeing_pairs = (sums.votes * (sums.votes - 1)).sum(axis=1)
    return 1.0 - agreeing_pairs / (m * (m - 1))


def per_image_variation_ratio(members: DiversitySums | object) -> np.ndarray:
    """1 − max_c n_ic / M per image: the share of members that do not vote for the majority class."""
    sums = _as_sums(members)
    return 1.0 - sums.votes.max(axis=1) / sums.members


def expected_entropy(members: DiversitySums | object) -> float:
    """Mean over images of :func:`per_image_expected_entropy` (nats)."""
    return float(per_image_expected_entropy(members).mean())


def mutual_information(members: DiversitySums | object) -> float:
    """Mean over images of :func:`per_image_mutual_information` (nats)."""
    return float(per_image_mutual_information(members).mean())


def disagreement(members: DiversitySums | object) -> float:
    """Mean over images of :func:`per_image_disagreement`; NaN for a one-member ensemble."""
    return float(per_image_disagreement(members).mean())


def variation_ratio(members: DiversitySums | object) -> float:
    """Mean over images of :func:`per_image_variation_ratio`."""
    return float(per_image_variation_ratio(members).mean())


def diversity_summary(members: DiversitySums | object) -> dict[str, float]:
    """The four diversity columns of :data:`smoothbench.schema.METRICS`, by column name."""
    sums = _as_sums(members)
    return {
        "mutual_information": mutual_information(sums),
        "expected_entropy": expected_entropy(sums),
        "disagreement": disagreement(sums),
        "variation_ratio": variation_ratio(sums),
    }
