"""``get_dataset``: one entry point from a dataset name to an image source."""

from __future__ import annotations

import os
from pathlib import Path

from smoothbench.data.cifar import CIFAR, load_cifar
from smoothbench.data.imagenet import ImageFolderSource
from smoothbench.data.info import DATASETS, SPLITS
from smoothbench.data.resident import ResidentImages
from smoothbench.data.subset import EVAL_SUBSET_SEED, select_subset
from smoothbench.data.synthetic import default_synthetic
from smoothbench.errors import UserError, param
from smoothbench.progress import Progress

IMAGENET_FOLDERS = {"train": "train", "test": "val"}


def get_dataset(
    name: str,
    data_dir: str | os.PathLike | None,
    split: str,
    *,
    download: bool = False,
    subset: int | None = None,
    subset_file: str | os.PathLike | None = None,
    seed: int = EVAL_SUBSET_SEED,
    workers: int = 4,
    progress: Progress | None = None,
) -> ResidentImages | ImageFolderSource:
    """The ``split`` (``"train"`` or ``"test"``; ``"val"`` is an alias of ``"test"``) of dataset ``name``.

    - ``cifar10`` / ``cifar100``: ``data_dir/cifar-10-batches-py`` / ``data_dir/cifar-100-python``
      (official python folders); ``download`` fetches the official archive when files are missing.
    - ``imagenet``: ``data_dir/train`` and ``data_dir/val`` ImageFolders with WNID folders, decoded by
      ``workers`` DataLoader processes.
    - ``synthetic``: generated in memory from a fixed seed, once per process (``data_dir`` is ignored).

    ``subset=N`` keeps a class-balanced random sample of N images, in their original order
    (:mod:`smoothbench.data.subset`): every class gets ``N // K`` images and the first ``N mod K`` classes one
    more. The test split's sample is always drawn from the fixed
    :data:`~smoothbench.data.subset.EVAL_SUBSET_SEED` (every command evaluates the same N test images); the
    training split's from ``seed`` (training passes its own; evaluations keep the default, that same fixed
    seed). ``subset_file`` keeps the images a published list names (positions, or relative paths in an
    image folder; :func:`~smoothbench.data.subset.read_subset_file`), in the file's order, and ``subset`` then
    samples N of them.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    split = "test" if split == "val" else split
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: use train or test")
    if name != "synthetic" and data_dir is None:
        raise UserError(f"{name} needs a data folder: give {param('data_dir')} (see data/README.md)")
    if name in CIFAR:
        source = load_cifar(name, data_dir, split, download=download, progress=progress)
    elif name == "imagenet":
        folder = Path(data_dir) / IMAGENET_FOLDERS[split]
        if not folder.is_dir():
            raise UserError(
                f"ImageNet folder {folder} not found; {param('download')} covers CIFAR only: put the ImageNet train/ and val/ "
                f"WNID folders under {data_dir} (see data/README.md)"
            )
        source = ImageFolderSource(name, split, folder, workers=workers)
    else:
        source = default_synthetic(split)
    if subset is None and subset_file is None:
        return source
    return select_subset(source, subset, subset_file, seed=seed if split == "train" else EVAL_SUBSET_SEED)
