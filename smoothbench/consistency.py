"""Consistency metrics: across MC ensemble sizes and along perturbation sequences (pure numpy).

Two unrelated notions live here.

* **Ensemble-size consistency** (smoothbench extension; neither the paper nor any peer defines it):
  how much the averaged predictive p̄_k of a k-member / k-sample ensemble differs from the largest
  requested one, p̄_Kmax, and from an independent ensemble drawn with another seed.
* **Perturbation consistency** on CIFAR-10-P style sequences, probabilities ``p`` of shape (M, T, K)
  (M videos, T frames in order, K classes): the paper's consistency and CEC (Park & Kim 2022,
  ``ops/tests.py:test_perturbation``) and Hendrycks & Dietterich's flip probability and top-5 distance
  (``ImageNet-P/cifar-p-eval.py``). All are means over the M·(T−1) frame pairs, so they can be
  accumulated chunk by chunk along M with :func:`sequence_sums` / :class:`PerturbationMeter`.

Notation: ŷ_{i,t} = argmax_k p_{i,t,k} (first index on ties, as numpy and torch do).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Floor applied to probabilities inside logarithms (smallest normal float32). The paper's CEC has no
#: floor, so it is inf or NaN exactly where a probability underflowed to 0; the floor only changes
#: those terms (and denormals) and keeps the sums finite.
PROB_FLOOR = float(np.finfo(np.float32).tiny)

_TOP5 = 5


def _check_probs(p: np.ndarray, ndim: int, what: str) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {p.shape}")
    return p


def _safe_log(p: np.ndarray) -> np.ndarray:
    """log(max(p, PROB_FLOOR))."""
    return np.log(np.maximum(p, PROB_FLOOR))


# ----------------------------------------------------------------------------------------------------
# Ensemble-size consistency (smoothbench extension)
# ----------------------------------------------------------------------------------------------------


def _mean_tv(p: np.ndarray, q: np.ndarray) -> float:
    """Mean total variation (1/N) Σ_i ½ Σ_k |p_ik − q_ik|."""
    return float(np.mean(0.5 * np.abs(p - q).sum(axis=-1)))


def _mean_kl(p: np.ndarray, q: np.ndarray) -> float:
    """Mean KL(p ‖ q) = (1/N) Σ_i Σ_k p_ik (log p_ik − log q_ik), logs floored at PROB_FLOOR.

    Terms with p_ik = 0 contribute 0 (0·log 0 = 0); where q_ik underflowed to 0 the floor bounds the
    term by p_ik·(log p_ik − log PROB_FLOOR) instead of returning inf.
    """
    return float(np.mean((p * (_safe_log(p) - _safe_log(q))).sum(axis=-1)))


def size_consistency(probs_by_size: Mapping[int, np.ndarray]) -> list[dict]:
    """Consistency of the averaged predictive across ensemble sizes (smoothbench extension).

    ``probs_by_size`` maps each requested size k to p̄_k (N, K), all on the same N images; Kmax is the
    largest size. Returns one dict per size, ascending, with

    - ``ensemble_size``: k;
    - ``agreement`` = (1/N) Σ_i 1[argmax p̄_k,i = argmax p̄_Kmax,i] (1 at Kmax);
    - ``flip_rate`` = (1/N) Σ_i 1[argmax p̄_k,i ≠ argmax p̄_k',i] with k' the previous requested size
      (NaN for the smallest size);
    - ``tv`` = (1/N) Σ_i ½ Σ_c |p̄_Kmax,ic − p̄_k,ic| (0 at Kmax);
    - ``kl`` = (1/N) Σ_i KL(p̄_Kmax,i ‖ p̄_k,i), logs floored at :data:`PROB_FLOOR` (see ``_mean_kl``).
    """
    if not probs_by_size:
        raise ValueError("probs_by_size is empty: give at least one ensemble size")
    sizes = sorted(int(k) for k in probs_by_size)
    probs = {k: _check_probs(probs_by_size[k], 2, f"probabilities of size {k}") for k in sizes}
    shapes = {p.shape for p in probs.values()}
    if len(shapes) != 1:
        raise ValueError(f"all ensemble sizes must cover the same (N, K), got shapes {sorted(shapes)}")
    ref = probs[sizes[-1]]
    ref_pred = ref.argmax(axis=-1)
    rows: list[dict] = []
    prev_pred: np.ndarray | None = None
    for k in sizes:
        p = probs[k]
        pred = p.argmax(axis=-1)
        rows.append(
            {
                "ensemble_size": k,
                "agreement": float(np.mean(pred == ref_pred)),
                "flip_rate": float("nan") if prev_pred is None else float(np.mean(pred != prev_pred)),
                "tv": _mean_tv(ref, p),
                "kl": _mean_kl(ref, p),
            }
        )
        prev_pred = pred
    return rows


def seed_stability(probs_a: np.ndarray, probs_b: np.ndarray) -> dict:
    """Agreement of two independent same-size ensembles drawn with different seeds (smoothbench extension).

    ``seed_agreement`` = (1/N) Σ_i 1[argmax a_i = argmax b_i];
    ``seed_tv`` = (1/N) Σ_i ½ Σ_c |a_ic − b_ic|.
    """
    a = _check_probs(probs_a, 2, "probs_a")
    b = _check_probs(probs_b, 2, "probs_b")
    if a.shape != b.shape:
        raise ValueError(f"probs_a and probs_b must have the same shape, got {a.shape} and {b.shape}")
    return {
        "seed_agreement": float(np.mean(a.argmax(-1) == b.argmax(-1))),
        "seed_tv": _mean_tv(a, b),
    }


# ----------------------------------------------------------------------------------------------------
# Perturbation sequences
# ----------------------------------------------------------------------------------------------------


def is_noise_perturbation(name: str) -> bool:
    """True for noise perturbations (``"noise" in name``): their frames are compared with frame 0."""
    return "noise" in name


def _top5_rank_distance(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Hendrycks' top-5 distance between the rankings of ``ref`` and ``cur`` (..., K), per pair.

    Rank classes in each frame by decreasing probability, ties by class index (scipy ``rankdata(-p,
    'ordinal')``). For the reference's j-th ranked class (j = 0..4, 0-based) let σ_j be its 0-based
    rank in ``cur``; then d = Σ_{j<5} |j − min(σ_j, 5)|. So d = 0 when the top-5 keeps its order, and
    a top-5 class that falls out of the top 5 counts as rank 5. (cifar-p-eval.py: ``dist(perm2[perm1_inv],
    'top5')`` with ``cum_sum_top5`` = min(rank, 5).) With K < 5 only the K ranked classes count.
    """
    k = ref.shape[-1]
    top = min(_TOP5, k)
    ref_order = np.argsort(-ref, axis=-1, kind="stable")[..., :top]
    cur_order = np.argsort(-cur, axis=-1, kind="stable")
    cur_rank = np.empty_like(cur_order)
    np.put_along_axis(cur_rank, cur_order, np.broadcast_to(np.arange(k), cur_order.shape), axis=-1)
    sigma = np.take_along_axis(cur_rank, ref_order, axis=-1)
    return np.abs(np.arange(top) - np.minimum(sigma, _TOP5)).sum(axis=-1)


def sequence_sums(p: np.ndarray, noise: bool) -> dict:
    """Sums and counts of every perturbation metric for one chunk of videos ``p`` (m, T, K).

    Returned keys (all sums run over the m videos and frames t = 1..T−1, 0-based):

    - ``videos`` = m, ``pairs`` = m·(T−1), ``frames`` = T, ``classes`` = K;
    - ``same`` = Σ 1[ŷ_t = ŷ_{t−1}] (paper consistency numerator);
    - ``cross_entropy`` = Σ_t Σ_k −p_{t,k} log p_{t−1,k} (CEC numerator before /K; floored log);
    - ``flips`` = Σ 1[ŷ_t ≠ ŷ_ref] with ref = frame 0 if ``noise`` else frame t−1 (FP numerator);
    - ``top5`` = Σ d_top5(p_ref, p_t) with the same reference frames (T5D numerator).

    Sums of several chunks add up key by key; :func:`finish_sums` turns them into metrics.
    """
    p = _check_probs(p, 3, "perturbation probabilities (M, T, K)")
    m, t, k = p.shape
    if t < 2:
        raise ValueError(f"a perturbation sequence needs at least 2 frames, got T={t}")
    pred = p.argmax(axis=-1)
    ref = p[:, :1] if noise else p[:, :-1]
    ref_pred = pred[:, :1] if noise else pred[:, :-1]
    return {
        "videos": m,
        "pairs": m * (t - 1),
        "frames": t,
        "classes": k,
        "same": int(np.sum(pred[:, 1:] == pred[:, :-1])),
        "cross_entropy": float(-np.sum(p[:, 1:] * _safe_log(p[:, :-1]))),
        "flips": int(np.sum(pred[:, 1:] != ref_pred)),
        "top5": int(np.sum(_top5_rank_distance(np.broadcast_to(ref, p[:, 1:].shape), p[:, 1:]))),
    }


def finish_sums(sums: dict) -> dict:
    """Metrics from (accumulated) :func:`sequence_sums`.

    - ``consistency`` = same / pairs = (1/(M(T−1))) Σ_i Σ_{t≥2} 1[ŷ_{i,t} = ŷ_{i,t−1}] (paper; all
      perturbation types, noise included, as the paper's code does);
    - ``cec`` = cross_entropy / (pairs·K) = −(1/(M(T−1)K)) Σ_i Σ_t Σ_k p_{i,t,k} log p_{i,t−1,k}.
      **This divides by K, as the paper's code does** (``torch.mean`` over the class axis), so it is
      the mean cross-entropy H(p_t, p_{t−1}) divided by K = 10 on CIFAR;
    - ``cec_unscaled`` = cross_entropy / pairs: the mean cross-entropy itself (no /K);
    - ``flip_probability`` = flips / pairs (Hendrycks' FP; noise vs frame 0, others vs previous frame);
    - ``top5_distance`` = top5 / pairs (Hendrycks' T5D, same reference frames);
    - ``n_videos``, ``frames``.
    """
    pairs, k = sums["pairs"], sums["classes"]
    if pairs == 0:
        nan = float("nan")
        return {"consistency": nan, "cec": nan, "cec_unscaled": nan, "flip_prob": nan,
                "top5_dist": nan, "n_videos": 0, "frames": sums["frames"]}
    return {
        "consistency": sums["same"] / pairs,
        "cec": sums["cross_entropy"] / (pairs * k),
        "cec_unscaled": sums["cross_entropy"] / pairs,
        "flip_prob": sums["flips"] / pairs,
        "top5_dist": sums["top5"] / pairs,
        "n_videos": sums["videos"],
        "frames": sums["frames"],
    }


class PerturbationMeter:
    """Accumulates :func:`sequence_sums` over chunks of videos so memory stays bounded.

    ``update(probs_chunk (m, T, K))`` adds a chunk (every chunk must have the same T and K);
    ``result()`` returns :func:`finish_sums` of everything seen so far. Feeding the videos in any
    chunking gives the same result as the one-shot functions on all of them.
    """

    def __init__(self, noise: bool) -> None:
        self.noise = noise
        self._sums: dict | None = None

    def update(self, probs_chunk: np.ndarray) -> None:
        """Add the videos of ``probs_chunk`` (m, T, K)."""
        chunk = sequence_sums(probs_chunk, self.noise)
        if self._sums is None:
            self._sums = chunk
            return
        for key in ("frames", "classes"):
            if chunk[key] != self._sums[key]:
                raise ValueError(f"chunk has {key}={chunk[key]}, earlier chunks had {self._sums[key]}")
        for key in ("videos", "pairs", "same", "cross_entropy", "flips", "top5"):
            self._sums[key] += chunk[key]

    def result(self) -> dict:
        """The metrics of all videos fed so far (see :func:`finish_sums`)."""
        if self._sums is None:
            raise ValueError("PerturbationMeter.result() called before any update()")
        return finish_sums(self._sums)


def paper_consistency(p: np.ndarray) -> float:
    """Paper consistency (1/(M(T−1))) Σ_i Σ_{t≥2} 1[ŷ_{i,t} = ŷ_{i,t−1}] for probs (M, T, K).

    Consecutive frames for every type, noise included (as the paper's code); for non-noise types it
    equals 1 − :func:`flip_probability`.
    """
    return finish_sums(sequence_sums(p, noise=False))["consistency"]


def cec(p: np.ndarray) -> float:
    """Paper cross-entropy consistency −(1/(M(T−1)K)) Σ_i Σ_t Σ_k p_{i,t,k} log p_{i,t−1,k}.

    **Divided by K like the paper's code** (mean over the class axis); see :func:`cec_unscaled` for
    the plain mean cross-entropy. Logs are floored at :data:`PROB_FLOOR` (the paper's code has no floor).
    """
    return finish_sums(sequence_sums(p, noise=False))["cec"]


def cec_unscaled(p: np.ndarray) -> float:
    """Mean cross-entropy between consecutive frames −(1/(M(T−1))) Σ_i Σ_t Σ_k p_{i,t,k} log p_{i,t−1,k}
    (= K · :func:`cec`)."""
    return finish_sums(sequence_sums(p, noise=False))["cec_unscaled"]


def flip_probability(p: np.ndarray, noise: bool) -> float:
    """Hendrycks' flip probability (1/(M(T−1))) Σ_i Σ_{t≥2} 1[ŷ_{i,t} ≠ ŷ_{i,ref(t)}].

    ref(t) = 1 (the first frame) for noise perturbations, t−1 otherwise (cifar-p-eval.py
    ``flip_prob`` with difficulty 1). CIFAR-10-P reports the raw mean FP; ImageNet's mFR would divide
    by AlexNet's FP, which does not exist for CIFAR.
    """
    return finish_sums(sequence_sums(p, noise))["flip_prob"]


def top5_distance(p: np.ndarray, noise: bool) -> float:
    """Hendrycks' top-5 distance (1/(M(T−1))) Σ_i Σ_{t≥2} d_top5(p_{i,ref(t)}, p_{i,t}).

    Reference frames as in :func:`flip_probability`; d_top5 as in ``_top5_rank_distance``
    (cifar-p-eval.py ``ranking_dist(..., mode='top5')``).
    """
    return finish_sums(sequence_sums(p, noise))["top5_dist"]
