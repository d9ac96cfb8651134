"""The tidy-table store: atomic de-duplicated writes, done keys for resuming, reading result files and folders."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest

from corruption_data import MODEL
from smoothbench.errors import UserError
from smoothbench.results.store import done_keys, read_results, row_key, write_rows
from smoothbench.results.summaries import per_corruption_table, summarize_corruptions
from smoothbench.schema import CORRUPTION_ROW_KEY, SUMMARY_ROW_KEY

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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.json"]  # no temp files left


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
