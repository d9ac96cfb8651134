"""Scoring: predictions → metric rows with size columns and provenance."""

from __future__ import annotations

import numpy as np

from smoothbench.evaluation.ensembles import EnsemblePredictions
from smoothbench.evaluation.scoring import score, size_columns
from smoothbench.evaluation.settings import EvalSettings


def test_size_columns_of_scored_rows_match_the_sweep_keys():
    """score() and the sweeps' done-cell keys take their size columns from one rule (hand-written here)."""
    labels = np.array([0, 1])
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    settings = EvalSettings(ensembles=[1, 2])
    one_model = EnsemblePredictions([1, 4], {1: probs, 4: probs}, labels, members=1, mc_samples=4)
    deep = EnsemblePredictions([1, 2], {1: probs, 2: probs}, labels, members=2, mc_samples=1)
    columns = ["ensemble_size", "members", "mc_samples"]
    assert [[r[c] for c in columns] for r in score(one_model, settings)] == [[1, 1, 1], [4, 1, 4]]
    assert [[r[c] for c in columns] for r in score(deep, settings)] == [[1, 1, 1], [2, 2, 1]]
    assert [[r[c] for c in columns] for r in size_columns([1, 2], 2, None)] == [[1, 1, 1], [2, 2, 1]]
    assert [[r[c] for c in columns] for r in size_columns([1, 2], 3, 5)] == [[1, 1, 5], [2, 2, 5]]
