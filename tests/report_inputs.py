"""Result files for the report tests, written by the library's own writers (``results.store.write_rows``) the
way ``eval``, ``corrupt``, ``consistency`` and ``eval --plot`` write them, with made-up but plausible numbers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from smoothbench.results.store import write_rows
from smoothbench.schema import CONSISTENCY_ROW_KEY, CORRUPTION_ROW_KEY, EVAL_ROW_KEY

PROVENANCE = {"split": "test", "subset": "", "ece_mode": "standard", "ece_bins": 15, "smoothbench_version": "0.1.0",
              "seed": 0, "precision": "fp32", "normalization": "0.4914,0.4822,0.4465,0.247,0.2435,0.2616"}


@dataclass
class Written:
    """The files written and what a report of them must show."""

    folder: Path
    eval: Path
    corrupt: Path
    consistency: Path
    models: list[str] = field(default_factory=list)
    reliability: list[Path] = field(default_factory=list)

    def rows(self) -> int:
        return sum(len(pd.read_csv(p)) for p in (self.eval, self.corrupt, self.consistency))


def model(arch: str, method: str, smoothing: str, name: str | None = None) -> dict:
    """The model columns of a row (the run folder's name is the model name)."""
    return {"model": name or f"{arch}-{method}-{smoothing}", "arch": arch, "method": method, "smoothing": smoothing,
            "blur": "box2-pad1", "tau": 10.0, "dropout_rate": 0.3 if method == "mcdo" else 0.0, "width": 16,
            "checkpoint_sha256": hashlib.sha256(f"{arch}/{method}/{smoothing}/{name}".encode()).hexdigest()}


def _metrics(rng: np.random.Generator, acc: float) -> dict:
    nll = float(2.3 * (1 - acc) + rng.uniform(0, 0.05))
    ece = float(rng.uniform(0.01, 0.08))
    return {"acc": acc, "top5": min(1.0, acc + 0.08), "nll": nll, "brier": float(1.4 * (1 - acc)), "ece": ece,
            "ece_signed": -ece / 2, "entropy": float(0.5 + rng.uniform(0, 0.2))}


def write_results(folder: Path, *, archs: tuple[str, ...] = ("resnet18",), datasets: tuple[str, ...] = ("cifar10",),
                  sizes: tuple[int, ...] = (1, 5, 20), corruptions: tuple[str, ...] = ("fog", "contrast"),
                  severities: tuple[int, ...] = (1, 3, 5), corrupt_sizes: tuple[int, ...] = (1, 5),
                  names: dict[tuple[str, str, str], str] | None = None, n_images: int = 1000,
                  extra: dict | None = None) -> Written:
    """Eval rows per dataset, corruption cells on ``<first dataset>-c``, mc-size consistency rows and one
    reliability table per (model, dataset, size): every arch × dnn/mcdo × none/tanh-blur; a deterministic
    model is measured at size 1 only. ``names`` renames models; ``extra`` is added to every row."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    written = Written(folder, folder / "eval.csv", folder / "corrupt.csv", folder / "consistency.csv")
    evals, cells, consistency = [], [], []
    common = dict(PROVENANCE, **(extra or {}))
    for arch in archs:
        for method in ("dnn", "mcdo"):
            for smoothing in ("none", "tanh-blur"):
                columns = model(arch, method, smoothing, (names or {}).get((arch, method, smoothing)))
                written.models.append(columns["model"])
                mine = sizes if method == "mcdo" else (1,)
                base = 0.80 + (0.03 if smoothing != "none" else 0) + rng.uniform(0, 0.05)
                for dataset in datasets:
                    for size in mine:
                        acc = round(min(0.99, base + 0.02 * np.log(size)), 4)
                        evals.append({**columns, "dataset": dataset, "ensemble_size": size, "members": 1,
                                      "mc_samples": size, **_metrics(rng, acc), **common, "n_images": n_images,
                                      "data_fingerprint": f"fp-{dataset}"})
                        if "/" not in columns["model"]:  # eval names the file after the model (a run folder)
                            _write_bins(folder / "plots" / f"{columns['model']}_{dataset}_test_n{size}_reliability.csv",
                                        rng, written)
                for size in [s for s in corrupt_sizes if s in mine]:
                    cell = {**columns, "dataset": f"{datasets[0]}-c", "ensemble_size": size, "members": 1,
                            "mc_samples": size, **common, "n_images": n_images, "corruption_params": "cifar"}
                    cells.append({**cell, "corruption": "clean", "severity": 0, "source": "clean",
                                  **_metrics(rng, round(base, 4)), "data_fingerprint": "fp-clean"})
                    for corruption in corruptions:
                        for severity in severities:
                            acc = round(base - 0.07 * severity * rng.uniform(0.5, 1.5), 4)
                            cells.append({**cell, "corruption": corruption, "severity": severity, "source": "generated",
                                          "corruption_seed": 0, **_metrics(rng, acc),
                                          "data_fingerprint": f"fp-{corruption}-{severity}"})
                if method == "mcdo":
                    for size in sizes:
                        consistency.append({**columns, "dataset": datasets[0], "kind": "mc-size", "ensemble_size": size,
                                            "members": 1, "mc_samples": size, "accuracy": base,
                                            "agreement": min(1.0, 0.7 + 0.3 * size / max(sizes)),
                                            "tv": 0.1 / size, **common, "n_images": n_images,
                                            "data_fingerprint": f"fp-{datasets[0]}"})
    write_rows(written.eval, evals, key_columns=EVAL_ROW_KEY)
    write_rows(written.corrupt, cells, key_columns=CORRUPTION_ROW_KEY)
    write_rows(written.consistency, consistency, key_columns=CONSISTENCY_ROW_KEY)
    return written


def _write_bins(path: Path, rng: np.random.Generator, written: Written, bins: int = 15) -> None:
    """A reliability table as ``eval --plot`` writes it (``metrics.reliability_bins`` columns)."""
    edges = np.linspace(0, 1, bins + 1)
    count = rng.integers(0, 60, bins) * (edges[1:] > 0.3)
    confidence = (edges[:-1] + edges[1:]) / 2
    accuracy = np.clip(confidence - rng.uniform(-0.05, 0.15, bins), 0, 1)
    table = pd.DataFrame({"bin": np.arange(bins), "lower": edges[:-1], "upper": edges[1:], "count": count,
                          "accuracy": np.where(count > 0, accuracy, np.nan),
                          "confidence": np.where(count > 0, confidence, np.nan)})
    table["gap"] = table["confidence"] - table["accuracy"]
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    written.reliability.append(path)
