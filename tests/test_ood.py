"""``smoothbench ood``: the OOD sets in their real file formats, the rows against sklearn on scores computed
here, resuming, plots, and one-line errors."""

from __future__ import annotations

import json

import hashlib
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.special import logsumexp
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from conftest import assert_one_line_error, assert_png, random_images, run_cli
from smoothbench.data import ood as ood_data
from smoothbench.data.ood import get_ood_set, noise_images, parse_ood_sets
from smoothbench.errors import UserError

CPU = torch.device("cpu")


def test_noise_sets_are_seeded_and_have_their_stated_distribution():
    uniform = noise_images("noise", 200, 32, seed=0)
    gaussian = noise_images("noise-gaussian", 200, 32, seed=0)
    assert uniform.shape == gaussian.shape == (200, 3, 32, 32) and uniform.dtype == np.uint8
    np.testing.assert_array_equal(uniform, noise_images("noise", 200, 32, seed=0))
    assert not np.array_equal(uniform, noise_images("noise", 200, 32, seed=1))
    assert uniform.mean() == pytest.approx(127.5, abs=0.5) and uniform.std() == pytest.approx(73.9, abs=0.5)
    # N(128, 64) clipped to 0..255: 4.6 % of the mass is clipped, the std shrinks a little
    assert gaussian.mean() == pytest.approx(128, abs=0.5) and 60 < gaussian.std() < 64


@pytest.mark.parametrize("text, message", [
    ("", "needs at least one set"), ("mnist", "unknown OOD set 'mnist'"), ("folder:", "unknown OOD set"),
    ("noise,noise", "names a set twice"),
])
def test_parse_ood_sets_refuses(text, message):
    with pytest.raises(UserError, match=message):
        parse_ood_sets(text)


def write_svhn(folder, n: int = 30):
    from scipy.io import savemat

    images = random_images(n, seed=5)  # (N, H, W, 3)
    (folder / "svhn").mkdir(parents=True)
    path = folder / "svhn" / "test_32x32.mat"
    savemat(path, {"X": images.transpose(1, 2, 3, 0), "y": (np.arange(n) % 10 + 1)[:, None].astype(np.uint8)})
    return images, path


def test_svhn_reads_the_official_mat_layout(tmp_path):
    images, _ = write_svhn(tmp_path)
    with pytest.warns(UserWarning, match="differs from the official SVHN test file"):
        source = get_ood_set("svhn", "cifar10", tmp_path)
    assert len(source) == 30 and source.images.shape == (30, 3, 32, 32)
    np.testing.assert_array_equal(source.numpy_nhwc(), images)  # pixel for pixel, in order
    assert int(source.labels.abs().sum()) == 0


def test_svhn_download_is_checked_at_the_network_boundary(tmp_path, monkeypatch):
    served = tmp_path / "served"
    _, path = write_svhn(served)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr(ood_data, "SVHN_TEST", (path.as_uri(), "test_32x32.mat", md5))
    source = get_ood_set("svhn", "cifar10", tmp_path / "data", download=True)
    assert len(source) == 30 and (tmp_path / "data" / "svhn" / "test_32x32.mat").is_file()
    monkeypatch.setattr(ood_data, "SVHN_TEST", (path.as_uri(), "test_32x32.mat", "0" * 32))
    with pytest.raises(UserError, match="is corrupt"):
        get_ood_set("svhn", "cifar10", tmp_path / "other", download=True)


def test_missing_and_broken_sets_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="SVHN not found.*add download"):
        get_ood_set("svhn", "cifar10", tmp_path)
    with pytest.raises(UserError, match="DTD not found"):
        get_ood_set("textures", "cifar10", tmp_path)
    with pytest.raises(UserError, match="is the in-distribution set"):
        get_ood_set("cifar10", "cifar10", tmp_path)
    with pytest.raises(UserError, match="needs its folder: give ood_dir"):
        get_ood_set("svhn", "cifar10", None)
    (tmp_path / "svhn").mkdir()
    (tmp_path / "svhn" / "test_32x32.mat").write_bytes(b"not a mat file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UserError, match="is not SVHN's test_32x32.mat"):
            get_ood_set("svhn", "cifar10", tmp_path)
    with pytest.raises(UserError, match="no images"):
        get_ood_set(f"folder:{tmp_path / 'svhn'}", "cifar10", None)


def write_jpegs(folder, sizes, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i, (w, h) in enumerate(sizes):
        sub = folder / f"class{i % 2}" / ("deeper" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(sub / f"img{i}.jpg")


@pytest.mark.parametrize("name", ["textures", "folder"])
def test_folders_are_resized_to_the_model_size(tmp_path, name):
    root = tmp_path / "dtd" / "images" if name == "textures" else tmp_path / "anything"
    write_jpegs(root, [(300, 200), (64, 90), (45, 45), (500, 333), (32, 40)])
    set_name = "textures" if name == "textures" else f"folder:{root}"
    source = get_ood_set(set_name, "cifar10", tmp_path, workers=0)
    assert len(source) == 5 and int(source.labels.sum()) == 0
    batches = list(source.eval_batches(4, None, device=CPU))
    assert [tuple(x.shape) for x, _, _ in batches] == [(4, 3, 32, 32), (1, 3, 32, 32)]
    # the first file (300x200) resized: shorter side 32, then centre-cropped, with CIFAR-10's normalisation
    from smoothbench.data.preprocess import dataset_preprocess

    first = sorted(p for p in root.rglob("*.jpg"))[0]
    with Image.open(first) as image:
        small = image.convert("RGB").resize((round(image.width * 32 / min(image.size)),
                                             round(image.height * 32 / min(image.size))), Image.BILINEAR)
    left, top = (small.width - 32) // 2, (small.height - 32) // 2
    expected = np.asarray(small.crop((left, top, left + 32, top + 32)), dtype=np.float32) / 255
    mean, std = (v.numpy().reshape(3, 1, 1) for v in dataset_preprocess("cifar10").stats(CPU))
    got = batches[0][0][0].numpy() * std + mean
    assert np.abs(got - expected.transpose(2, 0, 1)).mean() < 0.02  # PIL vs torchvision antialiasing


def write_cifar100_test(folder, n: int = 40):
    base = folder / "cifar-100-python"
    base.mkdir(parents=True)
    images = random_images(n, seed=9)
    batch = {b"data": images.transpose(0, 3, 1, 2).reshape(n, -1), b"fine_labels": [int(v) for v in np.arange(n) % 100]}
    (base / "test").write_bytes(pickle.dumps(batch))
    (base / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))
    return images


def test_the_other_cifar_is_read_from_its_official_folder(tmp_path):
    images = write_cifar100_test(tmp_path)
    with pytest.warns(UserWarning, match="differ from the official files"):
        source = get_ood_set("cifar100", "cifar10", tmp_path)
    np.testing.assert_array_equal(source.numpy_nhwc(), images)


# ---------------------------------------------------------------------------------------------------------
# the pipeline (a briefly trained synthetic model)
def test_run_ood_rows_match_sklearn_on_scores_computed_here(trained_synthetic_mcdo, tmp_path):
    from smoothbench.data import get_dataset
    from smoothbench.evaluation.ensembles import predict
    from smoothbench.models.store import load
    from smoothbench.evaluation.settings import EvalSettings
    from smoothbench.pipelines.ood import OodRequest, run_ood

    settings = EvalSettings(ensembles="1,3", subset=120, seed=2, device="cpu")
    request = OodRequest([trained_synthetic_mcdo], "noise,noise-gaussian", "msp,energy,mutual_information,entropy",
                         settings, out=tmp_path / "ood.csv", plot=tmp_path / "plots")
    result = run_ood(request)
    rows = pd.read_csv(tmp_path / "ood.csv")
    assert len(rows) == len(result.rows) == 2 * 4 * 2
    assert set(rows.n_ood) == {120} and set(rows.n_images) == {120}
    # independent: predict both sets here (the OOD set keyed after the 120 test images) and score with sklearn
    model = load(trained_synthetic_mcdo)
    in_set = get_dataset("synthetic", None, "test", subset=120)
    noise = get_ood_set("noise", "synthetic", None, count=120, seed=2)
    p_in = predict([model], in_set, [1, 3], seed=2, device=CPU, logits=True, member_logits=True)
    p_out = predict([model], noise, [1, 3], seed=2, device=CPU, logits=True, member_logits=True, index_offset=120)
    for k in (1, 3):
        msp = np.concatenate([p_in.probs[k].max(1), p_out.probs[k].max(1)])
        mean_logits = np.concatenate([p_in.member_logits[:k].mean(0), p_out.member_logits[:k].mean(0)])
        energy = logsumexp(mean_logits.astype(np.float64), axis=1)
        is_in = np.r_[np.ones(120), np.zeros(120)]
        for score, values in (("msp", msp), ("energy", energy)):
            row = rows[(rows.ood_set == "noise") & (rows.score == score) & (rows.ensemble_size == k)].iloc[0]
            assert row.auroc_ood == pytest.approx(roc_auc_score(is_in, values), abs=1e-6)
            assert row.aupr_in == pytest.approx(average_precision_score(is_in, values), abs=1e-6)
            assert row.aupr_out == pytest.approx(average_precision_score(1 - is_in, -values), abs=1e-6)
            fpr, tpr, _ = roc_curve(is_in, values)
            assert row.fpr95 == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-9)
    size_one_mi = rows[(rows.score == "mutual_information") & (rows.ensemble_size == 1)]
    assert (size_one_mi.auroc_ood == 0.5).all()  # one member: no epistemic part, every image ties
    assert_png(tmp_path / "plots" / f"{trained_synthetic_mcdo.name}_synthetic_vs_noise_n3_energy.png")
    scores = pd.read_csv(tmp_path / "plots" / f"{trained_synthetic_mcdo.name}_synthetic_vs_noise_n3_scores.csv")
    assert len(scores) == 240 and set(scores.set) == {"in", "ood"}
    # resume: both sets are done, nothing is predicted again and no row is duplicated
    again = run_ood(OodRequest([trained_synthetic_mcdo], "noise,noise-gaussian",
                               "msp,energy,mutual_information,entropy", settings, out=tmp_path / "ood.csv"))
    assert again.skipped == ["noise", "noise-gaussian"] and again.profile.sample_forwards == 0
    assert len(pd.read_csv(tmp_path / "ood.csv")) == 16


def test_cli_ood_table_file_and_errors(trained_synthetic_mcdo, tmp_path):
    out = tmp_path / "o.csv"
    proc = run_cli("ood", trained_synthetic_mcdo, "--ood", "noise", "--scores", "msp,variation_ratio", "--ensembles",
                   "1,2", "--subset", "50", "--calibrate", "temperature", "--calibration-split", "100", "--out", out,
                   "--quiet")
    assert "auroc_ood" in proc.stdout and "variation_ratio" in proc.stdout
    rows = pd.read_csv(out)
    assert len(rows) == 4 and rows.calibration.str.startswith("temperature:synthetic/train[").all()
    assert rows.temperature.notna().all()
    board = run_cli("leaderboard", out, "--view", "ood", "--ensemble-size", "2", "--format", "json").stdout
    document = json.loads(board)
    assert document["view"] == "ood" and document["sort"] == "auroc_ood"
    ranked = {(g["ood_set"], g["score"]) for g in document["groups"]}
    assert ranked == {("noise", "msp"), ("noise", "variation_ratio")} and len(document["models"]) == 2
    by_score = rows[rows.ensemble_size == 2].set_index("score")["auroc_ood"]
    for entry, group in zip(document["models"], document["groups"]):
        assert entry["metrics"]["auroc_ood"] == pytest.approx(by_score[group["score"]])
    for args, message in ((("--ood", "mnist"), "unknown OOD set 'mnist'"),
                          (("--scores", "odin"), "--scores must name scores from msp"),
                          (("--ood", "svhn", "--ood-dir", str(tmp_path)), "SVHN not found")):
        proc = run_cli("ood", trained_synthetic_mcdo, *args, "--quiet", check=False)
        assert_one_line_error(proc, message)
