"""Which rows ``subset=N`` keeps: stratified for training, the first N for evaluation."""

from __future__ import annotations

import numpy as np

from smoothbench.errors import UserError, param


def check_subset(n: int, total: int, what: str) -> None:
    """UserError unless ``1 <= n <= total``."""
    if n < 1 or n > total:
        raise UserError(f"{param('subset')} {n} is out of range: {what} has {total} images; use 1..{total}")


def first_indices(total: int, n: int, what: str) -> np.ndarray:
    """``[0, n)``: the evaluation subset (the first ``n`` images, in order)."""
    check_subset(n, total, what)
    return np.arange(n, dtype=np.int64)


def stratified_indices(labels: np.ndarray, n: int, num_classes: int, seed: int, what: str) -> np.ndarray:
    """Sorted positions of a class-balanced random sample of ``n`` rows.

    Every class gets ``n // K`` rows; the remaining ``n mod K`` rows go one each to the first classes
    (by class index). Rows of a class are drawn without replacement by ``numpy.random.default_rng(seed)``;
    the result is sorted, so the original order is kept.
    """
    labels = np.asarray(labels)
    check_subset(n, len(labels), what)
    base, extra = divmod(n, num_classes)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in range(num_classes):
        rows = np.flatnonzero(labels == cls)
        want = base + (1 if cls < extra else 0)
        if want > len(rows):
            raise UserError(
                f"{param('subset')} {n} needs {want} images of class {cls} but {what} has only {len(rows)}; use a smaller "
                f"{param('subset')}"
            )
        chosen.append(rng.choice(rows, size=want, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)
