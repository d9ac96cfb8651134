"""Tests of the data layer: CIFAR loading and download, restricted unpickling, device batches, subsets,
the synthetic set, image folders and the device helpers."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from smoothbench.data.preprocess import Preprocess
from smoothbench.data import DATASETS, NORMALIZATION, ImageFolderSource, ResidentImages, get_dataset
from smoothbench.data.augment import crop_flip
from smoothbench.data.cifar import download_cifar
from smoothbench.data.download import extract_tar, md5_file
from smoothbench.data.subset import EVAL_SUBSET_SEED, sample_indices, stratified_indices, subset_positions
from smoothbench.data.synthetic import default_synthetic, make_synthetic
from smoothbench.data.unpickle import load_pickle
from smoothbench.device import autocast, resolve_device, to_channels_last
from smoothbench.errors import UserError

CIFAR10_DIR = os.environ.get("SMOOTHBENCH_CIFAR10_DIR")
needs_cifar10 = pytest.mark.skipif(
    not CIFAR10_DIR, reason="set SMOOTHBENCH_CIFAR10_DIR to a folder containing cifar-10-batches-py/ (make test does)"
)


# --- restricted unpickler ---------------------------------------------------------------------------


class _OpenPayload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


class _SystemPayload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("payload", [_OpenPayload, _SystemPayload])
def test_unpickler_refuses_malicious_pickle(tmp_path, payload):
    target = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": payload(target), b"labels": [0]}, protocol=2))
    with pytest.raises(UserError, match="refusing"):
        load_pickle(path)
    assert not target.exists()
    with open(path, "rb") as handle:  # the same file really is harmful to a plain unpickler
        pickle.load(handle)
    assert target.exists()


def test_unpickler_loads_numpy_arrays_and_containers(tmp_path):
    path = tmp_path / "batch"
    data = np.arange(24, dtype=np.uint8).reshape(2, 12)
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [3, 4], b"name": b"x"}, protocol=4))
    loaded = load_pickle(path)
    np.testing.assert_array_equal(loaded[b"data"], data)
    assert loaded[b"labels"] == [3, 4] and loaded[b"name"] == b"x"


# --- CIFAR: shared copy, missing folder, download -----------------------------------------------------


@needs_cifar10
def test_cifar10_shared_copy_loads_with_md5_warning():
    with pytest.warns(UserWarning, match="differ from the official files"):
        test = get_dataset("cifar10", CIFAR10_DIR, "test")
    with pytest.warns(UserWarning, match="data_batch_5"):
        train = get_dataset("cifar10", CIFAR10_DIR, "train")
    assert (len(train), len(test)) == (50000, 10000)
    assert test.images.shape == (10000, 3, 32, 32) and test.images.dtype == torch.uint8
    assert test.classes[3] == "cat" and test.num_classes == 10
    assert test.labels.bincount().tolist() == [1000] * 10
    assert train.labels.bincount().tolist() == [5000] * 10
    assert int(test.labels[0]) == 3  # the first official test image is a cat
    # per-channel test mean stated in the shared copy's README
    mean = (test.images.float() / 255).mean(dim=(0, 2, 3))
    np.testing.assert_allclose(mean.numpy(), [0.4941, 0.4851, 0.4504], atol=2e-4)
    started = time.perf_counter()
    assert len(train.fingerprint) == 16 and train.fingerprint != test.fingerprint
    assert time.perf_counter() - started < 3.0


def test_missing_cifar_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(UserError, match="use download to fetch the official archive") as info:
        get_dataset("cifar100", tmp_path, "train")
    assert "cifar-100-python" in str(info.value) and str(tmp_path) in str(info.value)
    assert "use --download to fetch" in info.value.for_cli()  # the command line names the flag


FAKE = {  # name → (folder, batch files, meta file, label key, class-names key); as in the official archives
    "cifar10": ("cifar-10-batches-py", ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                "data_batch_5", "test_batch"], "batches.meta", b"labels", b"label_names"),
    "cifar100": ("cifar-100-python", ["train", "test"], "meta", b"fine_labels", b"fine_label_names"),
}  # fmt: skip


def _fake_cifar_archive(name: str, folder: Path, per_batch: int = 6) -> tuple[Path, dict]:
    """A tiny archive with the official layout of ``name``; returns (archive path, test batch dict)."""
    top, batches, meta, label_key, names_key = FAKE[name]
    rng = np.random.default_rng(1)
    content = {
        batch: {
            b"batch_label": batch.encode(),
            label_key: [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
        }
        for batch in batches
    }
    content[meta] = {names_key: [f"class{i}".encode() for i in range(10)]}
    archive = folder / f"{name}-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member, value in content.items():
            raw = pickle.dumps(value, protocol=4)
            info = tarfile.TarInfo(f"{top}/{member}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return archive, content[batches[-1]]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_download_from_file_url_then_load(tmp_path, name):
    archive, test_batch = _fake_cifar_archive(name, tmp_path)
    data_dir = tmp_path / "data"
    download_cifar(name, data_dir, url=archive.as_uri(), md5=md5_file(archive))
    assert not (data_dir / archive.name).exists()  # the archive is removed after unpacking
    with pytest.warns(UserWarning, match="md5"):
        test = get_dataset(name, data_dir, "test")
    assert len(test) == 6 and test.classes[9] == "class9"
    assert test.labels.tolist() == test_batch[FAKE[name][3]]
    row = test_batch[b"data"][2]  # official layout: 1024 R, then G, then B values, each row-major 32x32
    assert int(test.images[2, 1, 5, 7]) == int(row[1024 + 5 * 32 + 7])
    assert test.numpy_nhwc()[2, 5, 7, 1] == row[1024 + 5 * 32 + 7]
    with pytest.warns(UserWarning):
        assert len(get_dataset(name, data_dir, "train")) == 6 * (len(FAKE[name][1]) - 1)


def test_download_with_wrong_md5_is_refused(tmp_path):
    archive, _ = _fake_cifar_archive("cifar10", tmp_path)
    data_dir = tmp_path / "data"
    with pytest.raises(UserError, match="corrupt"):
        download_cifar("cifar10", data_dir, url=archive.as_uri(), md5="0" * 32)
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink"])
def test_extraction_refuses_unsafe_archives(tmp_path, kind):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        if kind == "symlink":
            info = tarfile.TarInfo("cifar-10-batches-py/link")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            info = tarfile.TarInfo("../escaped.txt" if kind == "traversal" else str(tmp_path / "escaped.txt"))
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="unsafe entry"):
        extract_tar(archive, dest)
    assert not (tmp_path / "escaped.txt").exists()
    assert list(dest.iterdir()) == []


# --- device batches ----------------------------------------------------------------------------------


def _identity_images(n: int, size: int = 8) -> ResidentImages:
    """Images whose pixels are all distinct within an image and in 1..255 (0 only appears as padding)."""
    rng = np.random.default_rng(0)
    images = np.stack([rng.permutation(np.arange(1, 256))[: size * size * 3] for _ in range(n)])
    labels = np.arange(n) % 3
    return ResidentImages.from_numpy("toy", "train", images.reshape(n, size, size, 3).astype(np.uint8), labels, "abc")


def test_from_numpy_layout_and_helpers():
    source = _identity_images(5)
    nhwc = source.numpy_nhwc()
    assert nhwc.shape == (5, 8, 8, 3) and nhwc.dtype == np.uint8
    assert source.images.shape == (5, 3, 8, 8)
    assert int(source.images[4, 2, 3, 1]) == int(nhwc[4, 3, 1, 2])
    picked = source.select([4, 0])
    assert picked.labels.tolist() == [1, 0] and torch.equal(picked.images[0], source.images[4])
    assert source.to("cpu").fingerprint == source.fingerprint != picked.fingerprint
    with pytest.raises(ValueError, match=r"images must be uint8 \(N,H,W,3\)"):
        ResidentImages.from_numpy("toy", "test", np.zeros((2, 4, 4), np.uint8), [0, 1], "ab")


def test_eval_batches_order_shapes_and_normalisation():
    images = np.zeros((5, 4, 4, 3), dtype=np.uint8)
    images[3, 1, 2] = (200, 100, 0)
    source = ResidentImages.from_numpy("cifar10", "test", images, [0, 1, 2, 3, 4], [str(i) for i in range(10)])
    mean, std = NORMALIZATION["cifar10"]
    batches = list(source.eval_batches(2, Preprocess(mean, std), device="cpu"))
    assert [b[0].shape for b in batches] == [(2, 3, 4, 4)] * 2 + [(1, 3, 4, 4)]
    assert all(b[0].dtype == torch.float32 and b[1].dtype == b[2].dtype == torch.int64 for b in batches)
    assert torch.cat([b[2] for b in batches]).tolist() == [0, 1, 2, 3, 4]
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 1, 2, 3, 4]
    x = batches[1][0][1]  # image 3
    # hand-computed: (200/255 - 0.4914) / 0.2023, (100/255 - 0.4822) / 0.1994, (0 - 0.4465) / 0.2010
    np.testing.assert_allclose(x[:, 1, 2].numpy(), [1.447918, -0.451570, -2.221393], atol=1e-5)
    np.testing.assert_allclose(x[:, 0, 0].numpy(), [-2.429066, -2.418255, -2.221393], atol=1e-5)
    default = next(source.eval_batches(5, None, device="cpu", channels_last=True))[0]
    assert default.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(default[3].numpy(), x.numpy())


def test_crop_flip_matches_padded_slice():
    x = torch.from_numpy(np.random.default_rng(2).integers(1, 256, (3, 3, 6, 7), dtype=np.uint8))
    dy, dx, flip = torch.tensor([0, 8, 3]), torch.tensor([8, 0, 5]), torch.tensor([True, False, True])
    out = crop_flip(x, dy, dx, flip).numpy()
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)))
    for b in range(3):
        expected = padded[b, :, dy[b] : dy[b] + 6, dx[b] : dx[b] + 7]
        np.testing.assert_array_equal(out[b], expected[:, :, ::-1] if flip[b] else expected)
    # image 0 (dy=0, dx=8, flipped): rows 4-5 hold original rows 0-1, columns 4-6 original columns 6, 5, 4
    assert (out[0, :, :4] == 0).all() and (out[0, :, 4:, 4:] == x.numpy()[0, :, :2, 4:][:, :, ::-1]).all()


def test_train_batches_are_valid_crops_reproducible_and_complete():
    source = _identity_images(23)
    mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def epoch(bs: int, e: int, augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        batches = list(source.train_batches(bs, Preprocess(mean, std), device="cpu", seed=7, epoch=e, augment=augment))
        assert [len(y) for _, y in batches][-1] == 23 - bs * (len(batches) - 1)  # last short batch kept
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    x, y = epoch(5, 0)
    assert x.shape == (23, 3, 8, 8)
    x_again, y_again = epoch(16, 0)
    assert torch.equal(x, x_again) and torch.equal(y, y_again)  # same (seed, epoch): same epoch, any batch size
    x_next, _ = epoch(5, 1)
    assert not torch.equal(x, x_next)
    # every output must be exactly one of the 23 x 9 x 9 x 2 shifted (and maybe flipped) originals
    padded = np.pad(source.images.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4))).astype(np.float32) / 255
    candidates, keys = [], []
    for i in range(23):
        for dy in range(9):
            for dx in range(9):
                crop = padded[i, :, dy : dy + 8, dx : dx + 8]
                candidates += [crop, crop[:, :, ::-1]]
                keys += [(i, False), (i, True)]
    candidates = np.stack(candidates)
    found, flips = [], 0
    for img in x.numpy():
        matches = np.flatnonzero((candidates == img).all(axis=(1, 2, 3)))
        assert len(matches) == 1
        found.append(keys[matches[0]][0])
        flips += keys[matches[0]][1]
    assert sorted(found) == list(range(23))  # each image exactly once
    assert y.tolist() == [i % 3 for i in found]
    assert 0 < flips < 23
    plain, plain_y = epoch(4, 0, augment=False)
    order = [int(np.flatnonzero((source.images.float() / 255 == img).flatten(1).all(1))[0]) for img in plain]
    assert sorted(order) == list(range(23)) and plain_y.tolist() == [i % 3 for i in order]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_train_batches_same_on_gpu_and_cpu():
    source = _identity_images(40)
    args = dict(seed=3, epoch=2)
    cpu = [x for x, _ in source.train_batches(16, Preprocess((0.5,) * 3, (0.2,) * 3), device="cpu", **args)]
    gpu = [x.cpu() for x, _ in source.to("cuda").train_batches(16, Preprocess((0.5,) * 3, (0.2,) * 3), device="cuda", **args)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(cpu, gpu))


# --- subsets and the synthetic set -------------------------------------------------------------------


def test_subsets_are_class_balanced_samples_in_original_order():
    full = get_dataset("synthetic", None, "train")
    part = get_dataset("synthetic", None, "train", subset=105, seed=1)
    counts = part.labels.bincount(minlength=10).tolist()
    assert sum(counts) == 105 and counts == [11] * 5 + [10] * 5
    # rows keep their original order: locate every chosen image in the full set
    keys = {bytes(img): i for i, img in enumerate(full.images.flatten(1).numpy())}
    positions = [keys[bytes(img)] for img in part.images.flatten(1).numpy()]
    assert positions == sorted(positions)
    assert torch.equal(full.labels[positions], part.labels)
    again = get_dataset("synthetic", None, "train", subset=105, seed=1)
    other = get_dataset("synthetic", None, "train", subset=105, seed=2)
    assert again.fingerprint == part.fingerprint != other.fingerprint
    with pytest.raises(UserError, match="out of range"):
        get_dataset("synthetic", None, "test", subset=2001)


def _positions_in(full, part) -> list[int]:
    """Where each image of ``part`` sits in ``full`` (the synthetic images are all distinct)."""
    keys = {bytes(img): i for i, img in enumerate(full.images.flatten(1).numpy())}
    return [keys[bytes(img)] for img in part.images.flatten(1).numpy()]


@pytest.mark.parametrize("n", [1, 7, 10, 35, 999])
def test_test_subset_is_a_balanced_sample_from_the_fixed_seed(n):
    """``--subset N`` of a test split: per-class counts differ by at most one (the first classes get the
    remainder), original order, drawn from EVAL_SUBSET_SEED whatever seed the caller passes."""
    full = get_dataset("synthetic", None, "test")
    part = get_dataset("synthetic", None, "test", subset=n)
    counts = part.labels.bincount(minlength=10).tolist()
    base, extra = divmod(n, 10)
    assert counts == [base + 1] * extra + [base] * (10 - extra)
    positions = _positions_in(full, part)
    assert positions == sorted(positions) and len(set(positions)) == n
    assert torch.equal(full.labels[positions], part.labels)
    expected = sample_indices(full.labels.numpy(), n, 10, "synthetic test")
    assert positions == expected.tolist()
    assert positions == stratified_indices(full.labels.numpy(), n, 10, EVAL_SUBSET_SEED, "x").tolist()
    for seed in (1, 7):  # the test split ignores the (training) seed: every evaluation sees the same images
        assert get_dataset("synthetic", None, "test", subset=n, seed=seed).fingerprint == part.fingerprint
    if n >= 10:
        assert positions != list(range(n))  # not the first N any more


def test_full_size_subset_is_the_whole_set_even_when_unbalanced():
    full = get_dataset("synthetic", None, "test")
    whole = get_dataset("synthetic", None, "test", subset=len(full))
    assert torch.equal(whole.images, full.images) and whole.fingerprint == full.fingerprint
    labels = np.array([0] * 5 + [1] * 2 + [2])  # unbalanced: N = all still works, in order
    assert sample_indices(labels, 8, 3, "x").tolist() == list(range(8))
    with pytest.raises(UserError, match=r"subset 6 needs 2 images of class 2 but x has only 1; use a smaller subset"):
        sample_indices(labels, 6, 3, "x")


def test_subset_file_selects_listed_images_then_subset_samples_them(tmp_path):
    full = get_dataset("synthetic", None, "test")
    listing = tmp_path / "ids.txt"
    labels = full.labels.numpy()
    # one image of class 0 and two of every other class: 19 images, listed backwards
    picks = sorted([int(np.flatnonzero(labels == 0)[0])] +
                   [int(i) for c in range(1, 10) for i in np.flatnonzero(labels == c)[:2]], reverse=True)
    listing.write_text("# a published list\n" + "\n".join(map(str, picks)) + "\n")
    listed = get_dataset("synthetic", None, "test", subset_file=listing)
    assert _positions_in(full, listed) == picks  # the file's order
    positions, digest = subset_positions(full, None, listing)
    assert positions.tolist() == picks and digest == hashlib.sha256(listing.read_bytes()).hexdigest()
    # --subset N after the file: a class-balanced sample of the listed images, in the file's order
    both = get_dataset("synthetic", None, "test", subset=4, subset_file=listing)
    chosen = sample_indices(labels[picks], 4, 10, "list")
    assert _positions_in(full, both) == [picks[i] for i in chosen]
    assert max(both.labels.bincount().tolist()) == 1
    with pytest.raises(UserError, match=r"subset 20 is out of range: the list .*ids.txt has 19 images; use 1..19"):
        get_dataset("synthetic", None, "test", subset=20, subset_file=listing)
    assert subset_positions(full, 20, listing, at_most=True)[0].tolist() == picks  # shift's rule: all of fewer
    with pytest.raises(UserError, match=r"subset 18 needs 2 images of class 0 but the list .*ids.txt has only 1"):
        get_dataset("synthetic", None, "test", subset=18, subset_file=listing)
    listing.write_text("3\n3\n")
    with pytest.raises(UserError, match=r"subset_file .*ids.txt:2: '3' repeats the image of line 1"):
        get_dataset("synthetic", None, "test", subset_file=listing)
    listing.write_text("2000\n")
    with pytest.raises(UserError, match=r"position 2000 is out of range: synthetic has 2000 images \(0..1999\)"):
        get_dataset("synthetic", None, "test", subset_file=listing)
    with pytest.raises(UserError, match=r"subset_file .*none.txt not found; give the path of an image list"):
        get_dataset("synthetic", None, "test", subset_file=tmp_path / "none.txt")


def test_synthetic_set_is_deterministic_and_matches_its_normalisation():
    train = make_synthetic("train")  # a fresh generation, compared with the cached default set
    assert train is not default_synthetic("train") and train.fingerprint == default_synthetic("train").fingerprint
    assert (len(train), len(default_synthetic("test"))) == (5000, 2000)
    assert train.labels.bincount().tolist() == [500] * 10
    assert make_synthetic("train", seed=1, size=50).fingerprint != make_synthetic("train", size=50).fingerprint
    pixels = train.images.float() / 255
    mean, std = NORMALIZATION["synthetic"]
    np.testing.assert_allclose(pixels.mean(dim=(0, 2, 3)).numpy(), mean, atol=0.005)
    np.testing.assert_allclose(pixels.std(dim=(0, 2, 3)).numpy(), std, atol=0.005)
    assert DATASETS["synthetic"].num_classes == train.num_classes == 10


@pytest.mark.slow
def test_synthetic_set_is_learnable_by_a_tiny_conv_net():
    train = get_dataset("synthetic", None, "train", subset=2000)
    test = get_dataset("synthetic", None, "test", subset=500)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread is faster than two on a busy 2-core machine
    try:
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, 10),
        )  # fmt: skip
        opt = torch.optim.Adam(net.parameters(), lr=5e-3)
        for epoch in range(3):  # about 4 CPU-seconds
            for x, y in train.train_batches(32, None, device="cpu", seed=0, epoch=epoch):
                opt.zero_grad()
                nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            batches = test.eval_batches(250, None, device="cpu")
            correct = sum(int((net(x).argmax(1) == y).sum()) for x, y, _ in batches)
    finally:
        torch.set_num_threads(threads)
    assert correct / len(test) > 0.5  # chance is 0.1; measured 0.65-0.67 over torch seeds 0-2


# --- image folders -----------------------------------------------------------------------------------


def _write_folder(root: Path) -> None:
    colours = {"n01440764": (255, 0, 0), "n01443537": (0, 0, 255)}
    for split, count in (("train", 3), ("val", 2)):
        for wnid, colour in colours.items():
            (root / split / wnid).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40 + 4 * i, 30), colour).save(root / split / wnid / f"{wnid}_{i}.png")


def test_image_folder_source(tmp_path):
    _write_folder(tmp_path)
    test = get_dataset("imagenet", tmp_path, "val", workers=0)
    assert isinstance(test, ImageFolderSource) and test.split == "test"
    assert test.classes == ["n01440764", "n01443537"] and len(test) == 4
    assert test.labels.tolist() == [0, 0, 1, 1]
    (x, y, idx), = list(test.eval_batches(8, None, device="cpu"))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 1, 1] and idx.tolist() == [0, 1, 2, 3]
    # a solid red image stays solid red: channel values (1 - m) / s, (0 - m) / s
    mean, std = NORMALIZATION["imagenet"]
    np.testing.assert_allclose(x[0, :, 100, 100].numpy(), [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], atol=1e-5)
    assert (mean, std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    fingerprint = test.fingerprint
    Image.new("RGB", (41, 30), (255, 0, 0)).save(tmp_path / "val" / "n01440764" / "n01440764_0.png")
    assert get_dataset("imagenet", tmp_path, "test", workers=0).fingerprint != fingerprint
    assert get_dataset("imagenet", tmp_path, "test", subset=1).labels.tolist() == [0]

    train = get_dataset("imagenet", tmp_path, "train", workers=0)
    one = [(x, y) for x, y in train.train_batches(4, None, device="cpu", seed=0, epoch=0)]
    assert [x.shape for x, _ in one] == [(4, 3, 224, 224), (2, 3, 224, 224)]
    assert sorted(torch.cat([y for _, y in one]).tolist()) == [0, 0, 0, 1, 1, 1]
    two_workers = ImageFolderSource("imagenet", "train", tmp_path / "train", workers=2)
    same = [x for x, _ in two_workers.train_batches(4, None, device="cpu", seed=0, epoch=0)]
    assert all(torch.equal(a, b) for (a, _), b in zip(one, same))


def test_missing_imagenet_folder(tmp_path):
    with pytest.raises(UserError, match="CIFAR only"):
        get_dataset("imagenet", tmp_path, "train")
    with pytest.raises(UserError, match="unknown dataset"):
        get_dataset("mnist", tmp_path, "train")


# --- device helpers ----------------------------------------------------------------------------------


def test_device_helpers():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(UserError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32
    with pytest.raises(UserError, match="precision"):
        autocast("cpu", "fp8")
    conv = to_channels_last(nn.Conv2d(3, 4, 3), True)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 5, 5)
    assert to_channels_last(x, False) is x
    assert to_channels_last(x, True).is_contiguous(memory_format=torch.channels_last)


def test_labels_must_be_integer_class_indices_and_errors_name_the_file():
    from smoothbench.data.cifar import checked_labels

    assert checked_labels([3, 0, 9], 10, "f").dtype == np.int64
    for labels, message in (([0.0, 1.0], "holds float64 values labels"), ([["a"]], "holds 2-D <U1 labels"),
                            ([0, 10], "holds labels in 0..10, outside the 10 classes 0..9"),
                            ([-1, 2], "holds labels in -1..2, outside")):
        with pytest.raises(UserError, match=f"^batch.bin {message}"):
            checked_labels(labels, 10, "batch.bin")
