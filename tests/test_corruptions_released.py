"""Released corrupted sets (CIFAR-10-C / CIFAR-100-C .npy, ImageNet-C folders) and the make-c writers.

The CIFAR-C fixtures are small sets in the released layout written here (5 severities x 20 images, each
row's pixels encode its severity and index, so slicing is checked exactly); MD5s are computed here with
hashlib, independently of the loader.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import RecordingProgress
from smoothbench.corruptions import corrupt, imagenet_preprocess
from smoothbench.corruptions import released
from smoothbench.corruptions.released import MANIFEST
from smoothbench.corruptions.writer import make_cifar_c, make_imagenet_c
from smoothbench.data.subset import sample_indices
from smoothbench.errors import UserError

N = 20  # images per severity block in the fake sets


def fake_block(corruption_id: int) -> np.ndarray:
    """uint8 (5N, 32, 32, 3): row r has pixel value (r + 7 * corruption_id) % 256, channel 1 = r // N (severity - 1)."""
    rows = np.arange(5 * N)
    arr = np.zeros((5 * N, 32, 32, 3), dtype=np.uint8)
    arr[..., 0] = ((rows + 7 * corruption_id) % 256)[:, None, None]
    arr[..., 1] = (rows // N)[:, None, None]
    return arr


FAKE_LABELS = np.tile(np.arange(N) % 10, 5).astype(np.uint8)


def write_fake_set(folder, names=("snow", "fog"), labels=FAKE_LABELS):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        np.save(folder / f"{name}.npy", fake_block(i))
    np.save(folder / "labels.npy", labels)
    return folder


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cifar(cifar10_test):
    """The first 6 real CIFAR-10 test images and labels."""
    return cifar10_test[0][:6].copy(), cifar10_test[1][:6].copy()


# ------------------------------------------------------------------------------------------ CIFAR-C loader
@pytest.mark.parametrize("nested", [False, True])
def test_load_cifar_c_slices_the_severity_block(tmp_path, nested):
    folder = write_fake_set(tmp_path / "CIFAR-10-C" if nested else tmp_path)
    src = released.load_cifar_c(tmp_path, "fog", 3, verify=False)
    assert src.source == "released" and src.name == "cifar10" and src.num_classes == 10 and len(src) == N
    expected = fake_block(1)[2 * N : 3 * N]
    np.testing.assert_array_equal(src.numpy_nhwc(), expected)
    np.testing.assert_array_equal(src.labels.numpy(), FAKE_LABELS[2 * N : 3 * N])
    assert (src.numpy_nhwc()[..., 1] == 2).all()  # severity 3 = block index 2
    sub = released.load_cifar_c(folder, "snow", 5, verify=False, subset=4)
    # the evaluation subset: a class-balanced sample of the clean test labels (block 1), the same rows in every
    # severity block, in order
    rows = sample_indices(FAKE_LABELS[:N], 4, 10, "clean")
    assert len(set(FAKE_LABELS[rows])) == 4 and list(rows) == sorted(rows) and list(rows) != [0, 1, 2, 3]
    np.testing.assert_array_equal(sub.numpy_nhwc(), fake_block(0)[4 * N + rows])
    np.testing.assert_array_equal(sub.labels.numpy(), FAKE_LABELS[rows])
    again = released.load_cifar_c(folder, "snow", 2, verify=False, subset=4)
    np.testing.assert_array_equal(again.numpy_nhwc()[..., 0], fake_block(0)[N + rows][..., 0])
    x, y, idx = next(iter(sub.eval_batches(3, None, device="cpu")))
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32 and idx.tolist() == [0, 1, 2]


def test_sweep_cells_take_the_subset_files_positions_in_every_severity(tmp_path):
    """A released cell is the clean test set corrupted, image for image: a subset file's positions (and a
    --subset after it, sampled from the clean labels) pick the same rows of every severity block."""
    from smoothbench.evaluation.corruption_cells import CorruptionSweep, _CellSources
    from smoothbench.evaluation.settings import EvalSettings

    write_fake_set(tmp_path)
    listing = tmp_path / "ids.txt"
    listing.write_text("11\n0\n17  # class 7\n")
    sweep = CorruptionSweep("cifar10-c", data_dir=tmp_path, corruptions="fog,snow", severities="1,3", verify=False)
    cells = _CellSources(sweep, EvalSettings(subset_file=listing))
    for corruption, block, severity in (("fog", 1, 3), ("snow", 0, 1)):
        cell = cells.cell(corruption, severity)
        rows = (severity - 1) * N + np.array([11, 0, 17])
        np.testing.assert_array_equal(cell.numpy_nhwc(), fake_block(block)[rows])
        np.testing.assert_array_equal(cell.labels.numpy(), FAKE_LABELS[rows])
    # --subset 2 after the list: one image of classes 0 and 1 (labels 1, 0, 7 listed), in the file's order
    cell = _CellSources(sweep, EvalSettings(subset=2, subset_file=listing)).cell("fog", 3)
    np.testing.assert_array_equal(cell.numpy_nhwc(), fake_block(1)[2 * N + np.array([11, 0])])
    listing.write_text("20\n")
    with pytest.raises(UserError, match=r"ids.txt:1: position 20 is out of range: cifar10 has 20 images"):
        _CellSources(sweep, EvalSettings(subset_file=listing)).cell("fog", 3)


def test_imagenet_c_cells_take_a_robustbench_style_list_of_relative_paths(tmp_path):
    from smoothbench.evaluation.corruption_cells import CorruptionSweep, _CellSources
    from smoothbench.evaluation.settings import EvalSettings

    wnids = ("n01440764", "n01443537")
    for severity in (1, 2):
        for w, wnid in enumerate(wnids):
            folder = tmp_path / "ImageNet-C" / "fog" / str(severity) / wnid
            folder.mkdir(parents=True)
            for k in range(3):
                Image.new("RGB", (8, 8), (40 * k, 100 * w, severity)).save(folder / f"ILSVRC2012_val_{w}{k}.JPEG")
    listing = tmp_path / "imagenet_test_image_ids.txt"
    listing.write_text("n01443537/ILSVRC2012_val_12.JPEG\nn01440764/ILSVRC2012_val_00.JPEG\n"
                       "n01443537/ILSVRC2012_val_10.JPEG")
    sweep = CorruptionSweep("imagenet-c", data_dir=tmp_path, corruptions="fog", severities="1,2")
    with pytest.warns(UserWarning, match="2 class folders"):
        cells = [_CellSources(sweep, EvalSettings(subset_file=listing)).cell("fog", s) for s in (1, 2)]
    for cell in cells:
        assert [Path(p).relative_to(cell.root).as_posix() for p, _ in cell.samples] == listing.read_text().split()
        assert cell.labels.tolist() == [1, 0, 1]
    with pytest.warns(UserWarning, match="2 class folders"):
        both = _CellSources(sweep, EvalSettings(subset=2, subset_file=listing)).cell("fog", 2)
    assert [Path(p).name for p, _ in both.samples] in (["ILSVRC2012_val_12.JPEG", "ILSVRC2012_val_00.JPEG"],
                                                      ["ILSVRC2012_val_00.JPEG", "ILSVRC2012_val_10.JPEG"])


def test_partial_set_names_what_is_missing(tmp_path):
    write_fake_set(tmp_path)
    assert released.available_corruptions(tmp_path) == ["snow", "fog"]  # canonical order, not file order
    message = r"frost\.npy is missing \(2 of 19.*missing: gaussian_noise.*frost.*choose among: snow, fog"
    with pytest.raises(UserError, match=message):
        released.load_cifar_c(tmp_path, "frost", 1, verify=False)
    with pytest.raises(UserError, match="unknown corruption"):
        released.load_cifar_c(tmp_path, "hail", 1, verify=False)
    with pytest.raises(UserError, match="severity"):
        released.load_cifar_c(tmp_path, "fog", 0, verify=False)
    (tmp_path / "labels.npy").unlink()
    with pytest.raises(UserError, match="labels.npy is missing"):
        released.load_cifar_c(tmp_path, "fog", 1, verify=False)


def test_md5_checked_against_table_and_cached(tmp_path, monkeypatch):
    write_fake_set(tmp_path)
    table = {"fog.npy": md5(tmp_path / "fog.npy"), "labels.npy": md5(tmp_path / "labels.npy")}
    calls = []
    real = released.md5_file
    monkeypatch.setattr(released, "md5_file", lambda p: calls.append(p) or real(p))
    assert len(released.load_cifar_c(tmp_path, "fog", 1, md5s=table)) == N
    assert len(released.load_cifar_c(tmp_path, "fog", 2, md5s=table)) == N
    assert len(calls) == 2  # fog.npy and labels.npy hashed once each
    with pytest.raises(UserError, match="md5"):
        released.load_cifar_c(tmp_path, "fog", 1, md5s={**table, "fog.npy": "0" * 32})
    with pytest.raises(UserError, match="not the released file"):  # the published table
        released.load_cifar_c(tmp_path, "fog", 1)
    np.save(tmp_path / "fog.npy", fake_block(5))  # replaced file: new size/mtime, hashed again, refused
    with pytest.raises(UserError, match="md5"):
        released.load_cifar_c(tmp_path, "fog", 1, md5s=table)
    assert len(calls) == 3


def test_bad_files_and_cifar100(tmp_path):
    write_fake_set(tmp_path / "CIFAR-100-C", labels=np.tile(np.arange(N) * 4, 5).astype(np.uint8))
    src = released.load_cifar_c(tmp_path, "snow", 2, dataset="cifar100", verify=False)
    assert src.num_classes == 100 and src.classes[0] == "apple" and src.labels.max() == 76
    with pytest.raises(UserError, match=r"labels\.npy holds labels in 0\.\.76, outside the 10 classes"):
        released.load_cifar_c(tmp_path / "CIFAR-100-C", "snow", 2, verify=False)
    np.save(tmp_path / "CIFAR-100-C" / "fog.npy", np.zeros((10, 28, 28, 3), dtype=np.uint8))
    with pytest.raises(UserError, match="expected uint8"):
        released.load_cifar_c(tmp_path, "fog", 1, dataset="cifar100", verify=False)
    with pytest.raises(UserError, match="cifar10 or cifar100"):
        released.load_cifar_c(tmp_path, "fog", 1, dataset="svhn", verify=False)
    assert set(released.CIFAR_C_MD5["cifar10"]) == {f"{n}.npy" for n in released.CANONICAL_NAMES} | {"labels.npy"}


# ------------------------------------------------------------------------------------------ make_cifar_c
def test_make_cifar_c_layout_and_resume(cifar, tmp_path):
    images, labels = cifar
    names = ["fog", "contrast"]
    full = make_cifar_c(images, labels, tmp_path / "full", corruptions=names, seed=3, batch_size=4)
    assert [p.name for p in full] == ["fog.npy", "contrast.npy"]
    fog = np.load(tmp_path / "full" / "fog.npy")
    assert fog.shape == (30, 32, 32, 3) and fog.dtype == np.uint8
    for s in range(1, 6):  # severity-major blocks, same pixels as corrupting directly
        np.testing.assert_array_equal(fog[6 * (s - 1) : 6 * s], corrupt(images, "fog", s, seed=3))
    np.testing.assert_array_equal(np.load(tmp_path / "full" / "labels.npy"), np.tile(labels, 5).astype(np.uint8))
    loaded = released.load_cifar_c(tmp_path / "full", "contrast", 4)  # own manifest: no published md5 to check
    assert loaded.source == "generated"
    np.testing.assert_array_equal(loaded.numpy_nhwc(), corrupt(images, "contrast", 4))

    out = tmp_path / "resumed"

    def killer(n, text):
        if text.startswith("contrast"):
            raise KeyboardInterrupt(f"interrupted at {text}")

    with pytest.raises(KeyboardInterrupt, match="interrupted at contrast"):
        make_cifar_c(images, labels, out, corruptions=names, seed=3, batch_size=4,
                     progress=RecordingProgress(killer))
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, "labels.npy", "fog.npy"])  # no partial file
    stamp = (out / "fog.npy").stat().st_mtime_ns
    (out / ".contrast.npy.killed.tmp").write_bytes(b"partial")  # what a SIGKILL would leave behind
    seen = RecordingProgress()
    make_cifar_c(images, labels, out, corruptions=names, seed=3, batch_size=4, progress=seen)
    assert seen.advances[0] == (30, "fog: already written") and sum(seen.units) == 60
    assert (out / "fog.npy").stat().st_mtime_ns == stamp
    for name in ("fog.npy", "contrast.npy", "labels.npy"):
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
    assert not list(out.glob(".*.tmp"))
    with pytest.raises(UserError, match="other settings"):
        make_cifar_c(images, labels, out, corruptions=names, seed=4)
    with pytest.raises(UserError, match="labels"):
        make_cifar_c(images, labels[:3], tmp_path / "x", corruptions=names)


# ------------------------------------------------------------------------------------------ ImageNet-C
@pytest.fixture
def val_folder(cifar, tmp_path):
    """A tiny ImageNet-style val folder: 2 WNIDs x 2 JPEGs of real (upscaled) CIFAR images, one empty WNID."""
    images, _ = cifar
    root = tmp_path / "imagenet" / "val"
    for k, wnid in enumerate(["n01440764", "n01443537"]):
        (root / wnid).mkdir(parents=True)
        for j in range(2):
            img = Image.fromarray(images[2 * k + j]).resize((300, 260), Image.BILINEAR)
            img.save(root / wnid / f"ILSVRC2012_val_{2 * k + j:08d}.JPEG", quality=95)
    (root / "n09999999").mkdir()
    return root


def test_make_imagenet_c_writes_skips_and_loads(val_folder, tmp_path):
    out = tmp_path / "imagenet-c"
    seen = RecordingProgress()
    make_imagenet_c(val_folder.parent, out, corruptions=["fog"], seed=1, batch_size=3, progress=seen)
    files = sorted(out.glob("fog/*/*/*.JPEG"))
    assert len(files) == 20 and sum(seen.units) == 20
    assert (out / "fog" / "3" / "n09999999").is_dir()  # empty classes kept: indices follow all WNIDs
    first = val_folder / "n01440764" / "ILSVRC2012_val_00000000.JPEG"
    with Image.open(first) as im:
        clean = imagenet_preprocess(im).copy()
    want = corrupt(clean[None], "fog", 3, params="imagenet", seed=1)[0]
    got = np.asarray(Image.open(out / "fog" / "3" / "n01440764" / first.name))
    assert got.shape == (224, 224, 3) and np.abs(got.astype(int) - want).mean() < 3  # JPEG quality 85

    redo = out / "fog" / "5" / "n01443537" / "ILSVRC2012_val_00000003.JPEG"
    redo.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in files if p != redo}
    seen = RecordingProgress()
    make_imagenet_c(val_folder.parent, out, corruptions=["fog"], seed=1, batch_size=3, progress=seen)
    assert redo.is_file() and sum(seen.units) == 20
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    with pytest.warns(UserWarning, match="3 class folders"):
        src = released.load_imagenet_c(out, "fog", 3, workers=0)
    assert src.source == "generated" and src.classes == ["n01440764", "n01443537", "n09999999"]
    assert src.labels.tolist() == [0, 0, 1, 1]
    x, y, idx = next(iter(src.eval_batches(4, None, device="cpu")))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 1, 1]
    paper = released.load_imagenet_c(out, "fog", 3, transform="paper", subset=2, classes=src.classes, workers=0)
    assert len(paper) == 2 and paper.resize == 256
    xp, _, _ = next(iter(paper.eval_batches(2, None, device="cpu")))
    assert xp.shape == (2, 3, 224, 224) and not torch.allclose(xp, x[:2])  # upsampled + cropped
    with pytest.raises(UserError, match="corruptions present in .*: fog"):
        released.load_imagenet_c(out, "snow", 1)
    (out / MANIFEST).unlink()
    assert released.load_imagenet_c(out, "fog", 1, classes=src.classes).source == "released"
    with pytest.raises(UserError, match="hendrycks or paper"):
        released.load_imagenet_c(out, "fog", 1, transform="timm")
