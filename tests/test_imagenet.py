"""Image folders (smoothbench.data.imagenet): per-process shards of streaming training batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import smoothbench.data.imagenet as imagenet
from smoothbench.data.preprocess import Preprocess
from smoothbench.data import ImageFolderSource


CLASSES = ("n01440764", "n01443537", "n01484850")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def write_folder(root: Path, per_class: int = 7) -> Path:
    """``root/<wnid>/`` with ``per_class`` noise images per class of varying sizes, PNG and JPEG mixed."""
    rng = np.random.default_rng(0)
    for c, wnid in enumerate(CLASSES):
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20 + i, 24 + c, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / wnid / f"{wnid}_{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> ImageFolderSource:
    root = write_folder(tmp_path_factory.mktemp("imagefolder") / "train")
    return ImageFolderSource("imagenet", "train", root, workers=0, image_size=16, resize=None)


def batches(source: ImageFolderSource, **kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(source.train_batches(8, Preprocess(MEAN, STD), device="cpu", seed=3, epoch=2, **kwargs))


@pytest.mark.parametrize("n, world, steps", [
    (21, 2, 3),  # 8 + 8 + 5: the last batch of 5 feeds both ranks
    (21, 3, 3),  # shards of 3, 3, 2 images, then 2, 2, 1
    (17, 2, 2),  # 8 + 8 + 1: the last image cannot feed 2 ranks and is left out
    (19, 4, 2),  # 8 + 8 + 3 < 4 ranks: left out
])
def test_rank_batches_make_up_the_one_process_batches(folder, n, world, steps):
    source = folder.select(np.arange(n))
    single = batches(source)
    assert len(single) == 3  # one process keeps its last short batch
    ranks = [batches(source, rank=r, world=world) for r in range(world)]
    assert {len(b) for b in ranks} == {steps}
    for step in range(steps):
        assert all(ranks[r][step][0].shape[0] >= 1 for r in range(world))
        x = torch.cat([ranks[r][step][0] for r in range(world)])
        y = torch.cat([ranks[r][step][1] for r in range(world)])
        assert torch.equal(x, single[step][0]) and torch.equal(y, single[step][1])
    assert sum(b[1].shape[0] for r in range(world) for b in ranks[r]) == n - (n % 8 if steps < 3 else 0)


def test_each_rank_decodes_only_its_slice(folder, monkeypatch):
    opened: list[str] = []
    real_open = imagenet.Image.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(imagenet.Image, "open", counting_open)
    rank_1 = batches(folder, rank=1, world=3)
    assert len(opened) == sum(y.shape[0] for _, y in rank_1) == 3 + 3 + 2  # shards of 8, 8, 5 images
    assert len(set(opened)) == len(opened)


def test_sharded_batches_do_not_depend_on_the_worker_count(folder):
    with_workers = ImageFolderSource("imagenet", "train", folder.root, workers=2, image_size=16, resize=None)
    for (a, ya), (b, yb) in zip(batches(folder, rank=1, world=2), batches(with_workers, rank=1, world=2), strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
