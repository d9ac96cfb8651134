"""One library call per command: a request dataclass in, a result object out (rows as DataFrames, the files
written, where the time went). The CLI only turns flags into requests and renders the results."""

from smoothbench.pipelines.consistency import ConsistencyRequest, ConsistencyResult, run_consistency
from smoothbench.pipelines.corrupt import SweepRequest, SweepResult, run_corruption_sweep
from smoothbench.pipelines.demo import DemoResult, DemoSettings, run_demo
from smoothbench.pipelines.eval import EvalRequest, EvalResult, run_eval
from smoothbench.pipelines.leaderboard import LeaderboardRequest, LeaderboardResult, run_leaderboard
from smoothbench.pipelines.make_c import MakeCRequest, make_corrupted_set
from smoothbench.pipelines.report import ReportRequest, ReportResult, run_report

__all__ = ["ConsistencyRequest", "ConsistencyResult", "DemoResult", "DemoSettings", "EvalRequest", "EvalResult",
           "LeaderboardRequest", "LeaderboardResult", "MakeCRequest", "ReportRequest", "ReportResult", "SweepRequest",
           "SweepResult", "make_corrupted_set", "run_consistency", "run_corruption_sweep", "run_demo", "run_eval",
           "run_leaderboard", "run_report"]
