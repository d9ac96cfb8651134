"""Natural-shift sets, CIFAR-10H soft labels, published subset lists and the ``run_shift`` pipeline.

Every file is written in its real format (``.npy`` arrays with numpy, JPEG folders with PIL); the pipeline
runs real narrow models on the real CIFAR-10 test set (the shared copy) and is checked against a forward
pass and metrics computed here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, run_cli
from smoothbench import create_model, metrics
from smoothbench.data import shifts
from smoothbench.data.download import md5_file
from smoothbench.data.imagenet_wnids import IMAGENET_A_WNIDS, IMAGENET_R_WNIDS, IMAGENET_WNIDS
from smoothbench.data.preprocess import dataset_preprocess
from smoothbench.data.shifts import (class_mask, get_shift, load_cifar10_1, load_cifar10h, read_subset_file,
                                     shift_names)
from smoothbench.data.subset import sample_indices
from smoothbench.errors import UserError
from smoothbench.evaluation.members import Members
from smoothbench.evaluation.settings import EvalSettings
from smoothbench.metrics.soft_labels import soft_label_nll
from smoothbench.models.store import save_model
from smoothbench.pipelines.shift import ShiftRequest, mask_for, masked, parse_sets, run_shift, shift_differences

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


# ---------------------------------------------------------------------------------------------------------
# helpers: the real file formats


def write_cifar10_1(folder, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "cifar10.1_v6_data.npy", np.ascontiguousarray(images))
    np.save(folder / "cifar10.1_v6_labels.npy", np.asarray(labels))
    return folder


def random_cifar(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), (np.arange(n) % 10).astype(np.int32)


def write_jpegs(root, layout, size=(40, 30), ext=".JPEG"):
    """``layout``: {class folder: number of images}; returns the relative paths written, sorted."""
    rng = np.random.default_rng(0)
    written = []
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            name = f"{folder}/img_{k:03d}{ext}"
            Image.fromarray(pixels).save(root / name, quality=90)
            written.append(name)
    return sorted(written)


# ---------------------------------------------------------------------------------------------------------
# class lists and masks


def test_wnid_lists_are_the_published_facts():
    assert len(IMAGENET_WNIDS) == 1000 == len(set(IMAGENET_WNIDS))
    assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)
    assert (IMAGENET_WNIDS[0], IMAGENET_WNIDS[1], IMAGENET_WNIDS[-1]) == ("n01440764", "n01443537", "n15075141")
    for wnids in (IMAGENET_A_WNIDS, IMAGENET_R_WNIDS):
        assert len(wnids) == 200 == len(set(wnids)) and list(wnids) == sorted(wnids)
        assert set(wnids) <= set(IMAGENET_WNIDS)


def test_class_masks_index_the_1000_classes_in_sorted_wnid_order():
    a, r = class_mask("imagenet-a"), class_mask("imagenet-r")
    for mask, wnids in ((a, IMAGENET_A_WNIDS), (r, IMAGENET_R_WNIDS)):
        assert mask.dtype == np.int64 and mask.shape == (200,)
        assert (np.diff(mask) > 0).all() and 0 <= mask.min() and mask.max() < 1000
        assert [IMAGENET_WNIDS[i] for i in mask] == list(wnids)
    # Hendrycks' thousand_k_to_200 (natural-adv-examples eval.py) starts {6: 0, 11: 1, 13: 2, 15: 3}
    assert list(a[:4]) == [6, 11, 13, 15]
    # ImageNet-R's set holds n01443537, n01484850, n01494475, n01498041: indices 1, 2, 4, 6
    assert list(r[:4]) == [1, 2, 4, 6]
    for name in ("cifar10.1", "imagenet-v2", "imagenet-sketch"):
        assert class_mask(name) is None


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown shift set 'cifar10.2': choose one of cifar10.1, imagenet-v2"):
        get_shift("cifar10.2", "/nowhere")
    with pytest.raises(UserError, match=r"cifar10h is soft labels for the CIFAR-10 test set"):
        class_mask("cifar10h")
    assert shift_names() == ("cifar10.1", "imagenet-v2", "imagenet-a", "imagenet-r", "imagenet-sketch")


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10.1


def test_cifar10_1_loads_the_arrays_and_warns_on_unofficial_files(tmp_path, cifar10_test):
    images, labels = cifar10_test[0][:50], cifar10_test[1][:50].astype(np.int32)
    write_cifar10_1(tmp_path / "CIFAR-10.1", images, labels)
    with pytest.warns(UserWarning, match=r"cifar10.1: cifar10.1_v6_data.npy, cifar10.1_v6_labels.npy in .* differ "
                                         r"from the published files \(md5\)"):
        source, mask = get_shift("cifar10.1", tmp_path)
    assert mask is None
    assert (source.name, source.split, source.num_classes, len(source)) == ("cifar10.1", "test", 10, 50)
    assert source.classes[0] == "airplane" and source.classes[9] == "truck"
    np.testing.assert_array_equal(source.numpy_nhwc(), images)
    np.testing.assert_array_equal(source.labels.numpy(), labels)
    # the clean dataset's recipe (its name has none of its own), kept by select()
    assert source.effective(None) == dataset_preprocess("cifar10").with_(crop=32)
    part = source.select([3, 1])
    assert isinstance(part, shifts.ShiftImages) and part.base == "cifar10"
    assert part.effective(None) == source.effective(None)
    np.testing.assert_array_equal(part.labels.numpy(), labels[[3, 1]])
    x, _, _ = next(source.eval_batches(8, device="cpu"))
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    expected = (torch.from_numpy(images[:8]).permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)


@pytest.mark.filterwarnings("ignore:cifar10.1")
def test_cifar10_1_is_found_in_the_usual_folders(tmp_path):
    images, labels = random_cifar(12)
    for folder in ("", "CIFAR-10.1/datasets", "cifar10.1"):
        root = tmp_path / (folder.replace("/", "_") or "flat")
        write_cifar10_1(root / folder, images, labels)
        assert len(load_cifar10_1(root)) == 12


@pytest.mark.filterwarnings("ignore:cifar10.1")
@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((4, 32, 32), np.uint8), np.zeros(4, np.int32), r"holds uint8 \[4, 32, 32\], not uint8 images"),
    (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.int32), r"holds float32 .* not uint8 images"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(5, np.int32), r"holds \[5\] labels for 4 images"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 10, 2]), r"labels in 0\.\.10, outside the 10 classes"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.array([0.0, 1.0, 2.0, 3.0]), r"float64 values labels, not integer"),
])
def test_cifar10_1_refuses_malformed_arrays(tmp_path, images, labels, message):
    write_cifar10_1(tmp_path, images, labels)
    with pytest.raises(UserError, match=message):
        load_cifar10_1(tmp_path)


def test_cifar10_1_refuses_missing_and_pickled_files(tmp_path):
    with pytest.raises(UserError, match=r"cifar10.1 not found: cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy "
                                        r"are not in any of .*CIFAR-10.1, .*; use download to fetch them"):
        load_cifar10_1(tmp_path)
    with pytest.raises(UserError, match=r"cifar10.1 needs a data folder: give data_dir"):
        load_cifar10_1(None)
    write_cifar10_1(tmp_path, *random_cifar(4))
    np.save(tmp_path / "cifar10.1_v6_labels.npy", np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    with (pytest.raises(UserError, match=r"cifar10.1_v6_labels.npy is not a readable .npy array"),
          pytest.warns(UserWarning, match="differ from the published files")):
        load_cifar10_1(tmp_path)


def test_cifar10_1_download_checks_each_files_md5(tmp_path, monkeypatch):
    published = write_cifar10_1(tmp_path / "published", *random_cifar(6, seed=3))
    files = tuple((f, md5_file(published / f)) for f in ("cifar10.1_v6_data.npy", "cifar10.1_v6_labels.npy"))
    fake = dataclasses.replace(shifts.SHIFTS["cifar10.1"], url=published.as_uri() + "/", files=files)
    monkeypatch.setitem(shifts.SHIFTS, "cifar10.1", fake)
    source = load_cifar10_1(tmp_path / "data", download=True)  # the md5s match: no warning
    assert (tmp_path / "data" / "CIFAR-10.1" / "cifar10.1_v6_data.npy").is_file() and len(source) == 6
    broken = dataclasses.replace(fake, files=((files[0][0], "0" * 32), files[1]))
    monkeypatch.setitem(shifts.SHIFTS, "cifar10.1", broken)
    with pytest.raises(UserError, match=r"download of .*cifar10.1_v6_data.npy is corrupt \(md5 [0-9a-f]{32}, "
                                        r"expected 0{32}\)"):
        load_cifar10_1(tmp_path / "other", download=True)
    assert not (tmp_path / "other" / "CIFAR-10.1" / "cifar10.1_v6_data.npy").exists()


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10H and the soft-label NLL


def dirichlet(n, k, seed, alpha=0.5):
    return np.random.default_rng(seed).dirichlet(np.full(k, alpha), size=n)


def test_cifar10h_loader_checks_the_array(tmp_path):
    soft = dirichlet(10000, 10, seed=0)
    (tmp_path / "cifar-10h").mkdir()
    np.save(tmp_path / "cifar-10h" / "cifar10h-probs.npy", soft)
    with pytest.warns(UserWarning, match=r"cifar10h: cifar10h-probs.npy in .* differ from the published files"):
        loaded = load_cifar10h(tmp_path)
    np.testing.assert_array_equal(loaded, soft)
    assert loaded.dtype == np.float64
    bad = {"shape": soft[:9999], "ints": (soft > 0.5).astype(np.int64), "sums": soft * 1.01,
           "negative": np.where(np.arange(10) == 0, -0.1, soft + 0.01),
           "nan": np.where(soft == soft.max(), np.nan, soft)}
    messages = {"shape": r"holds float64 \[9999, 10\], not float soft labels \[10000, 10\]",
                "ints": r"holds int64 \[10000, 10\], not float soft labels", "sums": r"rows that do not sum to 1",
                "negative": r"negative or non-finite values", "nan": r"negative or non-finite values"}
    for key, array in bad.items():
        np.save(tmp_path / "cifar-10h" / "cifar10h-probs.npy", array)
        with (pytest.warns(UserWarning, match="differ from the published"),
              pytest.raises(UserError, match=messages[key])):
            load_cifar10h(tmp_path)
    np.save(tmp_path / "cifar-10h" / "cifar10h-probs.npy", soft)
    with pytest.raises(UserError, match=r"cifar10h not found: cifar10h-probs.npy is not in any of .*; use download"):
        load_cifar10h(tmp_path / "elsewhere")


def test_soft_label_nll_matches_a_brute_force_loop():
    probs, soft = dirichlet(300, 7, seed=1), dirichlet(300, 7, seed=2)
    probs[0] = [1, 0, 0, 0, 0, 0, 0]  # a zero probability where people put mass: clipped, finite
    soft[1] = [0, 0, 0, 1, 0, 0, 0]
    total = 0.0
    for i in range(300):
        for k in range(7):
            if soft[i, k] > 0:
                total -= soft[i, k] * math.log(max(probs[i, k], 2.2250738585072014e-308))
    assert soft_label_nll(probs, soft) == pytest.approx(total / 300, rel=1e-12)
    as_tensors = soft_label_nll(torch.from_numpy(probs).float(), torch.from_numpy(soft))
    assert as_tensors == pytest.approx(total / 300, rel=1e-6)
    # minimised at p̄ = h, where it is the mean entropy of h
    assert soft_label_nll(soft, soft) == pytest.approx(metrics.per_image_entropy(soft).mean(), rel=1e-12)
    assert soft_label_nll(soft, soft) < soft_label_nll(probs, soft)


def test_soft_label_nll_with_one_hot_labels_is_the_ordinary_nll():
    probs = dirichlet(500, 10, seed=4)
    probs[:5] = np.eye(10)[[1, 2, 3, 4, 5]]  # zero probability on the label for rows 0..4 → the clip
    labels = np.random.default_rng(5).integers(0, 10, 500)
    assert soft_label_nll(probs, np.eye(10)[labels]) == metrics.nll(probs, labels)


@pytest.mark.parametrize("soft, message", [
    (np.full((3, 4), 0.25), r"soft_labels must have the shape of probs \(3, 5\)"),
    (np.full((3, 5), 0.3), r"soft_labels rows must sum to 1"),
    (np.where(np.eye(3, 5) > 0, -0.2, 0.3), r"soft_labels must be finite and non-negative"),
])
def test_soft_label_nll_refuses_bad_soft_labels(soft, message):
    with pytest.raises(ValueError, match=message):
        soft_label_nll(np.full((3, 5), 0.2), soft)


# ---------------------------------------------------------------------------------------------------------
# ImageNet shift folders


def test_imagenet_a_labels_are_positions_in_its_mask(tmp_path):
    chosen = [IMAGENET_A_WNIDS[i] for i in (0, 5, 199)]
    write_jpegs(tmp_path / "imagenet-a", {w: 2 for w in chosen})
    (tmp_path / "imagenet-a" / "README.txt").write_text("the release has one")
    source, mask = get_shift("imagenet-a", tmp_path, workers=0)
    assert (source.name, source.num_classes, len(source)) == ("imagenet-a", 200, 6)
    assert source.labels.tolist() == [0, 0, 5, 5, 199, 199]
    folders = [p.split("/")[-2] for p, _ in ((s[0].replace("\\", "/"), s[1]) for s in source.samples)]
    assert [IMAGENET_WNIDS[i] for i in mask[source.labels.numpy()]] == folders  # label → mask → the folder's WNID
    assert source.effective(None) == dataset_preprocess("imagenet").with_(crop=224)
    x, y, idx = next(source.eval_batches(4, device="cpu"))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 5, 5] and idx.tolist() == [0, 1, 2, 3]


def test_imagenet_r_refuses_a_folder_outside_its_classes(tmp_path):
    outside = next(w for w in IMAGENET_WNIDS if w not in set(IMAGENET_R_WNIDS))
    write_jpegs(tmp_path / "imagenet-r", {IMAGENET_R_WNIDS[3]: 1, outside: 1})
    with pytest.raises(UserError, match=rf"holds the folder '{outside}', which is not one of the 200 ImageNet-R "
                                        r"classes \(1 such folders\); point data_dir at"):
        get_shift("imagenet-r", tmp_path, workers=0)


def test_imagenet_v2_folders_are_class_indices(tmp_path):
    write_jpegs(tmp_path / "imagenetv2-matched-frequency-format-val", {"0": 1, "17": 2, "999": 1}, ext=".jpeg")
    source, mask = get_shift("imagenet-v2", tmp_path, workers=0)
    assert mask is None and source.num_classes == 1000 and source.classes == list(IMAGENET_WNIDS)
    assert source.labels.tolist() == [0, 17, 17, 999]
    # a copy re-sorted into WNID folders reads the same labels
    write_jpegs(tmp_path / "wnid" / "imagenet-v2", {IMAGENET_WNIDS[17]: 1, IMAGENET_WNIDS[999]: 1})
    assert get_shift("imagenet-v2", tmp_path / "wnid", workers=0)[0].labels.tolist() == [17, 999]
    write_jpegs(tmp_path / "big" / "imagenet-v2", {"3": 1, "1000": 1})
    with pytest.raises(UserError, match=r"holds the folder '1000', outside the class indices 0\.\.999"):
        get_shift("imagenet-v2", tmp_path / "big", workers=0)
    write_jpegs(tmp_path / "mixed" / "imagenet-v2", {"3": 1, "cats": 1})
    with pytest.raises(UserError, match=r"holds the folder 'cats': ImageNet-V2 folders are class indices"):
        get_shift("imagenet-v2", tmp_path / "mixed", workers=0)
    write_jpegs(tmp_path / "both" / "imagenet-v2", {"3": 1, IMAGENET_WNIDS[5]: 1})
    with pytest.raises(UserError, match=r"holds both class-index and WNID folders: ImageNet-V2 folders are"):
        get_shift("imagenet-v2", tmp_path / "both", workers=0)


def test_imagenet_sketch_labels_index_the_1000_classes(tmp_path):
    write_jpegs(tmp_path / "imagenet-sketch" / "sketch", {IMAGENET_WNIDS[i]: 1 for i in (2, 500, 998)})
    source, mask = get_shift("imagenet-sketch", tmp_path, workers=0)
    assert mask is None and source.labels.tolist() == [2, 500, 998] and source.num_classes == 1000


def test_missing_folder_sets_say_where_and_how(tmp_path):
    with pytest.raises(UserError, match=r"imagenet-a not found: no class folders in any of .*imagenet-a; use "
                                        r"download to fetch it, or unpack it from https://people.eecs.berkeley.edu/"
                                        r"~hendrycks/imagenet-a.tar \(see data/README.md\)"):
        get_shift("imagenet-a", tmp_path)
    with pytest.raises(UserError, match=r"imagenet-sketch not found: .*get it from "
                                        r"https://github.com/HaohanWang/ImageNet-Sketch"):
        get_shift("imagenet-sketch", tmp_path)
    with pytest.raises(UserError, match=r"imagenet-v2 has no download with a published checksum, so download "
                                        r"cannot fetch it"):
        get_shift("imagenet-v2", tmp_path, download=True)
    with pytest.raises(UserError, match=r"imagenet-r needs a data folder: give data_dir"):
        get_shift("imagenet-r", None)


# ---------------------------------------------------------------------------------------------------------
# published subset lists


def test_subset_file_in_robustbench_format_names_folder_images(tmp_path):
    names = write_jpegs(tmp_path / "imagenet-a", {IMAGENET_A_WNIDS[i]: 3 for i in (1, 2)})
    source, _ = get_shift("imagenet-a", tmp_path, workers=0)
    listing = tmp_path / "ids.txt"
    listing.write_text(f"# five images, RobustBench style\n{names[4]}\n\n./{names[0]}   # trailing comment\n"
                       f"{names[5]}\n2\n{names[1]}")  # no final newline, as RobustBench's file
    indices, digest = read_subset_file(listing, source)
    assert indices.tolist() == [4, 0, 5, 2, 1]
    assert digest == hashlib.sha256(listing.read_bytes()).hexdigest()
    picked = source.select(indices)
    assert [s[0] for s in picked.samples] == [source.samples[i][0] for i in (4, 0, 5, 2, 1)]


@pytest.mark.filterwarnings("ignore:cifar10.1")
@pytest.mark.parametrize("text, message", [
    ("3\n# c\n3\n", r"ids.txt:3: '3' repeats the image of line 1; list each image once"),
    ("0\n\n12\n", r"ids.txt:3: position 12 is out of range: cifar10.1 has 12 images \(0\.\.11\)"),
    ("-1\n", r"ids.txt:1: position -1 is out of range"),
    ("1\nn01440764/x.JPEG\n", r"ids.txt:2: 'n01440764/x.JPEG' is a file name, but cifar10.1 is an array set"),
    ("# nothing\n\n", r"subset_file .*ids.txt lists no images; give one position or file name per line"),
])
def test_subset_file_errors_name_the_file_and_line(tmp_path, text, message):
    write_cifar10_1(tmp_path, *random_cifar(12))
    source = load_cifar10_1(tmp_path)
    (tmp_path / "ids.txt").write_text(text)
    with pytest.raises(UserError, match=message):
        read_subset_file(tmp_path / "ids.txt", source)


def test_subset_file_refuses_unknown_names_and_a_missing_file(tmp_path):
    names = write_jpegs(tmp_path / "imagenet-a", {IMAGENET_A_WNIDS[0]: 2})
    source, _ = get_shift("imagenet-a", tmp_path, workers=0)
    (tmp_path / "ids.txt").write_text(f"{names[1]}\n1\n")
    with pytest.raises(UserError, match=r"ids.txt:2: '1' repeats the image of line 1"):
        read_subset_file(tmp_path / "ids.txt", source)
    (tmp_path / "ids.txt").write_text(f"{names[0]}\nimagenet-a/{names[1]}\n")
    with pytest.raises(UserError, match=r"ids.txt:2: no image 'imagenet-a/.*' in imagenet-a \(names are paths "
                                        r"relative to"):
        read_subset_file(tmp_path / "ids.txt", source)
    with pytest.raises(UserError, match=r"subset_file .*none.txt not found"):
        read_subset_file(tmp_path / "none.txt", source)


# ---------------------------------------------------------------------------------------------------------
# the pipeline


def test_parse_sets_and_request_checks(tmp_path):
    assert parse_sets("cifar10.1, cifar10h") == ("cifar10.1", "cifar10h")
    with pytest.raises(UserError, match=r"unknown shift set 'cifar11' in sets: choose from cifar10.1, .*cifar10h"):
        parse_sets("cifar11")
    with pytest.raises(UserError, match=r"sets names cifar10.1 twice"):
        parse_sets(["cifar10.1", "cifar10.1"])
    with pytest.raises(UserError, match=r"sets takes a comma-separated list"):
        parse_sets("cifar10.1,")
    with pytest.raises(UserError, match=r"a subset file is given for 'imagenet-a', which is not one of the image "
                                        r"sets evaluated \(clean, cifar10.1\)"):
        ShiftRequest(["m"], "cifar10.1", subset_files={"imagenet-a": tmp_path / "x"})
    (tmp_path / "ids.txt").write_text("0\n")
    with pytest.raises(UserError, match=r"shift takes one image list per set: give subset_files \{'clean': "
                                        r"'.*ids.txt'\} instead of the settings' subset_file"):
        ShiftRequest(["m"], "cifar10.1", EvalSettings(subset_file=tmp_path / "ids.txt"))


def saved_model(tmp_path, name, *, num_classes=10, dataset="cifar10", seed=0, method="dnn"):
    torch.manual_seed(seed)
    model = create_model("resnet18", method=method, width=4, num_classes=num_classes, dataset=dataset,
                         mean=CIFAR_MEAN, std=CIFAR_STD)
    path = tmp_path / f"{name}.pt"
    save_model(model, path)
    return path, model.eval()


def forward_probs(model, images_nhwc):
    mean, std = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(images_nhwc).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        return torch.softmax(model(x), dim=1).double().numpy()


@pytest.mark.filterwarnings("ignore:cifar10 test")
def test_run_shift_rows_and_differences_match_an_independent_computation(tmp_path, cifar10_dir, cifar10_test):
    images, labels = cifar10_test
    path, model = saved_model(tmp_path, "r18")
    shift_dir = tmp_path / "shifts"
    write_cifar10_1(shift_dir / "CIFAR-10.1", images[1000:1100], labels[1000:1100].astype(np.int32))
    (shift_dir / "cifar-10h").mkdir(parents=True)
    np.save(shift_dir / "cifar-10h" / "cifar10h-probs.npy", np.eye(10)[labels])  # one-hot: soft NLL = NLL
    picks = tmp_path / "ids.txt"
    picks.write_text("# every other image\n" + "\n".join(str(i) for i in range(0, 100, 2)))
    request = ShiftRequest([path], "cifar10.1,cifar10h", EvalSettings(device="cpu", subset=120, batch_size=64),
                           data_dir=cifar10_dir, shift_dir=shift_dir, subset_files={"cifar10.1": picks},
                           out=tmp_path / "rows.csv", diff_out=tmp_path / "diff.csv")
    with pytest.warns(UserWarning, match="differ from the published files"):
        result = run_shift(request)
    rows = result.rows
    assert rows["shift"].tolist() == ["clean", "cifar10.1"]
    assert rows["n_images"].tolist() == [120, 50] and (rows["dataset"] == "cifar10").all()
    assert rows["subset_sha256"].tolist() == ["", hashlib.sha256(picks.read_bytes()).hexdigest()]
    kept = sample_indices(labels, 120, 10, "cifar10 test")  # the class-balanced sample eval --subset 120 takes
    clean_probs = forward_probs(model, images[kept])
    shift_images = images[1000:1100][0:100:2]  # --subset 120 keeps all 50 images of the list
    shift_probs = forward_probs(model, shift_images)
    clean, shifted = rows.iloc[0], rows.iloc[1]
    assert clean["acc"] == pytest.approx(metrics.accuracy(clean_probs, labels[kept]), abs=1e-12)
    assert clean["nll"] == pytest.approx(metrics.nll(clean_probs, labels[kept]), rel=1e-5)
    assert shifted["acc"] == pytest.approx(metrics.accuracy(shift_probs, labels[1000:1100][0:100:2]), abs=1e-12)
    assert shifted["nll"] == pytest.approx(metrics.nll(shift_probs, labels[1000:1100][0:100:2]), rel=1e-5)
    assert clean["nll_cifar10h"] == pytest.approx(clean["nll"], rel=1e-12)  # one-hot soft labels
    diff = result.differences
    assert len(diff) == 1 and diff["shift"].item() == "cifar10.1"
    for m in ("acc", "nll", "ece"):
        assert diff[f"d_{m}"].item() == pytest.approx(shifted[m] - clean[m], abs=1e-12)
        assert diff[f"{m}_clean"].item() == clean[m]
    on_disk = pd.read_csv(tmp_path / "rows.csv")
    assert on_disk["shift"].tolist() == ["clean", "cifar10.1"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "diff.csv", dtype={"calibration": str}).fillna({"calibration": ""}), diff,
                                  check_dtype=False)
    # the same settings again: rows replaced, not added
    with pytest.warns(UserWarning, match="differ from the published files"):
        run_shift(request)
    assert len(pd.read_csv(tmp_path / "rows.csv")) == 2


def test_run_shift_refuses_sets_of_another_dataset_before_loading_data(tmp_path):
    path, _ = saved_model(tmp_path, "r18")
    request = ShiftRequest([path], ["imagenet-a"], EvalSettings(device="cpu"), data_dir=tmp_path / "nothing")
    with pytest.raises(UserError, match=r"imagenet-a is a test set for imagenet models, but r18 is evaluated on "
                                        r"cifar10; leave imagenet-a out of sets"):
        run_shift(request)


def test_shift_differences_pairs_each_shift_row_with_its_clean_row():
    base = {"model": "m", "checkpoint_sha256": "abc", "dataset": "cifar10", "members": 1, "subset": "",
            "seed": 0, "precision": "fp32", "ece_mode": "standard", "ece_bins": 15}
    rows = pd.DataFrame([
        {**base, "ensemble_size": 1, "mc_samples": 1, "shift": "clean", "acc": 0.9, "nll": 0.3, "ece": 0.02},
        {**base, "ensemble_size": 5, "mc_samples": 5, "shift": "clean", "acc": 0.92, "nll": 0.25, "ece": 0.01},
        {**base, "ensemble_size": 1, "mc_samples": 1, "shift": "cifar10.1", "acc": 0.8, "nll": 0.6, "ece": 0.05},
        {**base, "ensemble_size": 5, "mc_samples": 5, "shift": "cifar10.1", "acc": 0.85, "nll": 0.5, "ece": 0.03},
        {**base, "ensemble_size": 9, "mc_samples": 9, "shift": "cifar10.1", "acc": 0.5, "nll": 1.0, "ece": 0.1},
    ])
    diff = shift_differences(rows)
    assert diff["ensemble_size"].tolist() == [1, 5]  # size 9 has no clean row
    assert diff["d_acc"].tolist() == pytest.approx([-0.1, -0.07])
    assert diff["d_nll"].tolist() == pytest.approx([0.3, 0.25])
    assert diff["d_ece"].tolist() == pytest.approx([0.03, 0.02])
    assert list(diff.columns[-9:]) == ["acc_clean", "acc_shift", "d_acc", "nll_clean", "nll_shift", "d_nll",
                                       "ece_clean", "ece_shift", "d_ece"]
    assert shift_differences(rows[rows["shift"] == "clean"]).empty


def test_the_200_class_mask_goes_through_one_place(tmp_path):
    _, wide = saved_model(tmp_path, "in1k", num_classes=1000, dataset="imagenet")
    _, narrow = saved_model(tmp_path, "c10", num_classes=10, dataset="cifar10")
    mask = class_mask("imagenet-a")
    assert mask_for(Members([wide], ["in1k"]), "imagenet-a", 200, mask) is mask
    assert mask_for(Members([wide], ["in1k"]), "imagenet-v2", 1000, None) is None
    with pytest.raises(UserError, match=r"c10 predicts 10 classes; imagenet-a needs a 1000-way ImageNet model"):
        mask_for(Members([narrow], ["c10"]), "imagenet-a", 200, mask)
    settings = EvalSettings(device="cpu")
    assert masked(settings, None) is settings
    assert tuple(masked(settings, mask).class_mask) == tuple(mask.tolist())


def test_imagenet_a_is_scored_on_its_200_classes(tmp_path):
    """A 1000-way model on an ImageNet-A folder: the rows are the metrics of the softmax over the 200 masked
    logits, checked against a forward pass done here."""
    from PIL import Image

    from smoothbench import metrics
    from smoothbench.data.imagenet_wnids import IMAGENET_A_WNIDS

    mask = class_mask("imagenet-a")
    root = tmp_path / "imagenet-a"
    rng = np.random.default_rng(0)
    chosen = [0, 5, 199]
    for position in chosen:
        (root / IMAGENET_A_WNIDS[position]).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
                root / IMAGENET_A_WNIDS[position] / f"{i}.jpg")
    path, model = saved_model(tmp_path, "in1k", num_classes=1000, dataset="imagenet")
    source, found_mask = get_shift("imagenet-a", tmp_path, workers=0)
    np.testing.assert_array_equal(found_mask, mask)
    settings = EvalSettings(device="cpu", class_mask=tuple(mask.tolist())).on_device()
    from smoothbench.evaluation.scoring import evaluate

    from smoothbench.evaluation.members import load_members

    rows, predictions = evaluate(load_members([path]), source, settings)
    assert predictions.probs[1].shape == (6, 200)
    x = torch.cat([x for x, _, _ in source.eval_batches(6, model.spec.preprocess, device="cpu")])
    with torch.no_grad():
        expected = torch.softmax(model(x)[:, torch.as_tensor(mask)], dim=1).double().numpy()
    np.testing.assert_allclose(predictions.probs[1], expected, atol=1e-6)
    labels = np.repeat(chosen, 2)
    np.testing.assert_array_equal(predictions.labels, labels)
    assert rows[0]["nll"] == pytest.approx(metrics.nll(expected, labels), rel=1e-5)


@pytest.mark.slow
def test_cli_shift_tables_files_and_errors(tmp_path, cifar10_dir, cifar10_test):
    images, labels = cifar10_test
    path, _ = saved_model(tmp_path, "r18")
    write_cifar10_1(tmp_path / "shifts" / "CIFAR-10.1", images[:60], labels[:60].astype(np.int32))
    picks = tmp_path / "ids.txt"
    picks.write_text("\n".join(str(i) for i in range(0, 60, 3)))
    proc = run_cli("shift", path, "--sets", "cifar10.1", "--data-dir", cifar10_dir, "--shift-dir",
                   tmp_path / "shifts", "--subset", "40", "--subset-file", f"cifar10.1={picks}", "--out",
                   tmp_path / "rows.csv", "--diff-out", tmp_path / "diff.csv", "--quiet", "--device", "cpu")
    assert "shift minus clean" in proc.stdout and "d_acc" in proc.stdout
    rows = pd.read_csv(tmp_path / "rows.csv")
    assert rows["shift"].tolist() == ["clean", "cifar10.1"] and rows["n_images"].tolist() == [40, 20]
    assert len(pd.read_csv(tmp_path / "diff.csv")) == 1
    for args, message in ((("--sets", "cifar10.2"), "unknown shift set 'cifar10.2'"),
                          (("--sets", "cifar10.1", "--subset-file", "ids.txt"), "--subset-file takes SET=FILE"),
                          (("--sets", "imagenet-a"), "imagenet-a is a test set for imagenet models")):
        proc = run_cli("shift", path, *args, "--data-dir", cifar10_dir, "--shift-dir", tmp_path / "shifts",
                       "--quiet", check=False)
        assert_one_line_error(proc, message)
