"""Hand-made corruption rows and a hand-made baseline shared by the results tests (expected numbers are
derived by hand in those tests)."""

from __future__ import annotations

import pandas as pd


def corruption_rows(model: str, clean: dict, cells: dict, **extra) -> list[dict]:
    """Corruption rows: ``cells[(corruption, severity)] = (acc, nll, ece)``; ``clean = {acc, nll, ece}``."""
    common = {"model": model, "checkpoint_sha256": model * 4, "dataset": "cifar100-c", "ensemble_size": 1, **extra}
    rows = [{**common, "corruption": "clean", "severity": 0, "source": "clean", **clean}]
    for (corruption, severity), (acc, nll, ece) in cells.items():
        rows.append({**common, "corruption": corruption, "severity": severity, "source": "released", "acc": acc,
                     "nll": nll, "ece": ece, "data_fingerprint": f"{corruption}{severity}"})
    return rows


MODEL = corruption_rows("m", {"acc": 0.9, "nll": 0.4, "ece": 0.03},
               {("fog", 1): (0.8, 0.5, 0.05), ("fog", 2): (0.6, 1.0, 0.10),
                ("snow", 1): (0.7, 0.8, 0.08), ("snow", 2): (0.5, 1.2, 0.16)})
BASELINE = pd.DataFrame([
    {"corruption": "clean", "severity": 0, "acc": 0.65, "nll": 1.5, "ece": 0.1},
    {"corruption": "fog", "severity": 1, "acc": 0.5, "nll": 2.0, "ece": 0.2},
    {"corruption": "fog", "severity": 2, "acc": 0.3, "nll": 3.0, "ece": 0.3},
    {"corruption": "snow", "severity": 1, "acc": 0.4, "nll": 2.5, "ece": 0.25},
    {"corruption": "snow", "severity": 2, "acc": 0.2, "nll": 3.5, "ece": 0.35},
]).assign(baseline_name="hand")
