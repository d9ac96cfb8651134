"""Consistency rows: how stable predictions are across ensemble sizes and along CIFAR-10-P sequences."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Callable, Sequence

import numpy as np

from smoothbench.consistency import PerturbationMeter, is_noise_perturbation, seed_stability, size_consistency
from smoothbench.errors import UserError, param
from smoothbench.evaluation.ensembles import announce_long_run
from smoothbench.evaluation.members import Members
from smoothbench.evaluation.scoring import Row, predict_with, provenance, size_columns
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.progress import Progress


def size_consistency_rows(members: Members, source, settings: EvalSettings, *,
                          progress: Progress | None = None) -> list[Row]:
    """How much the prediction still moves as ensemble members are added (a smoothbench extension).

    One pass draws every requested size (running sums, as eval); a second, independent draw gives seed
    stability: for MC dropout the same sizes with seed ``seed + 1``; for a deep ensemble the members in a
    seeded random order (so "size k" is another random subset of k members).
    """
    first = predict_with(settings, members.models, source, progress=progress)
    if len(members.models) > 1:
        order = np.random.default_rng(settings.seed).permutation(len(members.models))
        others, other_seed = [members.models[i] for i in order], settings.seed
    else:
        others, other_seed = members.models, settings.seed + 1
    second = predict_with(settings, others, source, seed=other_seed, progress=progress)
    head = {**members.columns(), "dataset": members.spec.dataset, "split": "test", "kind": "mc-size",
            "perturbation": ""}
    tail = provenance(settings, source, members)
    rows = []
    columns = size_columns(settings.ensembles, len(members.models), settings.mc_samples)
    for size_cols, stats in zip(columns, size_consistency(first.probs)):
        k = size_cols["ensemble_size"]
        stability = seed_stability(first.probs[k], second.probs[k])
        stats = {key: value for key, value in stats.items() if key != "ensemble_size"}
        rows.append({**head, **size_cols, "accuracy": float((first.probs[k].argmax(1) == first.labels).mean()),
                     **stats, **stability, **tail})
    return rows


def perturbation_rows(
    members: Members,
    frames_of: Callable[[str], np.ndarray],
    perturbations: Sequence[str],
    settings: EvalSettings,
    *,
    source_kind: str,
    positions: Sequence[int] | np.ndarray | None = None,
    chunk_sequences: int = 256,
    progress: Progress | None = None,
) -> list[Row]:
    """CIFAR-10-P consistency per perturbation and ensemble size (paper consistency, CEC, Hendrycks FP/T5D).

    ``frames_of(name)`` returns uint8 sequences ``(N, T, 32, 32, 3)`` (released memory map or generated);
    ``positions`` keeps those sequences, in that order (``None``: all; a released set follows the clean test
    order, so the positions of a test subset pick its images). Sequences are fed in chunks of
    ``chunk_sequences`` so memory stays bounded. MC masks are keyed by the global frame index ``i·T + t``
    (``i`` counting the sequences used), so each frame gets its own masks.
    """
    from smoothbench.data import ResidentImages

    head = {**members.columns(), "dataset": "cifar10-p", "split": "test", "kind": "perturbation"}
    rows = []
    pace_start, announced = time.perf_counter(), False
    for position, name in enumerate(perturbations):
        sequences = frames_of(name)
        n, t = sequences.shape[:2]
        if positions is not None:
            order = np.asarray(positions, dtype=np.int64)
            if len(order) and (order.min() < 0 or order.max() >= n):
                raise UserError(f"the {name} sequences number {n}, fewer than the clean test images they should "
                                f"follow (position {int(order.max())} asked for): use the complete CIFAR-10-P "
                                f"release, or {param('generate')} the sequences")
            n = len(order)
        meters = {k: PerturbationMeter(noise=is_noise_perturbation(name)) for k in settings.ensembles}
        digest = hashlib.sha256(f"{name}:{n}x{t}".encode())
        for start in range(0, n, chunk_sequences):
            stop = min(start + chunk_sequences, n)
            rows_used = sequences[start:stop] if positions is None else sequences[order[start:stop]]
            chunk = np.ascontiguousarray(rows_used).reshape(-1, *sequences.shape[2:])
            labels = np.zeros(len(chunk), dtype=np.int64)  # CIFAR-10-P has no labels; consistency needs none
            source = ResidentImages.from_numpy(f"cifar10-p/{name}", "test", chunk, labels,
                                               [str(i) for i in range(members.spec.num_classes)], source=source_kind)
            predictions = predict_with(settings, members.models, source, index_offset=start * t, announce=False)
            if not announced:  # the first chunk tells the pace of the rest
                chunks = math.ceil(n / chunk_sequences) * (len(perturbations) - position)
                announce_long_run((time.perf_counter() - pace_start) * chunks, predictions.sample_forwards * chunks,
                                  len(source) * chunks)
                announced = True
            for k in settings.ensembles:
                meters[k].update(predictions.probs[k].reshape(stop - start, t, -1))
            digest.update(chunk.tobytes())
            if progress is not None:
                progress.advance(stop - start, name)
        tail = provenance(settings, source, members)
        tail.update({"n_images": n, "data_fingerprint": digest.hexdigest()[:16], "source": source_kind})
        for size_cols in size_columns(settings.ensembles, len(members.models), settings.mc_samples):
            rows.append({**head, "perturbation": name, **size_cols,
                         **meters[size_cols["ensemble_size"]].result(), **tail})
    return rows
