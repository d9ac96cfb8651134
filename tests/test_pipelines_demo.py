"""The demo pipeline, small: every step runs through the same library calls as the commands."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from smoothbench.evaluation.calibration import CalibrationWarning
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.pipelines.demo import DemoSettings, _reusable, run_demo
from smoothbench.pipelines.eval import EvalRequest, run_eval
from smoothbench.schema import DEFAULT_OOD_SCORES

pytestmark = pytest.mark.slow

MODELS = ["resnet18w4-dnn-none", "resnet18w4-dnn-tanh-blur", "resnet18w4-mcdo-none", "resnet18w4-mcdo-tanh-blur"]


def test_demo_pipeline_small(tmp_path):
    settings = DemoSettings(out=tmp_path / "demo", width=4, epochs=1, train_subset=300, eval_subset=60,
                            ensembles=(1, 3), corruptions=("contrast",), severities=(2,), corrupt_subset=30,
                            calibration_split=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_demo(settings)
    # training held the calibration images out, so the temperature is fitted on unseen images
    assert not [w for w in caught if issubclass(w.category, CalibrationWarning)]
    assert len(result.train) == 4 and set(result.train.smoothing) == {"none", "tanh-blur"}
    assert set(result.eval.ensemble_size) == {1, 3}
    assert "resnet18w4-mcdo-tanh-blur" in result.leaderboard
    # clean and corrupted rows share one calibration, so the leaderboard ranks them together in one group
    assert "## Group 1" in result.leaderboard and "## Group 2" not in result.leaderboard
    files = result.files
    assert len(pd.read_csv(files["eval"])) == 2 + 2 * 2  # two dnn models at size 1, two MC models at 1 and 3
    for run in (tmp_path / "demo" / "runs").iterdir():
        assert json.loads((run / "config.json").read_text())["settings"]["holdout"] == 100
    summary = pd.read_csv(files["corrupt_summary"])
    pd.testing.assert_frame_equal(summary[result.corrupt_summary.columns], result.corrupt_summary, check_dtype=False)
    assert set(pd.read_csv(files["consistency"])["model"]) == {"resnet18w4-mcdo-none", "resnet18w4-mcdo-tanh-blur"}
    assert files["leaderboard"].read_text() == result.leaderboard
    assert len(pd.read_csv(files["corrupt"])) == 2 * 2 + 2 * 4  # clean + contrast 2 per model, sizes 1 (and 3)
    page = files["report"].read_text(encoding="utf-8")  # the report says what a run this small can show
    assert "It cannot show the paper&#x27;s effect" in page and "only 4 channels wide" in page
    assert page.count('data-kind="reliability"') == 4 and len(list(files["reliability"].glob("*_reliability.csv"))) == 6

    # calibration: every eval row has its raw and temperature-scaled twins, fitted on the held-out images
    calibration = result.calibration()
    assert len(calibration) == 6 and np.isfinite(calibration[["ece", "ece_ts", "nll", "nll_ts"]].to_numpy()).all()
    assert (calibration.temperature > 0).all()
    assert set(result.eval.calibration) == {"temperature:synthetic/train[4900:5000]"}
    assert set(pd.read_csv(files["corrupt"]).calibration) == {"temperature:synthetic/train[4900:5000]"}
    # the uncalibrated columns mean what they meant: the same numbers as an eval without calibration
    run = tmp_path / "demo" / "runs" / "resnet18w4-mcdo-tanh-blur"
    plain = run_eval(EvalRequest([run], EvalSettings(ensembles=[1, 3], subset=60, device="cpu"))).rows
    demo_rows = result.eval[result.eval.model == run.name].sort_values("ensemble_size")
    for column in ("acc", "nll", "ece", "brier"):
        np.testing.assert_allclose(demo_rows[column], plain.sort_values("ensemble_size")[column], rtol=1e-5)

    # OOD: the file has one row per model x ensemble size x default score, and the result holds the same rows
    ood = pd.read_csv(files["ood"])
    expected = {(m, k, s) for m in MODELS for k in ((1, 3) if "mcdo" in m else (1,)) for s in DEFAULT_OOD_SCORES}
    assert set(zip(ood.model, ood.ensemble_size, ood.score)) == expected and len(ood) == len(expected)
    assert set(ood.ood_set) == {"noise"} and ood.auroc_ood.between(0, 1).all()
    assert set(zip(result.ood.model, result.ood.ensemble_size, result.ood.score)) == expected
    auroc = result.ood_auroc("msp")
    assert set(zip(auroc.model, auroc.ensemble_size)) == {(m, k) for m, k, _ in expected}
    assert auroc.auroc_ood.between(0, 1).all()

    # a rerun reuses the runs and the OOD rows already written (none recomputed), and still reports them
    again = run_demo(settings)
    assert again.train.empty and len(pd.read_csv(files["ood"])) == len(expected)
    pd.testing.assert_frame_equal(again.ood_auroc("msp").reset_index(drop=True), auroc.reset_index(drop=True),
                                  check_dtype=False)


def test_demo_retrains_runs_without_its_holdout(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    settings = DemoSettings(out=tmp_path, calibration_split=100)
    assert not _reusable(run, settings)  # nothing trained yet
    (run / "model.pt").write_bytes(b"")
    for holdout, reusable in ((0, False), (50, False), (100, True)):
        (run / "config.json").write_text(json.dumps({"settings": {"holdout": holdout}}))
        assert _reusable(run, settings) is reusable
    assert not _reusable(run, DemoSettings(out=tmp_path, calibration_split=100, force=True))
    (run / "config.json").write_text("not json")
    assert not _reusable(run, settings)
