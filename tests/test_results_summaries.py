"""Corruption summaries: mCE, relative mCE, mCNLL and mCECE against hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from corruption_data import BASELINE, MODEL, corruption_rows
from smoothbench.errors import UserError
from smoothbench.results.summaries import per_corruption_table, summarize_corruptions


def test_mce_relative_mce_mcnll_mcece_by_hand():
    summary = summarize_corruptions(pd.DataFrame(MODEL), BASELINE)
    assert len(summary) == 1
    row = summary.iloc[0]
    # errors: model fog .2,.4  snow .3,.5, clean .1; baseline fog .5,.7  snow .6,.8, clean .35
    # CE: fog .6/1.2 = .5, snow .8/1.4 = 4/7  → mCE = (.5 + 4/7) / 2
    assert row["mCE"] == pytest.approx((0.5 + 4 / 7) / 2)
    # relative: fog (.1+.3)/(.15+.35) = .8, snow (.2+.4)/(.25+.45) = 6/7
    assert row["relative_mCE"] == pytest.approx((0.8 + 6 / 7) / 2)
    # NLL: fog 1.5/5 = .3, snow 2/6 = 1/3;  ECE: fog .15/.5 = .3, snow .24/.6 = .4
    assert row["mCNLL"] == pytest.approx((0.3 + 1 / 3) / 2)
    assert row["mCECE"] == pytest.approx(0.35)
    assert row["cAcc"] == pytest.approx(0.65) and row["cNLL"] == pytest.approx(0.875)
    assert row["cAcc_s1"] == pytest.approx(0.75) and row["cAcc_s2"] == pytest.approx(0.55)
    assert math.isnan(row["cAcc_s3"])
    assert row["clean_acc"] == pytest.approx(0.9)
    assert (row["n_corruptions"], row["corruptions"], row["n_cells"]) == (2, "snow,fog", 4)
    assert row["baseline"] == "hand" and row["source"] == "released"
    table = per_corruption_table(pd.DataFrame(MODEL), BASELINE).set_index("corruption")
    assert table.loc["fog", "CE"] == pytest.approx(0.5) and table.loc["snow", "relative_CE"] == pytest.approx(6 / 7)
    assert table.loc["fog", "err"] == pytest.approx(0.3) and table.loc["snow", "n_severities"] == 2


def test_summary_refuses_corruptions_the_baseline_lacks_unless_restricted():
    rows = pd.DataFrame(MODEL + corruption_rows("m", {"acc": 0.9, "nll": 0.4, "ece": 0.03},
                                       {("spatter", 1): (0.7, 0.9, 0.1)})[1:])
    with pytest.raises(UserError, match="spatter"):
        summarize_corruptions(rows, BASELINE, corruptions="all")
    for selection in ("common", ["fog", "snow"]):  # spatter is an extra corruption: not in "common"
        summary = summarize_corruptions(rows, BASELINE, corruptions=selection)
        assert summary["n_corruptions"][0] == 2 and summary["mCE"][0] == pytest.approx((0.5 + 4 / 7) / 2)
    assert summarize_corruptions(rows, corruptions="all")["n_corruptions"][0] == 3
    with pytest.raises(UserError, match="no fog severity 3"):
        more = pd.concat([rows, rows.iloc[[1]].assign(severity=3)], ignore_index=True)
        summarize_corruptions(more, BASELINE)


def test_ece_settings_mismatch_leaves_mcece_unknown():
    rows = pd.DataFrame(MODEL).assign(ece_mode="standard", ece_bins=15)
    summary = summarize_corruptions(rows, BASELINE.assign(ece_mode="reference", ece_bins=10))
    assert math.isnan(summary["mCECE"][0])
    assert summary["mCNLL"][0] == pytest.approx((0.3 + 1 / 3) / 2)
    same = summarize_corruptions(rows, BASELINE.assign(ece_mode="standard", ece_bins=15))
    assert same["mCECE"][0] == pytest.approx(0.35)
