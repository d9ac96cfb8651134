"""Golden files: the result files of ``eval``, ``corrupt --generate`` and ``consistency`` for a small fixed
model (``tests/golden/golden-r18.pt``, written by smoothbench 0.1.0) on a ``--subset`` of the CIFAR-10 test images.

They were written before the redesign of issue 10 and guard it: the same commands must keep writing the
same files. Regenerated once since, on purpose, for issue 11: whole-number columns stay whole
(``corruption_seed`` ``0``, not ``0.0``) and the summary's key columns gained ``precision`` (so its column order
changed); and for issues 12 and 13: the ``preprocess`` column (the input recipe) replaced ``normalization``
and the rows gained the uncertainty columns beyond the paper. Every number already there stayed the same. Regenerated
for issue 13 §4, on purpose: ``--subset N`` of a test split became a class-balanced sample drawn from a fixed seed
(it was the first N images), so the metric values and the data fingerprints changed, and the rows gained the
``subset_sha256`` column (empty: no ``--subset-file``); with ``--subset 10000`` (the whole set) every value is as
before. Text and integer cells must be equal; float cells equal up to 1e-6 relative (the model's
float32 forward may round differently on another CPU's kernels). ``smoothbench_version`` is left out.
Regenerate on purpose only: ``python tests/test_golden.py --regenerate`` (after a deliberate change).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_cli  # noqa: E402
from smoothbench.results.store import is_number  # noqa: E402

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).parent / "golden"
MODEL = GOLDEN / "golden-r18.pt"
EXPECTED = GOLDEN / "expected"
IGNORED_COLUMNS = ("smoothbench_version",)


def commands(data: Path, out: Path) -> list[list[str]]:
    """The CLI calls whose files are golden (``data``: the CIFAR-10 folder, ``out``: where they write)."""
    common = ["--device", "cpu", "--batch-size", "32", "--quiet"]
    return [
        ["eval", MODEL, "--data-dir", data, "--ensembles", "1,2,4", "--subset", "64", "--out", out / "eval.csv",
         "--plot", out, *common],
        ["corrupt", MODEL, "--dataset", "cifar10-c", "--data-dir", data, "--generate", "--corruptions",
         "gaussian_noise,contrast,pixelate", "--severities", "1,3", "--subset", "32", "--ensembles", "1,2",
         "--ece-mode", "reference", "--out", out / "corrupt.csv", *common],
        ["consistency", MODEL, "--data-dir", data, "--ensembles", "1,2,4", "--subset", "32", "--perturbations",
         "brightness,gaussian_noise", "--generate", "--out", out / "consistency.csv", *common],
    ]


def produce(data: Path, out: Path) -> list[Path]:
    """Run the golden commands into ``out``; returns the CSV files written, sorted."""
    for args in commands(data, out):
        run_cli(*args)
    return sorted(out.glob("*.csv"))


def assert_same_table(path: Path, expected: Path) -> None:
    got, want = (pd.read_csv(p, dtype=str, keep_default_na=False) for p in (path, expected))
    assert list(got.columns) == list(want.columns), f"{path.name}: columns differ"
    assert len(got) == len(want), f"{path.name}: {len(got)} rows, expected {len(want)}"
    for column in want.columns:
        if column in IGNORED_COLUMNS:
            continue
        a, b = got[column].to_numpy(), want[column].to_numpy()
        if (a == b).all():
            continue
        is_float = any("." in v or "e" in v.lower() or v == "nan" for v in b) and all(
            is_number(v) for v in np.concatenate([a, b]))
        assert is_float, f"{path.name}: column {column} differs: {a[a != b][:3]} vs {b[a != b][:3]}"
        np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-6, atol=1e-12,
                                   err_msg=f"{path.name}: column {column}")


def test_result_files_equal_the_golden_files(cifar10_dir, tmp_path):
    written = produce(cifar10_dir, tmp_path)
    expected = sorted(EXPECTED.glob("*.csv"))
    assert [p.name for p in written] == [p.name for p in expected]
    for path in written:
        assert_same_table(path, EXPECTED / path.name)


def test_committed_model_file_loads_and_evaluates(cifar10_dir):
    """A model file written by smoothbench 0.1.0 keeps loading, with its spec and meaning."""
    import smoothbench

    model = smoothbench.load(MODEL)
    assert (model.spec.arch, model.spec.method, model.spec.smoothing, model.spec.width) == (
        "resnet18", "mcdo", "tanh-blur", 4)
    assert model.spec.dataset == "cifar10" and model.spec.num_classes == 10
    rows = pd.read_csv(EXPECTED / "eval.csv")
    # the golden accuracy is that of this file's weights on 64 real test images: well above chance (10 %)
    assert rows.loc[rows["ensemble_size"] == 1, "acc"].iloc[0] > 0.2


if __name__ == "__main__" and sys.argv[1:] == ["--regenerate"]:
    data = Path(os.environ["SMOOTHBENCH_CIFAR10_DIR"])
    scratch = Path("/tmp/smoothbench-golden")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    shutil.rmtree(EXPECTED, ignore_errors=True)
    EXPECTED.mkdir()
    for file in produce(data, scratch):
        shutil.copy(file, EXPECTED / file.name)
        print(EXPECTED / file.name)
