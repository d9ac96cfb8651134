"""smoothbench: accuracy, calibration and robustness of image classifiers, with spatial smoothing.

The Python API does everything the command line does; each command is one call here::

    import smoothbench
    result = smoothbench.run_eval(smoothbench.EvalRequest(["runs/r18"], smoothbench.EvalSettings(ensembles="1,5,50")))
    result.rows  # a DataFrame, one row per ensemble size

Names are imported on first use, so ``import smoothbench`` (and ``smoothbench --help``) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "create_model": "smoothbench.models.registry",
    "list_models": "smoothbench.models.registry",
    "ModelSpec": "smoothbench.models.spec",
    "load": "smoothbench.models.store",
    "EvalSettings": "smoothbench.evaluation.settings",
    "CorruptionSweep": "smoothbench.evaluation.corruption_cells",
    "EvalRequest": "smoothbench.pipelines.eval",
    "run_eval": "smoothbench.pipelines.eval",
    "SweepRequest": "smoothbench.pipelines.corrupt",
    "run_corruption_sweep": "smoothbench.pipelines.corrupt",
    "OodRequest": "smoothbench.pipelines.ood",
    "run_ood": "smoothbench.pipelines.ood",
    "ShiftRequest": "smoothbench.pipelines.shift",
    "run_shift": "smoothbench.pipelines.shift",
    "ConsistencyRequest": "smoothbench.pipelines.consistency",
    "run_consistency": "smoothbench.pipelines.consistency",
    "LeaderboardRequest": "smoothbench.pipelines.leaderboard",
    "run_leaderboard": "smoothbench.pipelines.leaderboard",
    "ReportRequest": "smoothbench.pipelines.report",
    "run_report": "smoothbench.pipelines.report",
    "MakeCRequest": "smoothbench.pipelines.make_c",
    "make_corrupted_set": "smoothbench.pipelines.make_c",
    "DemoSettings": "smoothbench.pipelines.demo",
    "run_demo": "smoothbench.pipelines.demo",
    "ReproduceRequest": "smoothbench.pipelines.reproduce",
    "run_reproduce": "smoothbench.pipelines.reproduce",
    "TrainConfig": "smoothbench.training.config",
    "run_training": "smoothbench.training.loop",
    "build_leaderboard": "smoothbench.leaderboard.build",
    "read_results": "smoothbench.results.store",
    "summarize_corruptions": "smoothbench.results.summaries",
    "load_baseline": "smoothbench.results.baselines",
    "UserError": "smoothbench.errors",
    "ModelOptions": "smoothbench.models.sources",
    "resolve_model": "smoothbench.models.sources",
    "smooth": "smoothbench.models.surgery",
    "LandscapeRequest": "smoothbench.pipelines.analyze",
    "HessianRequest": "smoothbench.pipelines.analyze",
    "FeaturesRequest": "smoothbench.pipelines.analyze",
    "run_landscape": "smoothbench.pipelines.analyze",
    "run_hessian": "smoothbench.pipelines.analyze",
    "run_features": "smoothbench.pipelines.analyze",
}

__all__ = ["__version__", *_EXPORTS]


#: Public names whose definition is spelled differently in their module.
_RENAMED = {"smooth": "smooth_model"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'smoothbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
