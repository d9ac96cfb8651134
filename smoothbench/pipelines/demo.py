"""``run_demo``: train → eval → corrupt → consistency → leaderboard on the embedded synthetic data.

Four narrow ResNet-18s (deterministic and MC dropout, each with and without spatial smoothing) are trained
on the synthetic dataset on the CPU, then evaluated at several ensemble sizes, swept over generated
corruptions, checked for consistency across ensemble sizes, and ranked, through the same library calls as
the commands. Everything goes to ``out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from smoothbench.evaluation.corruption_cells import CorruptionSweep
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.fileio import check_writable_folder
from smoothbench.models.spec import ModelSpec
from smoothbench.pipelines.consistency import ConsistencyRequest, run_consistency
from smoothbench.pipelines.corrupt import SweepRequest, run_corruption_sweep
from smoothbench.pipelines.eval import EvalRequest, run_eval
from smoothbench.pipelines.leaderboard import LeaderboardRequest, run_leaderboard
from smoothbench.progress import Progress
from smoothbench.training import TrainConfig, run_training

DEMO_MODELS = [("dnn", "none"), ("dnn", "tanh-blur"), ("mcdo", "none"), ("mcdo", "tanh-blur")]


@dataclass
class DemoSettings:
    """Sizes chosen so that the whole demo runs in a few minutes on two CPU cores (README: measured time)."""

    out: Path = Path("demo_runs")
    width: int = 8
    epochs: int = 5
    train_subset: int | None = None
    eval_subset: int = 400
    ensembles: tuple[int, ...] = (1, 5, 20)
    corruptions: tuple[str, ...] = ("gaussian_noise", "defocus_blur", "contrast", "jpeg_compression")
    severities: tuple[int, ...] = (1, 3, 5)
    corrupt_subset: int = 200
    seed: int = 0
    force: bool = False


@dataclass
class DemoResult:
    train: pd.DataFrame
    eval: pd.DataFrame
    corrupt_summary: pd.DataFrame
    consistency: pd.DataFrame
    leaderboard: str
    files: dict[str, Path] = field(default_factory=dict)


def run_demo(settings: DemoSettings, *, progress: Progress | None = None) -> DemoResult:
    """Run the whole pipeline (a finished model is reused unless ``force``); ``progress`` sees every phase."""
    out = Path(settings.out)
    check_writable_folder(out)
    files = {"eval": out / "eval.csv", "corrupt": out / "corrupt.csv", "corrupt_summary": out / "corrupt_summary.csv",
             "consistency": out / "consistency.csv", "leaderboard": out / "leaderboard.md"}
    train_rows, evals, summaries, consistency = [], [], [], []
    for method, smoothing in DEMO_MODELS:
        run_dir = out / "runs" / f"resnet18w{settings.width}-{method}-{smoothing}"
        if not (run_dir / "model.pt").exists() or settings.force:
            spec = ModelSpec("resnet18", method=method, smoothing=smoothing, width=settings.width)
            trained = run_training(TrainConfig(model=spec, dataset="synthetic", epochs=settings.epochs,
                                               subset=settings.train_subset, eval_subset=settings.eval_subset,
                                               seed=settings.seed, device="cpu", out=str(run_dir),
                                               force=settings.force), progress=progress)
            train_rows.append({"model": run_dir.name, "method": method, "smoothing": smoothing,
                               "test_acc": trained.test_acc, "test_nll": trained.test_nll, "seconds": trained.seconds})
        sizes = list(settings.ensembles) if method == "mcdo" else [1]
        eval_settings = EvalSettings(ensembles=sizes, seed=settings.seed, subset=settings.eval_subset, device="cpu")
        evals.append(run_eval(EvalRequest([run_dir], eval_settings, out=files["eval"]), progress=progress).rows)
        sweep = CorruptionSweep(dataset="synthetic-c", generate=True, corruptions=list(settings.corruptions),
                                severities=list(settings.severities))
        sweep_settings = eval_settings.with_(ensembles=sizes[:2], subset=settings.corrupt_subset)
        swept = run_corruption_sweep(SweepRequest([run_dir], sweep, sweep_settings, out=files["corrupt"],
                                                  summary_out=files["corrupt_summary"]), progress=progress)
        summaries.append(swept.summary)
        if method == "mcdo":
            request = ConsistencyRequest([run_dir], eval_settings, out=files["consistency"])
            consistency.append(run_consistency(request, progress=progress).rows)
    board = run_leaderboard(LeaderboardRequest([files["eval"], files["corrupt"], files["consistency"]], sort="nll",
                                               out=files["leaderboard"]))
    return DemoResult(pd.DataFrame(train_rows), pd.concat(evals, ignore_index=True),
                      pd.concat(summaries, ignore_index=True), pd.concat(consistency, ignore_index=True),
                      board.text, files)
