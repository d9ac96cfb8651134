"""Post-hoc temperature scaling: the fit against brute force and an independent optimiser, the calibrated
predictions of one pass against their definition, and ``--calibrate`` through eval, corrupt and the CLI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import assert_one_line_error, random_images, run_cli
from smoothbench import create_model
from smoothbench.data import ResidentImages
from smoothbench.errors import UserError
from smoothbench.evaluation.ensembles import predict
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.evaluation.temperature import (TEMPERATURE_BOUNDS, fit_mean_temperature, fit_member_temperature,
                                                member_scaled_nll, scale_mean)

CPU = torch.device("cpu")


def overconfident(n: int = 3000, k: int = 10, passes: int = 1, sharpen: float = 3.0, seed: int = 0):
    """Logits whose labels are drawn from softmax(z), reported ``sharpen`` times too large: the ideal T is near
    ``sharpen``."""
    rng = np.random.default_rng(seed)
    true = rng.normal(0, 1.5, size=(n, k))
    labels = np.array([rng.choice(k, p=np.exp(z - z.max()) / np.exp(z - z.max()).sum()) for z in true])
    noise = rng.normal(0, 0.3, size=(passes, n, k))
    return sharpen * (true[None] + noise), labels


def brute_force_nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """The NLL of the member-averaged, temperature-scaled softmax, image by image."""
    total = 0.0
    for i, label in enumerate(labels):
        mean = 0.0
        for z in logits[:, i]:
            e = np.exp(z / temperature - (z / temperature).max())
            mean += e[label] / e.sum()
        total -= math.log(mean / len(logits))
    return total / len(labels)


def test_member_scaled_nll_matches_a_loop():
    logits, labels = overconfident(n=50, passes=3)
    for t in (0.5, 1.0, 2.7):
        assert member_scaled_nll(logits, labels, t) == pytest.approx(brute_force_nll(logits, labels, t), rel=1e-12)


@pytest.mark.parametrize("passes", [1, 4])
def test_fitted_temperature_is_the_minimum_of_a_dense_grid(passes):
    logits, labels = overconfident(n=1500, passes=passes)
    fitted = fit_member_temperature(logits, labels)
    coarse = np.exp(np.linspace(math.log(0.5), math.log(10), 121))  # 2.5 % steps
    best = coarse[int(np.argmin([member_scaled_nll(logits, labels, t) for t in coarse]))]
    fine = np.linspace(best / 1.03, best * 1.03, 301)  # 0.02 % steps around the coarse minimum
    nlls = [member_scaled_nll(logits, labels, t) for t in fine]
    assert fitted == pytest.approx(fine[int(np.argmin(nlls))], rel=5e-4)
    assert member_scaled_nll(logits, labels, fitted) <= min(nlls) + 1e-9
    assert 2.0 < fitted < 4.0  # the logits were 3x too sharp


def test_fit_agrees_with_lbfgs_on_log_temperature():
    """An independent optimiser (torch LBFGS on log T, autograd) finds the same temperature."""
    logits, labels = overconfident(passes=2, sharpen=0.5)
    z, y = torch.as_tensor(logits), torch.as_tensor(labels)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        optimiser.zero_grad()
        probs = torch.softmax(z / log_t.exp(), dim=-1).mean(0)
        loss = -torch.log(probs.gather(1, y[:, None])).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    assert fit_member_temperature(logits, labels) == pytest.approx(float(log_t.detach().exp()), rel=1e-4)


def test_mean_scaling_equals_member_scaling_for_one_pass():
    logits, labels = overconfident(passes=1)
    probs = torch.softmax(torch.as_tensor(logits[0]), -1).numpy()
    assert fit_mean_temperature(probs, labels) == pytest.approx(fit_member_temperature(logits, labels), rel=1e-4)
    np.testing.assert_allclose(scale_mean(probs, 2.5), torch.softmax(torch.as_tensor(logits[0]) / 2.5, -1).numpy(),
                               rtol=1e-9, atol=1e-12)


def test_fit_stays_within_its_bounds():
    logits, labels = overconfident(n=500)
    wrong = (labels + 1) % 10  # labels the model is sure are wrong: the NLL falls as T grows
    assert fit_member_temperature(logits, wrong) == pytest.approx(TEMPERATURE_BOUNDS[1], rel=1e-3)


# ---------------------------------------------------------------------------------------------------------
# one pass: calibrated predictions, mean logits, every pass's logits, class masks
def tiny(seed: int = 0, num_classes: int = 10):
    torch.manual_seed(seed)
    return create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=4, num_classes=num_classes,
                        dataset="synthetic", mean=(0.5,) * 3, std=(0.25,) * 3).eval()


@pytest.fixture(scope="module")
def images():
    return ResidentImages.from_numpy("synthetic", "test", random_images(20, seed=3), np.arange(20) % 10,
                                     [str(i) for i in range(10)])


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("mc_chunk", [1, 3])
def test_one_pass_gives_the_calibrated_prediction_of_its_own_logits(images, mc_chunk):
    temperatures = {1: 0.7, 3: 2.0, 5: 1.3}
    out = predict([tiny()], images, [1, 3, 5], seed=2, batch_size=8, mc_chunk=mc_chunk, device=CPU, logits=True,
                  temperatures=temperatures, member_logits=True)
    z = out.member_logits.astype(np.float64)
    assert z.shape == (5, 20, 10)
    for k, t in temperatures.items():
        np.testing.assert_allclose(out.calibrated[k], softmax(z[:k] / t).mean(0), atol=2e-6)
        np.testing.assert_allclose(out.probs[k], softmax(z[:k]).mean(0), atol=2e-6)
        np.testing.assert_allclose(out.mean_logits[k], z[:k].mean(0), atol=2e-5)
    assert out.temperatures == temperatures


def test_deep_ensemble_members_scale_every_pass(images):
    models = [tiny(0), tiny(1)]
    out = predict(models, images, [1, 2], mc_samples=3, seed=1, batch_size=8, device=CPU, temperatures={2: 1.7},
                  member_logits=True)
    z = out.member_logits.astype(np.float64)
    assert z.shape == (6, 20, 10)  # member j owns passes 3j..3j+2
    members = [softmax(z[3 * j: 3 * j + 3] / 1.7).mean(0) for j in range(2)]
    np.testing.assert_allclose(out.calibrated[2], np.mean(members, axis=0), atol=2e-6)


def test_class_mask_restricts_the_softmax(images):
    mask = [7, 2, 5]
    full = predict([tiny()], images, [2], seed=4, device=CPU, member_logits=True)
    masked = predict([tiny()], images, [2], seed=4, device=CPU, class_mask=mask, member_logits=True)
    np.testing.assert_allclose(masked.member_logits, full.member_logits[:, :, mask], atol=1e-6)
    np.testing.assert_allclose(masked.probs[2], softmax(full.member_logits[:, :, mask].astype(np.float64)).mean(0),
                               atol=2e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"class_mask": [3, 3]}, "distinct indices"), ({"class_mask": [0, 10]}, "distinct indices in 0..9"),
    ({"temperatures": {4: 1.0}}, "sizes \\[4\\] that were not asked for"),
    ({"temperatures": {1: 0.0}}, "positive and finite"),
])
def test_predict_refuses_bad_masks_and_temperatures(images, kwargs, message):
    with pytest.raises(UserError, match=message):
        predict([tiny()], images, [1], device=CPU, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"calibrate": "platt"}, "calibrate must be one of temperature, temperature-mean"),
    ({"calibrate": "temperature", "calibration_split": 0}, "calibration_split must be at least 1"),
    ({"calibration_data": "x"}, "calibration_data is for calibrate"),
])
def test_settings_refuse_bad_calibration(kwargs, message):
    with pytest.raises(UserError, match=message):
        EvalSettings(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# eval / corrupt / CLI (a briefly trained run folder)
@pytest.mark.slow
def test_eval_calibrates_on_held_out_training_images(trained_synthetic_mcdo):
    from smoothbench.data import get_dataset
    from smoothbench.evaluation.calibration import CalibrationWarning
    from smoothbench.models.store import load
    from smoothbench.pipelines.eval import EvalRequest, run_eval

    settings = EvalSettings(ensembles="1,3", subset=200, calibrate="temperature", calibration_split=300, device="cpu",
                            seed=1)
    with pytest.warns(CalibrationWarning, match="trained on 300 of the 300 calibration images"):
        result = run_eval(EvalRequest([trained_synthetic_mcdo], settings))
    rows = result.rows.set_index("ensemble_size")
    assert (rows.calibration == "temperature:synthetic/train[4700:5000]").all()
    # independent: the same 300 images, every pass's logits, the fit done here
    train = get_dataset("synthetic", None, "train")
    held_out = train.select(np.arange(4700, 5000))
    passes = predict([load(trained_synthetic_mcdo)], held_out, [3], seed=1, device=CPU, member_logits=True)
    for k in (1, 3):
        expected = fit_member_temperature(passes.member_logits[:k], passes.labels)
        assert rows.loc[k, "temperature"] == pytest.approx(expected, rel=1e-6)
    # the scaled columns are the row metrics of the scaled prediction
    from smoothbench import metrics

    assert rows.loc[3, "nll_ts"] == pytest.approx(
        metrics.nll(result.predictions.calibrated[3], result.predictions.labels), rel=1e-9)
    assert rows.loc[3, "acc"] == pytest.approx(metrics.accuracy(result.predictions.probs[3], result.predictions.labels))


@pytest.mark.slow
def test_holdout_keeps_calibration_images_unseen_and_silences_the_warning(tmp_path):
    from smoothbench import ModelSpec, TrainConfig, run_training
    from smoothbench.pipelines.eval import EvalRequest, run_eval
    from smoothbench.training.loop import training_images

    cfg = TrainConfig(model=ModelSpec("resnet18", method="mcdo", width=4), dataset="synthetic", epochs=1,
                      eval_subset=50, subset=500, holdout=400, device="cpu", out=str(tmp_path / "run"))
    train = training_images(cfg)
    assert len(train) == 500 and int(train.labels.shape[0]) == 500
    assert training_images(TrainConfig(dataset="synthetic", holdout=400)).images.shape[0] == 4600
    run_training(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no CalibrationWarning: the 400 images were never trained on
        for mode in ("temperature", "temperature-mean"):
            result = run_eval(EvalRequest([tmp_path / "run"], EvalSettings(
                ensembles="1,2", subset=100, calibrate=mode, calibration_split=400, device="cpu")))
            assert result.rows.temperature.between(*TEMPERATURE_BOUNDS).all()
    with pytest.raises(UserError, match="holdout 5000 leaves no training images"):
        training_images(TrainConfig(dataset="synthetic", holdout=5000))


@pytest.mark.slow
def test_corruption_cells_reuse_the_clean_fitted_temperature(trained_synthetic_mcdo, tmp_path):
    from smoothbench.evaluation.corruption_cells import CorruptionSweep
    from smoothbench.pipelines.corrupt import SweepRequest, run_corruption_sweep

    settings = EvalSettings(ensembles="2", subset=60, calibrate="temperature-mean", calibration_split=200,
                            device="cpu")
    sweep = CorruptionSweep("synthetic-c", generate=True, corruptions="gaussian_noise,contrast", severities="1,5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run_corruption_sweep(SweepRequest([trained_synthetic_mcdo], sweep, settings, out=tmp_path / "c.csv"))
    rows = pd.read_csv(tmp_path / "c.csv")
    assert len(rows) == 5 and rows.temperature.nunique() == 1  # clean + 4 cells, one temperature
    assert (rows.calibration == "temperature-mean:synthetic/train[4800:5000]").all()
    assert len(result.summary) == 1
    # rerun: every cell is found done (the calibration is part of the key), nothing recomputed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run_corruption_sweep(SweepRequest([trained_synthetic_mcdo], sweep, settings, out=tmp_path / "c.csv"))
    assert len(again.rows) == 0 and len(pd.read_csv(tmp_path / "c.csv")) == 5


@pytest.mark.slow
def test_cli_calibrate(trained_synthetic_mcdo, tmp_path):
    out = tmp_path / "e.csv"
    proc = run_cli("eval", trained_synthetic_mcdo, "--ensembles", "1,2", "--subset", "80", "--calibrate",
                   "temperature", "--calibration-split", "200", "--out", out, "--quiet")
    assert "nll_ts" in proc.stdout and "temperature" in proc.stdout
    rows = pd.read_csv(out)
    assert {"nll_ts", "ece_ts", "acc_ts", "temperature", "calibration"} <= set(rows.columns)
    proc = run_cli("eval", trained_synthetic_mcdo, "--calibrate", "vector", "--quiet", check=False)
    assert_one_line_error(proc, "--calibrate must be one of temperature, temperature-mean")
    proc = run_cli("eval", trained_synthetic_mcdo, "--calibrate", "temperature", "--calibration-data",
                   tmp_path / "none", "--quiet", check=False)
    assert_one_line_error(proc, "not found")
