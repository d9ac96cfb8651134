"""Building leaderboards: ranks and directions, comparability groups, seed aggregation, mCE, ensemble sizes."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from board_rows import THREE, corruption_rows, eval_row
from smoothbench.errors import UserError
from smoothbench.leaderboard import build_leaderboard
from smoothbench.results.store import read_results, write_rows
from smoothbench.schema import CONSISTENCY_ROW_KEY, CORRUPTION_ROW_KEY, EVAL_ROW_KEY


def test_ranks_follow_the_sort_metric_and_its_direction():
    df = pd.DataFrame(THREE)
    by = {sort: build_leaderboard(df, sort=sort).table.set_index("name")["rank"].to_dict()
          for sort in ("nll", "acc", "ece", "ece_signed")}
    assert by["nll"] == {"beta": 1, "alpha": 2, "gamma": 3}  # lower is better
    assert by["acc"] == {"beta": 1, "alpha": 2, "gamma": 3}  # higher is better
    assert by["ece"] == {"gamma": 1, "beta": 2, "alpha": 3}
    assert by["ece_signed"] == {"gamma": 1, "beta": 2, "alpha": 3}  # |−.01| < |.05| < |−.06|
    board = build_leaderboard(df, sort="nll")
    assert list(board.table["name"]) == ["beta", "alpha", "gamma"]
    assert (board.table["group"] == 1).all() and board.notes == []
    with pytest.raises(UserError, match="cannot sort by 'mCE'"):
        build_leaderboard(df, sort="mCE")


def test_rows_that_are_not_comparable_are_ranked_separately_unless_allowed():
    rows = THREE + [eval_row("delta", "resnet18", "d1", acc=0.99, nll=0.10, ece_mode="reference"),
                    eval_row("eps", "vgg16", "e1", acc=0.98, nll=0.20, subset=500, n_images=500)]
    board = build_leaderboard(pd.DataFrame(rows), sort="nll")
    table = board.table.set_index("name")
    assert table.loc[["beta", "alpha", "gamma"], "group"].tolist() == [1, 1, 1]
    assert table.loc[["beta", "alpha", "gamma"], "rank"].tolist() == [1, 2, 3]
    assert table.loc["delta", "rank"] == 1 and table.loc["eps", "rank"] == 1
    assert {table.loc["delta", "group"], table.loc["eps", "group"]} == {2, 3}
    assert any("ece_mode=reference (group 1: standard)" in n and "ranked separately" in n for n in board.notes)
    assert any("subset=500" in n and "n_images=500" in n for n in board.notes)
    assert len(board.groups) == 3 and board.groups[0]["ece_mode"] == "standard"

    # corruption rows of one run under two ECE settings: never averaged, the odd one is ranked apart
    alpha = THREE[0]
    cells = corruption_rows(alpha, (0.8, 0.6)) + corruption_rows(alpha | {"ece_mode": "reference"}, (0.7, 0.5))
    split = build_leaderboard(pd.DataFrame(THREE + cells), sort="cAcc").table
    assert sorted(zip(split["group"], split["name"])) == [(1, "alpha"), (1, "beta"), (1, "gamma"), (2, "alpha")]
    ours = split[split["name"] == "alpha"].set_index("group")
    assert ours.loc[1, "cAcc"] == pytest.approx(0.7) and ours.loc[1, "acc"] == pytest.approx(0.90)
    assert ours.loc[2, "cAcc"] == pytest.approx(0.6) and math.isnan(ours.loc[2, "acc"])
    assert ours.loc[2, "ece_mode"] == "reference" and (ours["n_seeds"] == 1).all()

    mixed = build_leaderboard(pd.DataFrame(rows), sort="nll", allow_mixed=True)
    assert (mixed.table["group"] == 1).all()
    assert list(mixed.table["name"]) == ["delta", "eps", "beta", "alpha", "gamma"]
    assert any("ece_mode (reference, standard)" in n and "allow_mixed" in n for n in mixed.notes)
    assert mixed.groups == [{**board.groups[0], "ece_mode": "mixed", "subset": "mixed", "n_images": "mixed"}]


def test_seeds_of_one_configuration_aggregate_to_mean_and_std():
    rows = [eval_row("r18-s0", "resnet18", "s0", acc=0.90, nll=0.30, seed=0),
            eval_row("r18-s1", "resnet18", "s1", acc=0.94, nll=0.34, seed=1),
            eval_row("r18-s2", "resnet18", "s2", acc=0.92, nll=0.29, seed=2),
            eval_row("vgg", "vgg16", "v0", acc=0.80, nll=0.50)]
    for row, accs in zip(rows[:2], ((0.8, 0.6), (0.7, 0.5))):
        rows += corruption_rows(row, accs)
    board = build_leaderboard(pd.DataFrame(rows), sort="acc")
    top = board.table.iloc[0]
    assert top["n_seeds"] == 3 and top["name"] == "resnet18-dnn (dropout_rate=0)"
    # acc .90, .94, .92: mean .92, sample std sqrt((.02² + .02² + 0) / 2) = .02
    assert top["acc"] == pytest.approx(0.92) and top["acc_std"] == pytest.approx(0.02)
    assert top["nll"] == pytest.approx(0.31) and top["nll_std"] == pytest.approx(math.sqrt((1e-4 + 9e-4 + 4e-4) / 2))
    # fog: seed 0 cAcc .7, seed 1 .6, seed 2 none → mean .65, std sqrt(2 × .05² / 1)
    assert top["cAcc"] == pytest.approx(0.65) and top["cAcc_std"] == pytest.approx(math.sqrt(0.005))
    assert top["checkpoint_sha256"] == "s0,s1,s2" and top["seed"] == "0,1,2" and top["source"] == "released"
    assert "mCE" not in board.table.columns and "mCE omitted: no corruption baseline given" in board.notes
    single = board.table.iloc[1]
    assert single["name"] == "vgg" and single["n_seeds"] == 1 and math.isnan(single["acc_std"])


def test_mce_appears_with_a_baseline_and_files_feed_the_board(tmp_path):
    row = eval_row("alpha", "resnet18", "a1", acc=0.9, nll=0.4)
    write_rows(tmp_path / "eval.csv", [row], key_columns=EVAL_ROW_KEY)
    # the corruption sweep ran on a 500-image subset, the clean evaluation on the full set: still one run
    write_rows(tmp_path / "sub" / "corrupt.json", corruption_rows(row | {"subset": 500, "n_images": 500},
                                                                          (0.8, 0.6)),
                       key_columns=CORRUPTION_ROW_KEY)
    write_rows(tmp_path / "consistency.csv",
                       [{**{k: row[k] for k in ("model", "checkpoint_sha256", "dataset", "ensemble_size", "seed")},
                         "kind": "mc-size", "perturbation": "", "agreement": 0.97}] +
                       [{**{k: row[k] for k in ("model", "checkpoint_sha256", "ensemble_size", "seed")},
                         "dataset": "cifar10-p", "kind": "perturbation", "perturbation": p, "consistency": c,
                         "flip_prob": 1 - c} for p, c in (("translate", 0.9), ("rotate", 0.8))],
                       key_columns=CONSISTENCY_ROW_KEY)
    baseline = pd.DataFrame([{"corruption": "clean", "severity": 0, "acc": 0.6},
                             {"corruption": "fog", "severity": 1, "acc": 0.5},
                             {"corruption": "fog", "severity": 2, "acc": 0.3}]).assign(baseline_name="mine")
    board = build_leaderboard(read_results(tmp_path), sort="mCE", baseline=baseline)
    top = board.table.iloc[0]
    assert len(board.table) == 1 and top["n_seeds"] == 1
    # CE_fog = (.2 + .4) / (.5 + .7) = .5; consistency = mean(.9, .8)
    assert top["mCE"] == pytest.approx(0.5) and top["baseline"] == "mine"
    assert top["acc"] == pytest.approx(0.9) and top["cAcc"] == pytest.approx(0.7)
    assert top["agreement"] == pytest.approx(0.97) and top["consistency"] == pytest.approx(0.85)
    assert top["flip_prob"] == pytest.approx(0.15)
    assert (top["subset"], top["n_images"], top["c_subset"], top["c_n_images"]) == ("full", "1000", "500", "500")
    with pytest.raises(UserError, match="ensemble size 5"):
        build_leaderboard(read_results(tmp_path), ensemble_size=5)


def test_ensemble_size_defaults_to_each_configurations_largest():
    rows = [eval_row("mc", "resnet18", "m1", acc=0.90 + k / 1000, nll=0.3 - k / 1000, ensemble_size=k, mc_samples=k)
            for k in (1, 5, 50)] + [eval_row("det", "vgg16", "d1", acc=0.85, nll=0.4)]
    sizes = {(row["name"], row["ensemble_size"]) for _, row in build_leaderboard(pd.DataFrame(rows)).table.iterrows()}
    assert sizes == {("mc", 50), ("det", 1)}
    assert len(build_leaderboard(pd.DataFrame(rows), ensemble_size="all").table) == 4
    only = build_leaderboard(pd.DataFrame(rows), ensemble_size=[1, 5]).table
    assert sorted(zip(only["name"], only["ensemble_size"])) == [("det", 1), ("mc", 1), ("mc", 5)]
    assert list(only["rank"]) == [1, 2, 3] and only["name"].iloc[0] == "mc"


def test_rows_with_another_input_recipe_are_ranked_separately():
    rows = [eval_row("cifar-recipe", "resnet18", "a1", acc=0.9, nll=0.4, preprocess="crop=32 mean=0.5 std=0.2"),
            eval_row("upscaled", "resnet50", "b1", acc=0.8, nll=0.5, preprocess="resize=256 crop=224 mean=0.5 std=0.2")]
    board = build_leaderboard(pd.DataFrame(rows))
    assert sorted(board.table["group"].tolist()) == [1, 2]
    assert any("preprocess=resize=256 crop=224" in note for note in board.notes)


def _ood_row(row: dict, ood_set: str, score: str, auroc: float, fpr95: float) -> dict:
    base = {k: v for k, v in row.items() if k not in ("acc", "nll", "ece", "ece_signed", "brier")}
    return base | {"ood_set": ood_set, "score": score, "auroc_ood": auroc, "aupr_in": auroc, "aupr_out": auroc,
                   "fpr95": fpr95, "n_ood": 500}


def test_ood_view_ranks_each_set_and_score_apart_by_auroc_and_the_paper_view_leaves_them_out():
    alpha, beta, gamma = THREE
    ood = [_ood_row(alpha, "svhn", "msp", 0.90, 0.40), _ood_row(beta, "svhn", "msp", 0.95, 0.30),
           _ood_row(alpha, "svhn", "energy", 0.70, 0.60), _ood_row(beta, "svhn", "energy", 0.60, 0.70),
           _ood_row(alpha, "noise", "msp", 0.99, 0.01)]
    board = build_leaderboard(pd.DataFrame(THREE + ood), view="ood")
    assert board.sort == "auroc_ood" and board.view == "ood"
    table = board.table
    assert set(table.columns) >= {"auroc_ood", "aupr_in", "aupr_out", "fpr95"} and "acc" not in table.columns
    ranked = {(g["ood_set"], g["score"]): dict(zip(part["name"], part["rank"]))
              for g, (_, part) in zip(board.groups, table.groupby("group", sort=True))}
    assert ranked == {("svhn", "msp"): {"beta": 1, "alpha": 2}, ("svhn", "energy"): {"alpha": 1, "beta": 2},
                      ("noise", "msp"): {"alpha": 1}}
    assert board.notes == []  # groups per set and score are the view's design, not a surprise
    by_fpr = build_leaderboard(pd.DataFrame(ood), view="ood", sort="fpr95").table
    svhn_msp = by_fpr[(by_fpr["ood_set"] == "svhn") & (by_fpr["score"] == "msp")].set_index("name")["rank"]
    assert svhn_msp.to_dict() == {"beta": 1, "alpha": 2}  # lower FPR95 is better
    mixed = build_leaderboard(pd.DataFrame(ood), view="ood", allow_mixed=True)
    assert len(mixed.groups) == 3  # allow_mixed never ranks two OOD sets or scores as one

    paper = build_leaderboard(pd.DataFrame(THREE + ood))
    assert paper.sort == "nll" and sorted(paper.table["name"]) == ["alpha", "beta", "gamma"]
    assert (paper.table["n_seeds"] == 1).all() and "auroc_ood" not in paper.table.columns
    assert any("5 OOD row(s)" in n and "--view ood" in n for n in paper.notes)
    with pytest.raises(UserError, match="no rows for the ood view"):
        build_leaderboard(pd.DataFrame(THREE), view="ood")
    with pytest.raises(UserError, match="unknown leaderboard view"):
        build_leaderboard(pd.DataFrame(THREE), view="bogus")


def test_selective_view_sorts_by_aurc_and_calibrated_rows_are_never_averaged_with_raw_ones():
    rows = [eval_row("alpha", "resnet18", "a1", acc=0.90, nll=0.40, aurc=0.02, eaurc=0.01),
            eval_row("beta", "vgg16", "b1", acc=0.93, nll=0.30, aurc=0.03, eaurc=0.02)]
    calibrated = rows[0] | {"calibration": "temperature:cifar10/train[45000:50000]", "nll_ts": 0.35, "ece_ts": 0.01,
                            "temperature": 1.4, "aurc_ts": 0.021}
    board = build_leaderboard(pd.DataFrame(rows + [calibrated]), view="selective")
    assert board.sort == "aurc"
    first = board.table[board.table["group"] == 1].set_index("name")["rank"].to_dict()
    assert first == {"alpha": 1, "beta": 2}  # lower AURC is better, although beta has the lower NLL
    assert len(board.groups) == 2 and board.groups[1]["calibration"].startswith("temperature:")
    assert any("calibration=temperature:" in n and "(group 1: none)" in n for n in board.notes)
    assert (board.table["n_seeds"] == 1).all()
    mixed = build_leaderboard(pd.DataFrame(rows + [calibrated]), allow_mixed=True).table
    alpha = mixed[mixed["name"] == "alpha"]
    assert len(alpha) == 2 and (alpha["n_seeds"] == 1).all()  # raw and calibrated: two entries, not two seeds
    assert sorted(alpha["nll_ts"].fillna(-1)) == [-1, 0.35]


def test_shift_view_has_one_group_per_set_and_the_paper_view_takes_the_clean_rows_once():
    alpha, beta, _ = THREE
    rows = [alpha, beta,
            alpha | {"shift": "clean"}, beta | {"shift": "clean"},
            alpha | {"shift": "cifar10.1", "acc": 0.80, "data_fingerprint": "c101", "n_images": 2000},
            beta | {"shift": "cifar10.1", "acc": 0.85, "data_fingerprint": "c101", "n_images": 2000}]
    board = build_leaderboard(pd.DataFrame(rows), view="shift")
    assert board.sort == "acc" and [g["shift"] for g in board.groups] == ["clean", "cifar10.1"]
    shifted = board.table[board.table["group"] == 2].set_index("name")
    assert shifted["acc"].to_dict() == {"beta": 0.85, "alpha": 0.80} and shifted["rank"].to_dict() == {"beta": 1, "alpha": 2}
    assert board.notes == []
    paper = build_leaderboard(pd.DataFrame(rows))
    assert sorted(paper.table["name"]) == ["alpha", "beta"] and (paper.table["n_seeds"] == 1).all()
    assert any("2 natural-shift row(s)" in n for n in paper.notes)
