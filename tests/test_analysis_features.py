"""``analyze features``: positions and marks, the authors' definitions, MC variance, files, refusals."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analysis_models import cifar_model, cifar_model_file
from conftest import assert_one_line_error, assert_png, run_cli
from smoothbench import EvalSettings, ModelOptions
from smoothbench.analysis.features import feature_positions, feature_statistics
from smoothbench.data.info import NORMALIZATION
from smoothbench.errors import UserError
from smoothbench.pipelines.analyze import FeaturesRequest, run_features

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch(cifar10_test) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eight real CIFAR-10 test images, normalised with the CIFAR-10 recipe."""
    images, labels = cifar10_test
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATION["cifar10"])
    x = (torch.from_numpy(images[:8]).permute(0, 3, 1, 2).float() / 255 - mean) / std
    return x, torch.from_numpy(labels[:8]), torch.arange(8)


def test_positions_mark_smoothing_layers_and_downsampling():
    positions = feature_positions(cifar_model(smoothing="tanh-blur"), torch.zeros(1, 3, 32, 32))
    assert [p.module for p in positions] == ["layer0", "layer1.0", "layer1.1", "smooth1.0", "layer2.0", "layer2.1",
                                             "smooth2.0", "layer3.0", "layer3.1", "smooth3.0", "layer4.0", "layer4.1",
                                             "smooth4.0"]
    assert [p.module for p in positions if p.smoothing] == ["smooth1.0", "smooth2.0", "smooth3.0", "smooth4.0"]
    assert [p.module for p in positions if p.downsample] == ["layer2.0", "layer3.0", "layer4.0"]
    assert [p.height for p in positions if p.smoothing] == [33, 18, 10, 6]  # the paper code's blur grows maps
    plain = feature_positions(cifar_model(smoothing="none"), torch.zeros(1, 3, 32, 32))
    assert len(plain) == 9 and not any(p.smoothing for p in plain)


def test_statistics_follow_the_authors_definitions(batch):
    """Feature-map variance and the Fourier curve equal the notebooks' formulas on hooked maps."""
    model = cifar_model(smoothing="tanh-blur")
    x, y, ids = batch
    positions = feature_positions(model, x[:1])
    rows, curves = feature_statistics(model, [(x[:5], y[:5], ids[:5]), (x[5:], y[5:], ids[5:])], positions,
                                      mc_samples=4, seed=0)
    maps = {}
    hooks = [model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: maps.setdefault(name, o))
             for name in ("layer1.0", "smooth1.0")]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    for name, z in maps.items():
        row = rows[rows["module"] == name].iloc[0]
        assert row["fmap_variance"] == pytest.approx(float(z.var(dim=[-1, -2]).mean(dim=[0, 1])), rel=1e-5)
        h, w = z.shape[-2:]
        f = torch.roll(torch.fft.fft2(z).abs().add(1e-6).log(), shifts=(h // 2, w // 2), dims=(2, 3)).mean(dim=(0, 1))
        authors = f.diag()[h // 2:]
        curve = curves[curves["module"] == name]
        torch.testing.assert_close(torch.tensor(curve["dlog_amplitude"].to_numpy()), (authors - authors[0]).double(),
                                   rtol=1e-4, atol=1e-4)
        assert row["fourier_high"] == pytest.approx(float(authors[-1] - authors[0]), abs=1e-4)
        assert curve["freq"].iloc[0] == 0 and curve["freq"].iloc[-1] == pytest.approx(2 * (len(authors) - 1) / h)
    assert (rows["mc_variance"] == 0).all() and (rows["mc_samples"] == 1).all()  # deterministic: one forward


def test_mc_variance_is_positive_for_an_mc_model(batch):
    x, y, ids = batch
    model = cifar_model(method="mcdo", smoothing="tanh-blur")
    positions = feature_positions(model, x[:1])
    rows, _ = feature_statistics(model, [(x, y, ids)], positions, mc_samples=3, seed=0)
    assert rows["mc_variance"].iloc[0] == 0  # the stem runs before the first dropout layer
    assert (rows["mc_variance"].iloc[1:] > 0).all() and (rows["mc_samples"] == 3).all()
    again, _ = feature_statistics(model, [(x[:3], y[:3], ids[:3]), (x[3:], y[3:], ids[3:])], positions, mc_samples=3,
                                  seed=0)
    pd.testing.assert_series_equal(rows["mc_variance"], again["mc_variance"], rtol=1e-5)  # keyed masks: any batching
    assert not model.mc_enabled


def test_run_features_writes_rows_curves_and_a_depth_plot(cifar10_dir, tmp_path):
    path = cifar_model_file(tmp_path, method="mcdo")
    result = run_features(FeaturesRequest(path, EvalSettings(subset=8, batch_size=8, device="cpu"),
                                          data_dir=cifar10_dir, mc_samples=2, out=tmp_path / "features"))
    rows = pd.read_csv(result.files[0])
    assert len(rows) == 13 and rows["depth"].iloc[[0, -1]].tolist() == [0.0, 1.0]
    for column in ("module", "smoothing", "downsample", "fmap_variance", "mc_variance", "fourier_high", "n_images",
                   "data_fingerprint", "checkpoint_sha256", "seed", "split"):
        assert column in rows.columns, column
    assert (rows["n_images"] == 8).all() and (rows["split"] == "test").all() and rows["smoothing"].sum() == 4
    curves = pd.read_csv(result.files[1])
    assert set(curves["module"]) == set(rows["module"]) and (curves.groupby("module")["freq"].min() == 0).all()
    assert_png(result.files[2])


def test_a_model_without_feature_maps_is_refused(cifar10_dir, tmp_path):
    builder = tmp_path / "mlp.py"
    builder.write_text("import torch.nn as nn\n\ndef build(num_classes=10):\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))\n")
    with pytest.raises(UserError, match="computes no 4-D feature maps"):
        run_features(FeaturesRequest(f"py:{builder}:build", EvalSettings(subset=4, device="cpu"),
                                     ModelOptions(dataset="cifar10"), data_dir=cifar10_dir, out=tmp_path / "f"))
    with pytest.raises(UserError, match="mc_samples must be at least 2"):
        FeaturesRequest("m.pt", mc_samples=1)


@pytest.mark.slow
def test_cli_features_and_hessian_end_to_end(cifar10_dir, tmp_path):
    path = cifar_model_file(tmp_path, method="mcdo")
    proc = run_cli("analyze", "features", path, "--data-dir", cifar10_dir, "--subset", "8", "--mc-samples", "2",
                   "--device", "cpu", "--out", tmp_path / "features")
    assert "smooth4.0" in proc.stdout and "fmap_variance" in proc.stdout
    assert_png(tmp_path / "features" / f"{path.stem}_test_features_depth.png")
    proc = run_cli("analyze", "hessian", path, "--data-dir", cifar10_dir, "--split", "test", "--subset", "16",
                   "--batches", "2", "--batch-size", "8", "--iterations", "5", "--trace-samples", "2", "--device", "cpu",
                   "--out", tmp_path / "hessian")
    assert "top eigenvalue over 2 batches" in proc.stderr  # status lines go to stderr, tables to stdout
    rows = pd.read_csv(tmp_path / "hessian" / f"{path.stem}_test_hessian.csv")
    assert list(rows["batch"]) == [0, 1] and rows["eigenvalue_1"].notna().all() and rows["trace"].notna().all()
    assert_png(tmp_path / "hessian" / f"{path.stem}_test_hessian_spectrum.png")
    proc = run_cli("analyze", "hessian", path, "--data-dir", cifar10_dir, "--split", "test", "--subset", "16",
                   "--batches", "3", "--batch-size", "8", "--out", tmp_path / "hessian", check=False)
    assert_one_line_error(proc, "3 batches of 8 images need 24 images")
