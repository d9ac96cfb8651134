"""One library call per command: a request dataclass in, a result object out (rows as DataFrames, the files
written, where the time went). The CLI only turns flags into requests and renders the results."""

from smoothbench.pipelines.analyze import (AnalysisResult, FeaturesRequest, FeaturesResult, HessianRequest,
                                         HessianResult, LandscapeRequest, run_features, run_hessian, run_landscape)
from smoothbench.pipelines.consistency import ConsistencyRequest, ConsistencyResult, run_consistency
from smoothbench.pipelines.corrupt import SweepRequest, SweepResult, run_corruption_sweep
from smoothbench.pipelines.demo import DemoResult, DemoSettings, run_demo
from smoothbench.pipelines.eval import EvalRequest, EvalResult, run_eval
from smoothbench.pipelines.leaderboard import LeaderboardRequest, LeaderboardResult, run_leaderboard
from smoothbench.pipelines.make_c import MakeCRequest, make_corrupted_set
from smoothbench.pipelines.ood import OodRequest, OodResult, run_ood
from smoothbench.pipelines.report import ReportRequest, ReportResult, run_report
from smoothbench.pipelines.reproduce import ReproduceRequest, ReproduceResult, run_reproduce
from smoothbench.pipelines.shift import ShiftRequest, ShiftResult, run_shift

__all__ = ["AnalysisResult", "ConsistencyRequest", "ConsistencyResult", "DemoResult", "DemoSettings", "EvalRequest",
           "EvalResult", "FeaturesRequest", "FeaturesResult", "HessianRequest", "HessianResult", "LandscapeRequest",
           "LeaderboardRequest", "LeaderboardResult", "MakeCRequest", "OodRequest", "OodResult", "ReportRequest",
           "ReportResult", "ReproduceRequest", "ReproduceResult", "ShiftRequest", "ShiftResult", "SweepRequest",
           "SweepResult", "make_corrupted_set", "run_consistency", "run_corruption_sweep", "run_demo", "run_eval",
           "run_features", "run_hessian", "run_landscape", "run_leaderboard", "run_ood", "run_report",
           "run_reproduce", "run_shift"]
