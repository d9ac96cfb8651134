"""``analyze landscape``: grid and directions as defined, weights restored, the centre equals ``eval``, files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis_models import cifar_model, cifar_model_file
from conftest import assert_one_line_error, assert_png, run_cli
from smoothbench import EvalRequest, EvalSettings, run_eval
from smoothbench.analysis.images import AugmentedImages, analysis_images
from smoothbench.analysis.landscape import grid_coordinates, landscape, moving, random_directions
from smoothbench.data.resident import ResidentImages
from smoothbench.errors import UserError
from smoothbench.evaluation.members import Members
from smoothbench.pipelines.analyze import LandscapeRequest, run_landscape

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mc_file(tmp_path_factory):
    return cifar_model_file(tmp_path_factory.mktemp("models"), method="mcdo")


def test_grid_has_the_trained_weights_at_its_centre():
    assert grid_coordinates(21, 1.0)[10] == 0.0
    assert grid_coordinates(21, 0.1)[::10] == [-0.1, 0.0, 0.1]
    assert grid_coordinates(4, 1.0) == pytest.approx([-1, -1 / 3, 1 / 3, 1])
    with pytest.raises(UserError, match="grid must be at least 2"):
        grid_coordinates(1, 1.0)
    with pytest.raises(UserError, match="grid must be at least 2"):
        LandscapeRequest("m.pt", grid=1)
    with pytest.raises(UserError, match="extent must be positive"):
        LandscapeRequest("m.pt", extent=0.0)
    with pytest.raises(UserError, match="split must be train or test"):
        LandscapeRequest("m.pt", split="valid")
    with pytest.raises(UserError, match="normalization must be one of filter, paper"):
        LandscapeRequest("m.pt", normalization="layer")


def test_directions_are_normalised_as_defined():
    model = cifar_model()
    weights = {id(p): p for p in model.parameters()}
    filt = random_directions(model, "filter", seed=3)
    assert {id(p) for p in filt.params} == {id(p) for p in weights.values() if p.dim() >= 2}  # no bias or BN
    for p, dx, dy in zip(filt.params, filt.x, filt.y):
        for d in (dx, dy):  # Li et al.: every filter as long as the weights' filter
            torch.testing.assert_close(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-5, atol=0)
    paper = random_directions(model, "paper", seed=3)
    for p, dx in zip(paper.params, paper.x):  # the paper code: norms over dim 0, across filters
        torch.testing.assert_close(dx.norm(dim=0), p.detach().norm(dim=0), rtol=1e-5, atol=1e-7)
    again = random_directions(model, "filter", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(filt.x + filt.y, again.x + again.y))
    other = random_directions(model, "filter", seed=4)
    assert not torch.equal(filt.x[0], other.x[0]) and not torch.equal(filt.x[0], filt.y[0])


def test_weights_are_restored_exactly(cifar10_test):
    model = cifar_model(method="mcdo")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels = cifar10_test
    source = ResidentImages.from_numpy("cifar10", "test", images[:8], labels[:8], [str(i) for i in range(10)])
    settings = EvalSettings(ensembles="1,2", device=torch.device("cpu"), batch_size=8)
    members = Members([model], ["m.pt"])
    model.checkpoint_sha256 = "0"
    directions = random_directions(model, "filter", seed=0)
    rows = landscape(members, source, settings, directions, grid_coordinates(2, 0.5), weight_decay=0.0)
    assert len(rows) == 2 * 2 * 2 and set(rows["x"]) == {-0.5, 0.5}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(RuntimeError, match="interrupted"), moving(directions) as move:
        move(0.5, -0.5)
        assert not torch.equal(before["layer1.0.conv1.weight"], model.state_dict()["layer1.0.conv1.weight"])
        raise RuntimeError("interrupted")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_augmented_training_images_are_drawn_once_from_the_seed(cifar10_test):
    images, labels = cifar10_test
    train = ResidentImages.from_numpy("cifar10", "train", images[:40], labels[:40], [str(i) for i in range(10)])
    drawn = analysis_images(train, None, augment=True, seed=1, device=torch.device("cpu"))
    again = analysis_images(train, None, augment=True, seed=1, device=torch.device("cpu"), limit=30)
    other = analysis_images(train, None, augment=True, seed=2, device=torch.device("cpu"))
    assert isinstance(drawn, AugmentedImages) and len(drawn) == 40 and len(again) == 30
    assert torch.equal(drawn.images[:30], again.images) and not torch.equal(drawn.images, other.images)
    assert sorted(drawn.labels.tolist()) == sorted(labels[:40].tolist())  # a shuffled epoch of the same images
    assert drawn.fingerprint != other.fingerprint != train.fingerprint
    x, y, idx = next(drawn.eval_batches(16, device="cpu"))
    assert torch.equal(x, drawn.images[:16]) and idx.tolist() == list(range(16))
    assert analysis_images(train, None, augment=False, seed=1, device=torch.device("cpu")) is train


def test_centre_equals_eval_and_files_hold_the_grid(mc_file, cifar10_dir, tmp_path):
    settings = EvalSettings(ensembles="1,2", subset=24, batch_size=8, device="cpu", seed=3)
    result = run_landscape(LandscapeRequest(mc_file, settings, data_dir=cifar10_dir, split="test", grid=3,
                                            out=tmp_path / "ls"))
    evaluated = run_eval(EvalRequest([mc_file], settings, data_dir=cifar10_dir)).rows
    rows = pd.read_csv(result.files[0])
    assert len(rows) == 3 * 3 * 2 and rows[["x", "y"]].drop_duplicates().shape == (9, 2)
    assert list(rows["y"].iloc[::6]) == [-1.0, 0.0, 1.0] and list(rows["x"].iloc[:6:2]) == [-1.0, 0.0, 1.0]
    centre = result.rows[(result.rows["x"] == 0) & (result.rows["y"] == 0)].reset_index(drop=True)
    shared = [c for c in evaluated.columns if c in centre.columns]
    assert len(shared) == len(evaluated.columns)  # every eval column, with the same value
    pd.testing.assert_frame_equal(centre[shared], evaluated[shared])
    assert (rows["weight_decay"] == 5e-4).all()  # CIFAR's recipe, as the authors
    np.testing.assert_allclose(rows["loss"], rows["nll"] + 5e-4 * rows["l2"], rtol=1e-12)
    for column in ("acc", "ece", "brier", "l1", "l2_squared", "normalization", "extent", "grid", "data_fingerprint",
                   "checkpoint_sha256", "seed", "augment", "smoothbench_version"):
        assert column in rows.columns, column
    assert rows["loss"].nunique() > 1 and not rows["augment"].any()
    assert [p.name for p in result.files] == [f"{mc_file.stem}_test_landscape{s}" for s in
                                              (".csv", "_contour.png", "_slice.png")]
    for png in result.files[1:]:
        assert_png(png)


@pytest.mark.slow
def test_cli_landscape_centre_equals_cli_eval(mc_file, cifar10_dir, tmp_path):
    common = ("--data-dir", cifar10_dir, "--subset", "32", "--ensembles", "1,3", "--device", "cpu", "--seed", "2")
    run_cli("analyze", "landscape", mc_file, "--grid", "3", "--split", "test", "--extent", "0.5", "--quiet",
            "--out", tmp_path / "ls", *common)
    run_cli("eval", mc_file, "--quiet", "--out", tmp_path / "eval.csv", *common)
    grid = pd.read_csv(tmp_path / "ls" / f"{mc_file.stem}_test_landscape.csv")
    evaluated = pd.read_csv(tmp_path / "eval.csv")
    centre = grid[(grid["x"] == 0) & (grid["y"] == 0)].reset_index(drop=True)
    assert len(centre) == 2 and set(grid["x"]) == {-0.5, 0.0, 0.5}
    pd.testing.assert_frame_equal(centre[list(evaluated.columns)], evaluated)


@pytest.mark.slow
def test_cli_refuses_a_one_point_grid(mc_file, tmp_path):
    proc = run_cli("analyze", "landscape", mc_file, "--grid", "1", "--out", tmp_path, check=False)
    assert_one_line_error(proc, "--grid must be at least 2")
