"""The demo pipeline, small: every step runs through the same library calls as the commands."""

from __future__ import annotations

import pandas as pd
import pytest

from smoothbench.pipelines.demo import DemoSettings, run_demo

pytestmark = pytest.mark.slow


def test_demo_pipeline_small(tmp_path):
    result = run_demo(DemoSettings(out=tmp_path / "demo", width=4, epochs=1, train_subset=300, eval_subset=60,
                                   ensembles=(1, 3), corruptions=("contrast",), severities=(2,), corrupt_subset=30))
    assert len(result.train) == 4 and set(result.train.smoothing) == {"none", "tanh-blur"}
    assert set(result.eval.ensemble_size) == {1, 3}
    assert "resnet18w4-mcdo-tanh-blur" in result.leaderboard
    files = result.files
    assert len(pd.read_csv(files["eval"])) == 2 + 2 * 2  # two dnn models at size 1, two MC models at 1 and 3
    summary = pd.read_csv(files["corrupt_summary"])
    pd.testing.assert_frame_equal(summary[result.corrupt_summary.columns], result.corrupt_summary, check_dtype=False)
    assert set(pd.read_csv(files["consistency"])["model"]) == {"resnet18w4-mcdo-none", "resnet18w4-mcdo-tanh-blur"}
    assert files["leaderboard"].read_text() == result.leaderboard
    assert len(pd.read_csv(files["corrupt"])) == 2 * 2 + 2 * 4  # clean + contrast 2 per model, sizes 1 (and 3)
    page = files["report"].read_text(encoding="utf-8")  # the report says what a run this small can show
    assert "It cannot show the paper&#x27;s effect" in page and "only 4 channels wide" in page
    assert page.count('data-kind="reliability"') == 4 and len(list(files["reliability"].glob("*.csv"))) == 6
