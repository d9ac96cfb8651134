"""``run_demo``: train → eval → corrupt → consistency → OOD → leaderboard → report on the embedded synthetic data.

Four narrow ResNet-18s (deterministic and MC dropout, each with and without spatial smoothing) are trained
on the synthetic dataset on the CPU, then evaluated at several ensemble sizes (with a temperature fitted on
the last ``calibration_split`` training images, which training holds out, so rows carry raw and calibrated
ECE), swept over generated corruptions, checked for consistency across ensemble sizes, scored against
generated uniform noise as an OOD set, ranked, and gathered in one HTML report, through the same library
calls as the commands. Everything goes to ``out``. Nets this small, trained this briefly,
show that the pipeline works, not the paper's effect; :func:`demo_note` says so at the top of the report.
"""

from __future__ import annotations

import json
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
from smoothbench.pipelines.ood import OodRequest, run_ood
from smoothbench.pipelines.report import ReportRequest, run_report
from smoothbench.progress import Progress
from smoothbench.results.store import read_table, row_key
from smoothbench.training import TrainConfig, run_training

DEMO_MODELS = [("dnn", "none"), ("dnn", "tanh-blur"), ("mcdo", "none"), ("mcdo", "tanh-blur")]
#: The demo's OOD set: seeded uniform-noise images, generated in memory (no download).
DEMO_OOD_SET = "noise"


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
    calibration_split: int = 500
    seed: int = 0
    force: bool = False


def demo_note(settings: DemoSettings) -> str:
    """What the demo's numbers can and cannot show (the first thing its report says)."""
    return (f"This is smoothbench's demo: four ResNet-18s only {settings.width} channels wide, trained for "
            f"{settings.epochs} epochs on smoothbench's small synthetic dataset and evaluated on "
            f"{settings.eval_subset} test images. It shows that the pipeline works end to end (training, evaluation "
            "at several ensemble sizes, temperature scaling, a corruption sweep, consistency, OOD detection of "
            "generated noise, this report). It cannot show the paper's "
            "effect: a difference between the smoothed and plain deterministic nets means little unless it exceeds "
            "the sampling error stated below (in our runs it did not), and a gap between the two MC-dropout models "
            "reflects how dropout 0.3 hurts nets this narrow after this little training, not the paper's "
            "mechanism. To test the paper's claims, train full-width models on CIFAR-10/100 with the paper's "
            "recipe (smoothbench train's defaults).")


@dataclass
class DemoResult:
    """The tables of one demo: ``eval`` rows carry raw (``ece``, ``nll``) and temperature-scaled (``ece_ts``,
    ``nll_ts``, ``temperature``) columns; ``ood`` holds the rows against :data:`DEMO_OOD_SET`, every default
    score at every demo size (read back from ``files["ood"]``, so a rerun that found them done has them too)."""

    train: pd.DataFrame
    eval: pd.DataFrame
    corrupt_summary: pd.DataFrame
    consistency: pd.DataFrame
    leaderboard: str
    files: dict[str, Path] = field(default_factory=dict)
    ood: pd.DataFrame = field(default_factory=pd.DataFrame)

    def calibration(self) -> pd.DataFrame:
        """Raw against temperature-scaled ECE and NLL, per model and ensemble size."""
        return self.eval[["model", "ensemble_size", "ece", "ece_ts", "nll", "nll_ts", "temperature"]]

    def ood_auroc(self, score: str = "msp") -> pd.DataFrame:
        """The AUROC of ``score`` separating the test images from the OOD set, per model and ensemble size."""
        return self.ood.loc[self.ood["score"] == score, ["model", "ensemble_size", "ood_set", "score", "auroc_ood"]]


def _reusable(run_dir: Path, settings: DemoSettings) -> bool:
    """A finished run of this demo that held out the calibration images (an older demo's, trained on every
    training image, is not: its temperature would come out too low)."""
    if settings.force or not (run_dir / "model.pt").exists():
        return False
    try:
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    trained = config.get("settings") if isinstance(config, dict) else None
    return isinstance(trained, dict) and trained.get("holdout") == settings.calibration_split


def _ood_rows(path: Path, evaluated: pd.DataFrame, settings: EvalSettings) -> pd.DataFrame:
    """The rows of ``path`` for the checkpoint just evaluated (``evaluated``: its eval rows) at this demo's
    sizes, subset and seed, uncalibrated, against :data:`DEMO_OOD_SET` (rows from other runs are left out)."""
    table = read_table(path)
    first = evaluated.iloc[0]
    wanted = {"model": first["model"], "checkpoint_sha256": first["checkpoint_sha256"], "ood_set": DEMO_OOD_SET,
              "subset": settings.subset, "seed": settings.seed, "calibration": ""}
    key = row_key(wanted, list(wanted))
    mine = [row_key(record, list(wanted)) == key for record in table.to_dict("records")]
    sizes = pd.to_numeric(table["ensemble_size"], errors="coerce").isin(list(settings.ensembles))
    return table[pd.Series(mine, index=table.index) & sizes].reset_index(drop=True)


def run_demo(settings: DemoSettings, *, progress: Progress | None = None) -> DemoResult:
    """Run the whole pipeline (a finished model is reused unless ``force``); ``progress`` sees every phase."""
    out = Path(settings.out)
    check_writable_folder(out)
    files = {"eval": out / "eval.csv", "corrupt": out / "corrupt.csv", "corrupt_summary": out / "corrupt_summary.csv",
             "consistency": out / "consistency.csv", "ood": out / "ood.csv", "leaderboard": out / "leaderboard.md",
             "reliability": out / "reliability", "report": out / "report.html"}
    train_rows, evals, summaries, consistency, oods = [], [], [], [], []
    for method, smoothing in DEMO_MODELS:
        run_dir = out / "runs" / f"resnet18w{settings.width}-{method}-{smoothing}"
        if not _reusable(run_dir, settings):
            spec = ModelSpec("resnet18", method=method, smoothing=smoothing, width=settings.width)
            trained = run_training(TrainConfig(model=spec, dataset="synthetic", epochs=settings.epochs,
                                               subset=settings.train_subset, holdout=settings.calibration_split,
                                               eval_subset=settings.eval_subset, seed=settings.seed, device="cpu",
                                               out=str(run_dir), force=(run_dir / "model.pt").exists()),
                                   progress=progress)
            train_rows.append({"model": run_dir.name, "method": method, "smoothing": smoothing,
                               "test_acc": trained.test_acc, "test_nll": trained.test_nll, "seconds": trained.seconds})
        sizes = list(settings.ensembles) if method == "mcdo" else [1]
        eval_settings = EvalSettings(ensembles=sizes, seed=settings.seed, subset=settings.eval_subset, device="cpu")
        calibrated = eval_settings.with_(calibrate="temperature", calibration_split=settings.calibration_split)
        evaluated = run_eval(EvalRequest([run_dir], calibrated, out=files["eval"], plot=files["reliability"]),
                             progress=progress).rows
        evals.append(evaluated)
        sweep = CorruptionSweep(dataset="synthetic-c", generate=True, corruptions=list(settings.corruptions),
                                severities=list(settings.severities))
        # calibrated as the clean rows are, so the leaderboard ranks clean and corrupted metrics in one group
        sweep_settings = calibrated.with_(ensembles=sizes[:2], subset=settings.corrupt_subset)
        swept = run_corruption_sweep(SweepRequest([run_dir], sweep, sweep_settings, out=files["corrupt"],
                                                  summary_out=files["corrupt_summary"]), progress=progress)
        summaries.append(swept.summary)
        if method == "mcdo":
            request = ConsistencyRequest([run_dir], eval_settings, out=files["consistency"])
            consistency.append(run_consistency(request, progress=progress).rows)
        run_ood(OodRequest([run_dir], DEMO_OOD_SET, settings=eval_settings, out=files["ood"]), progress=progress)
        oods.append(_ood_rows(files["ood"], evaluated, eval_settings))
    board = run_leaderboard(LeaderboardRequest([files["eval"], files["corrupt"], files["consistency"]], sort="nll",
                                               out=files["leaderboard"]))
    run_report(ReportRequest([out], out=files["report"], title="smoothbench demo report", note=demo_note(settings)))
    return DemoResult(pd.DataFrame(train_rows), pd.concat(evals, ignore_index=True),
                      pd.concat(summaries, ignore_index=True), pd.concat(consistency, ignore_index=True),
                      board.text, files, pd.concat(oods, ignore_index=True))
