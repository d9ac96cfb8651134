"""The tidy-table store: atomic de-duplicated writes, done keys for resuming, reading result files and folders."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from corruption_data import MODEL
from smoothbench.errors import UserError
from smoothbench.results.store import (MalformedRowWarning, done_keys, read_results, read_table, row_key,
                                       write_rows)
from smoothbench.results.summaries import per_corruption_table, summarize_corruptions
from smoothbench.schema import CORRUPTION_ROW_KEY, EVAL_ROW_KEY, SUMMARY_ROW_KEY

KEYS = ("model", "ensemble_size", "subset")


@pytest.mark.parametrize("suffix", ["csv", "json"])
def test_write_rows_replaces_same_key_and_keeps_column_order(tmp_path, suffix):
    path = tmp_path / f"out.{suffix}"
    write_rows(path, [{"model": "a", "ensemble_size": 1, "subset": None, "acc": 0.5, "nll": 1.0},
                              {"model": "b", "ensemble_size": 1, "subset": None, "acc": 0.6, "nll": 0.9}],
                       key_columns=KEYS)
    # b is rewritten with an equal key in other types (1.0 / ""), c is new and brings a new column;
    # c appears twice in this batch: the last one wins
    write_rows(path, [{"model": "b", "ensemble_size": 1.0, "subset": "", "acc": 0.7, "nll": 0.8, "top5": 0.9},
                              {"model": "c", "ensemble_size": 5, "subset": None, "acc": 0.1, "nll": 2.0, "top5": 0.3},
                              {"model": "c", "ensemble_size": 5, "subset": None, "acc": 0.2, "nll": 1.9, "top5": 0.4}],
                       key_columns=KEYS)
    # rows without a key column count as empty there: this replaces a
    write_rows(path, pd.DataFrame([{"model": "a", "ensemble_size": 1, "acc": 0.55}]), key_columns=KEYS)
    table = read_results(path)
    assert list(table.columns) == ["model", "ensemble_size", "subset", "acc", "nll", "top5", "result_file"]
    assert list(table["model"]) == ["a", "b", "c"]  # b replaced in place, c appended once
    assert list(table["acc"]) == [0.55, 0.7, 0.2]
    assert math.isnan(table["top5"][0])
    if suffix == "json":
        raw = json.loads(path.read_text())
        assert raw[0]["top5"] is None and raw[0]["subset"] is None  # NaN written as null


def test_write_rows_is_atomic_when_writing_fails(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("boom")

    for name in ("out.csv", "out.json"):
        path = tmp_path / name
        write_rows(path, [{"model": "a", "ensemble_size": 1, "subset": None, "acc": 0.5}], key_columns=KEYS)
        before = path.read_bytes()
        bad = [{"model": "b", "ensemble_size": 1, "subset": None, "acc": 0.6},
               {"model": "c", "ensemble_size": 1, "subset": None, "acc": Unprintable()}]
        with pytest.raises((RuntimeError, TypeError), match="boom|cannot write a Unprintable"):
            write_rows(path, bad, key_columns=KEYS)
        assert path.read_bytes() == before
    # no temp files left; the lock sidecars stay (removing a lock file another writer holds is a race)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.csv.lock", ".out.json.lock", "out.csv", "out.json"]


def test_write_rows_refuses_a_foreign_file(tmp_path):
    foreign = tmp_path / "notes.csv"
    foreign.write_text("name,value\nx,1\n")
    garbage = tmp_path / "blob.json"
    garbage.write_bytes(b"\x00\xff not json")
    for path in (foreign, garbage):
        before = path.read_bytes()
        with pytest.raises(UserError, match="give another"):
            write_rows(path, [{"model": "a", "ensemble_size": 1, "subset": None, "acc": 0.5}], key_columns=KEYS)
        with pytest.raises(UserError, match="not a"):
            done_keys(path, KEYS)
        assert path.read_bytes() == before
    with pytest.raises(UserError, match="cannot tell the format"):
        write_rows(tmp_path / "out.txt", [{"model": "a", "ensemble_size": 1, "subset": None}], key_columns=KEYS)


def test_cells_written_one_by_one_and_done_keys_let_a_sweep_resume(tmp_path):
    path = tmp_path / "corrupt.csv"
    assert done_keys(path, CORRUPTION_ROW_KEY) == set()
    cell = {"model": "r18", "checkpoint_sha256": "0123456789", "dataset": "cifar10-c", "split": "test",
            "ensemble_size": 5, "members": 1, "mc_samples": 5, "subset": "", "corruption": "fog", "severity": 3,
            "corruption_params": "cifar", "source": "released", "acc": 0.7}
    write_rows(path, [cell], key_columns=CORRUPTION_ROW_KEY)
    write_rows(path, [cell | {"acc": 0.71}], key_columns=CORRUPTION_ROW_KEY)  # a rerun replaces, never duplicates
    assert len(pd.read_csv(path)) == 1
    done = done_keys(path, CORRUPTION_ROW_KEY)
    # a probe built before the cell runs: subset comes from the settings (None == ""), ints vs floats agree
    probe = {k: v for k, v in cell.items() if k not in ("subset", "acc")} | {"ensemble_size": 5.0}
    assert row_key(probe, CORRUPTION_ROW_KEY, SimpleNamespace(subset=None)) in done
    assert row_key(probe | {"severity": 4}, CORRUPTION_ROW_KEY, SimpleNamespace(subset=None)) not in done
    assert pd.read_csv(path, dtype=str)["checkpoint_sha256"][0] == "0123456789"


def test_read_results_over_folders_matches_reading_the_files(tmp_path):
    eval_file = tmp_path / "runs" / "a" / "eval.csv"
    corrupt_file = tmp_path / "runs" / "b" / "nested" / "corrupt.json"
    write_rows(eval_file, [{"model": "a", "ensemble_size": k, "subset": None, "acc": 0.9 - k / 100}
                                   for k in (1, 5)], key_columns=KEYS)
    write_rows(corrupt_file, [{"model": "b", "ensemble_size": 1, "subset": None, "corruption": "fog",
                                       "severity": 1, "acc": 0.5}], key_columns=KEYS)
    (tmp_path / "runs" / "notes.csv").write_text("name,value\nx,1\n")  # not a result table: skipped
    (tmp_path / "runs" / "b" / "config.json").write_text('{"lr": 0.1}')  # neither
    (tmp_path / "runs" / "b" / "broken.csv").write_bytes(b"\xff\xfe\x00")
    corrupt_rows = pd.DataFrame(MODEL)  # derived tables next to the results are not read as results
    write_rows(tmp_path / "runs" / "b" / "summary.csv", summarize_corruptions(corrupt_rows),
                       key_columns=SUMMARY_ROW_KEY)
    write_rows(tmp_path / "runs" / "b" / "per_corruption.csv", per_corruption_table(corrupt_rows),
                       key_columns=("model", "corruption"))
    by_dir = read_results(tmp_path / "runs")
    by_files = read_results([eval_file, corrupt_file])
    mixed = read_results([tmp_path / "runs" / "a", corrupt_file])
    for other in (by_files, mixed):
        pd.testing.assert_frame_equal(by_dir.sort_values(["model", "ensemble_size"]).reset_index(drop=True),
                                      other.sort_values(["model", "ensemble_size"]).reset_index(drop=True))
    assert len(by_dir) == 3
    assert set(by_dir["result_file"]) == {str(eval_file), str(corrupt_file)}
    with pytest.raises(UserError, match="not a smoothbench result table"):
        read_results(tmp_path / "runs" / "notes.csv")
    with pytest.raises(UserError, match="does not exist"):
        read_results(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no smoothbench result tables"):
        read_results(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------------
# concurrent writers, cut rows, whole numbers
_WRITER = """
import sys
from smoothbench.results.store import write_rows
path, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(count):
    write_rows(path, [{"model": f"w{writer}", "ensemble_size": i + 1, "subset": "", "acc": 0.5}],
               key_columns=("model", "ensemble_size", "subset"))
"""


@pytest.mark.slow
def test_concurrent_writers_end_with_the_union_of_their_rows(tmp_path):
    """Six real processes append 25 rows each, one read-merge-replace at a time, to one file at once."""
    import subprocess
    import sys

    from conftest import ROOT

    path = tmp_path / "shared.csv"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(w), "25"], env=env)
               for w in range(6)]
    assert [w.wait(timeout=300) for w in writers] == [0] * 6
    table = pd.read_csv(path)
    assert len(table) == 150 and not table.duplicated(["model", "ensemble_size"]).any()
    assert sorted(table.groupby("model").size().tolist()) == [25] * 6


def test_a_cut_last_line_is_left_out_with_a_warning_and_dropped_on_rewrite(tmp_path):
    path = tmp_path / "eval.csv"
    rows = [{"model": "a", "ensemble_size": k, "subset": "", "seed": 7, "acc": 0.5 + k / 100} for k in (1, 2, 3)]
    write_rows(path, rows, key_columns=KEYS)
    whole = path.read_bytes()
    path.write_bytes(whole[: whole.rindex(b"\n", 0, len(whole) - 1) + 8])  # a crash in the middle of row 3
    with pytest.warns(MalformedRowWarning, match=r"eval\.csv line 4: .*the row is left out"):
        table = read_results(path)
    assert table["ensemble_size"].tolist() == [1, 2]
    with pytest.warns(MalformedRowWarning):
        write_rows(path, [rows[0] | {"acc": 0.9}], key_columns=KEYS)
    assert pd.read_csv(path)["ensemble_size"].tolist() == [1, 2]  # the cut row is gone, not kept as data
    # a row whose fields are all there but are not a measurement is left out too
    path.write_text("model,ensemble_size,subset,seed,acc\na,1,,7,0.5\n,2,,7,0.6\nb,2.5,,7,0.6\nc,3,,7,high\n")
    with pytest.warns(MalformedRowWarning) as caught:
        table = read_results(path)
    assert table["model"].tolist() == ["a"]
    assert [str(w.message).split(": ", 1)[1] for w in caught] == [
        "model is empty; the row is left out", "ensemble_size is '2.5', not a whole number; the row is left out",
        "acc is 'high', not a number; the row is left out"]


def test_a_cut_json_table_is_refused_untouched(tmp_path):
    path = tmp_path / "eval.json"
    write_rows(path, [{"model": "a", "ensemble_size": 1, "subset": "", "acc": 0.5}], key_columns=KEYS)
    path.write_text(path.read_text()[:-10])
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"eval\.json is not a readable smoothbench json table"):
        write_rows(path, [{"model": "b", "ensemble_size": 1, "subset": "", "acc": 0.5}], key_columns=KEYS)
    assert path.read_bytes() == before


def test_whole_numbers_stay_whole_through_rewrites(tmp_path):
    """Columns of whole numbers with empty cells (``corruption_seed`` of clean rows) used to come back as
    ``0.0`` after a rewrite; they stay ``0``."""
    path = tmp_path / "sweep.csv"
    clean = {"model": "m", "ensemble_size": 1, "subset": 20, "seed": 7, "n_images": 20, "ece_bins": 15,
             "corruption": "clean", "severity": 0, "corruption_seed": "", "acc": 0.5}
    cell = clean | {"corruption": "fog", "severity": 3, "corruption_seed": 0}
    for rows in ([clean], [cell], [cell | {"acc": 0.4}]):
        write_rows(path, rows, key_columns=CORRUPTION_ROW_KEY)
    text = [line.split(",")[:10] for line in path.read_text().splitlines()]  # then the empty key columns
    assert text[1:] == [["m", "1", "20", "7", "20", "15", "clean", "0", "", "0.5"],
                        ["m", "1", "20", "7", "20", "15", "fog", "3", "0", "0.4"]]
    table = read_results(path)
    assert str(table["seed"].dtype) == "Int64" and table["corruption_seed"].isna().tolist() == [True, False]


def test_settings_that_change_numbers_are_part_of_the_key(tmp_path):
    """Rows of another seed, ECE binning or precision coexist; the same settings replace their own row."""
    path = tmp_path / "eval.csv"
    row = {"model": "m", "checkpoint_sha256": "ab", "dataset": "cifar10", "split": "test", "ensemble_size": 1,
           "members": 1, "mc_samples": 1, "subset": "", "seed": 0, "precision": "fp32", "ece_mode": "standard",
           "ece_bins": 15, "acc": 0.9, "ece": 0.05}
    variants = [row, row | {"ece_mode": "reference", "ece_bins": 10, "ece": 0.04}, row | {"seed": 1},
                row | {"precision": "bf16"}]
    for variant in variants:
        write_rows(path, [variant], key_columns=EVAL_ROW_KEY)
    write_rows(path, [row | {"acc": 0.91}], key_columns=EVAL_ROW_KEY)
    table = pd.read_csv(path)
    assert len(table) == 4 and table["acc"].tolist() == [0.91, 0.9, 0.9, 0.9]
    assert table["ece"].tolist() == [0.05, 0.04, 0.05, 0.05]


def test_results_files_of_version_0_1_0_keep_loading_with_their_rows(tmp_path):
    """Files written by 0.1.0 (kept as they were) read back whole and take new rows by key."""
    from pathlib import Path

    from smoothbench.schema import CONSISTENCY_ROW_KEY

    golden = Path(__file__).parent / "golden" / "written_by_0.1.0"
    for name, key in (("eval.csv", EVAL_ROW_KEY), ("corrupt.csv", CORRUPTION_ROW_KEY),
                      ("corrupt_summary.csv", SUMMARY_ROW_KEY), ("consistency.csv", CONSISTENCY_ROW_KEY)):
        copy = tmp_path / name
        copy.write_bytes((golden / name).read_bytes())
        before = pd.read_csv(copy)
        assert len(read_table(copy)) == len(before)
        write_rows(copy, before.iloc[:1], key_columns=key)  # a rerun of one row replaces it in place
        assert len(pd.read_csv(copy)) == len(before)
