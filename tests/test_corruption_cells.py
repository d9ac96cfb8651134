"""The corruption sweep loop: cells appended as they finish, resumed without duplicates after a kill."""

from __future__ import annotations

import pandas as pd
import pytest

from smoothbench.evaluation.corruption_cells import CorruptionSweep, corruption_sweep
from smoothbench.evaluation.members import load_members
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.results import store
from smoothbench.schema import CORRUPTION_ROW_KEY


def test_killed_sweep_resumes_without_duplicates(trained_synthetic_mcdo, tmp_path):
    members = load_members([trained_synthetic_mcdo])
    sweep = CorruptionSweep(dataset="synthetic-c", generate=True, corruptions=["brightness", "pixelate"],
                            severities=[2])
    settings = EvalSettings(ensembles=[1, 3], subset=40, device="cpu").on_device()
    out = tmp_path / "sweep.json"

    class Killed(Exception):
        pass

    def kill_after_two(rows):
        if len(store.done_keys(out, CORRUPTION_ROW_KEY)) >= 4:
            raise Killed("killed after two cells")

    with pytest.raises(Killed, match="killed after two cells"):
        corruption_sweep(members, sweep, settings, out, on_cell=kill_after_two)
    partial = pd.read_json(out)
    assert len(partial) == 4  # clean + brightness, 2 sizes each; pixelate never started
    corruption_sweep(members, sweep, settings, out)
    full = pd.read_json(out)
    assert len(full) == 6 and not full.duplicated(["corruption", "severity", "ensemble_size"]).any()
    pd.testing.assert_frame_equal(full.iloc[:4].reset_index(drop=True), partial)
