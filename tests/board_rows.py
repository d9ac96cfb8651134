"""Hand-made result rows for the leaderboard tests."""

from __future__ import annotations

PROVENANCE = {"split": "test", "members": 1, "mc_samples": 1, "subset": "", "n_images": 1000,
              "data_fingerprint": "f00d", "ece_mode": "standard", "ece_bins": 15, "smoothbench_version": "0.1.0",
              "seed": 0}


def eval_row(model: str, arch: str, sha: str, acc: float, nll: float, ece: float = 0.05, **extra) -> dict:
    return {"model": model, "arch": arch, "method": "dnn", "smoothing": "none", "blur": "box2-pad1", "tau": 10.0,
            "dropout_rate": 0.0, "checkpoint_sha256": sha, "dataset": "cifar10", "ensemble_size": 1, "acc": acc,
            "nll": nll, "ece": ece, "ece_signed": extra.pop("ece_signed", ece), "brier": 2 * nll / 10,
            **PROVENANCE, **extra}


def corruption_rows(row: dict, accs: tuple[float, float]) -> list[dict]:
    """A clean cell and fog severities 1, 2 with the given accuracies (released CIFAR-10-C)."""
    base = {k: v for k, v in row.items() if k not in ("acc", "nll", "ece", "ece_signed", "brier")}
    base = base | {"corruption_params": "cifar"}
    cells = [base | {"dataset": "cifar10-c", "corruption": "clean", "severity": 0, "source": "clean",
                     "acc": row["acc"], "nll": row["nll"], "ece": row["ece"]}]
    for severity, acc in enumerate(accs, start=1):
        cells.append(base | {"dataset": "cifar10-c", "corruption": "fog", "severity": severity, "source": "released",
                             "acc": acc, "nll": 1.0, "ece": 0.1, "data_fingerprint": f"fog{severity}"})
    return cells


THREE = [eval_row("alpha", "resnet18", "a1", acc=0.90, nll=0.40, ece=0.06, ece_signed=-0.06),
         eval_row("beta", "vgg16", "b1", acc=0.93, nll=0.30, ece=0.04, ece_signed=0.05),
         eval_row("gamma", "alexnet", "c1", acc=0.80, nll=0.70, ece=0.02, ece_signed=-0.01)]
