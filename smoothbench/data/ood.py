"""Out-of-distribution image sets of ``smoothbench ood``: every set is shown to the model with the
in-distribution dataset's input recipe, at its image size.

- ``svhn``: the SVHN test set (26,032 digits, ``test_32x32.mat``), in ``<ood dir>/svhn/`` (or the folder itself);
- ``cifar10`` / ``cifar100``: the other CIFAR test set (official python folders), for a CIFAR-100 / CIFAR-10 model;
- ``textures``: DTD (Describable Textures, 5,640 images, ``dtd/images/<class>/``): all of them, as the OOD
  literature uses it, resized (shorter side) to the model's size and centre-cropped;
- ``folder:PATH``: every image under ``PATH`` (any depth; ImageNet-O, OpenImage-O...), resized the same way;
- ``noise``: uniform pixel noise, each pixel independently uniform on 0..255; ``noise-gaussian``: N(128, 64²)
  per pixel, rounded and clipped to 0..255. Seeded (``seed``), as many images as the in-distribution set
  (at most :data:`NOISE_IMAGES`), generated in memory: the offline set of the demo and the tests.

OOD images carry no class: every label is 0 and is never scored.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets.folder import IMG_EXTENSIONS

from smoothbench.data.cifar import CIFAR, load_cifar
from smoothbench.data.download import download_and_extract, fetch, md5_file
from smoothbench.data.imagenet import MODEL_RESIZE, ImageFolderSource
from smoothbench.data.info import DATASETS
from smoothbench.data.preprocess import Preprocess, dataset_preprocess
from smoothbench.data.shifts import ShiftImages
from smoothbench.errors import UserError, param
from smoothbench.progress import Progress

#: The named OOD sets (``folder:PATH`` is the open-ended one).
OOD_SETS = ("svhn", "cifar10", "cifar100", "textures", "noise", "noise-gaussian")
#: The most images a generated noise set has.
NOISE_IMAGES = 10_000
#: SVHN's test file (as torchvision checks it).
SVHN_TEST = ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat",
             "eb5a983be6a315427106f1b164d9cef3")
#: DTD release 1.0.1 (as torchvision checks it); unpacks to ``dtd/images/<class>/*.jpg``.
DTD_ARCHIVE = ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",
               "fff73e5086ae6bdbea199a49dfb8a4c1")
_OOD_CLASSES = ["ood"]


def parse_ood_sets(text: str | list[str]) -> list[str]:
    """``"svhn,noise,folder:/data/imagenet-o"`` → the set names, each known (unknown ones: one UserError)."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n).strip() for n in text]
    names = [n for n in names if n]
    if not names:
        raise UserError(f"{param('ood')} needs at least one set: {', '.join(OOD_SETS)} or folder:PATH")
    for name in names:
        if name not in OOD_SETS and not (name.startswith("folder:") and len(name) > len("folder:")):
            raise UserError(f"unknown OOD set {name!r}: choose from {', '.join(OOD_SETS)} or folder:PATH")
    if len(set(names)) != len(names):
        raise UserError(f"{param('ood')} names a set twice: {','.join(names)}")
    return names


class OodFolder(ImageFolderSource):
    """Every image under a folder (one pseudo-class), read with the in-distribution set's (``base``) recipe;
    small-image models (CIFAR) see each image resized to their size and centre-cropped."""

    def __init__(self, name: str, root: str | os.PathLike, *, base: str, workers: int = 4) -> None:
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"OOD folder {root} not found; give an existing folder of images")
        files = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise UserError(f"no images ({', '.join(IMG_EXTENSIONS)}) under {root}")
        size = DATASETS[base].image_size
        super().__init__(name, "ood", root, classes=_OOD_CLASSES, workers=workers, image_size=size,
                         resize=size if size <= 64 else MODEL_RESIZE, samples=[(f, 0) for f in files])
        self.base = base

    def effective(self, preprocess: Preprocess | None) -> Preprocess:
        return super().effective(preprocess if preprocess is not None else dataset_preprocess(self.base))


def _resident(name: str, images_nchw: np.ndarray, base: str) -> ShiftImages:
    images = torch.from_numpy(np.ascontiguousarray(images_nchw))
    return ShiftImages(name, "ood", images, torch.zeros(len(images), dtype=torch.int64), _OOD_CLASSES,
                       source="clean", base=base)


def noise_images(kind: str, count: int, size: int, seed: int) -> np.ndarray:
    """``count`` uint8 noise images ``[count, 3, size, size]``: ``noise`` (uniform) or ``noise-gaussian``.
    The draw depends only on ``(seed, kind)``."""
    rng = np.random.default_rng([seed, OOD_SETS.index(kind)])
    shape = (count, 3, size, size)
    if kind == "noise":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return np.clip(np.rint(rng.normal(128.0, 64.0, size=shape)), 0, 255).astype(np.uint8)


def _svhn(folder: Path, download: bool, progress: Progress | None, base: str) -> ShiftImages:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    url, filename, md5 = SVHN_TEST
    candidates = [folder / "svhn" / filename, folder / filename]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None and download:
        path = candidates[0]
        fetch(url, path, md5, progress)
    if path is None:
        raise UserError(f"SVHN not found: no {candidates[0]} or {candidates[1]}; add {param('download')} or copy "
                        f"{filename} from {url} there")
    if md5_file(path) != md5:
        warnings.warn(f"{path} differs from the official SVHN test file (md5); results may not match published "
                      "numbers", stacklevel=3)
    try:
        images = loadmat(str(path))["X"]
    except (MatReadError, KeyError, ValueError, OSError, TypeError) as err:
        raise UserError(f"{path} is not SVHN's test_32x32.mat ({err}); download it again") from None
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise UserError(f"{path} holds no uint8 [32, 32, 3, N] 'X' array; download it again")
    return _resident("svhn", images.transpose(3, 2, 0, 1), base)


def get_ood_set(name: str, in_dataset: str, data_dir: str | os.PathLike | None, *, download: bool = False,
                count: int = NOISE_IMAGES, seed: int = 0, workers: int = 4, progress: Progress | None = None):
    """The OOD set ``name`` (see the module) for a model of ``in_dataset``, from ``data_dir``; ``count`` images
    for generated sets (at most :data:`NOISE_IMAGES`)."""
    if in_dataset not in DATASETS:
        raise UserError(f"OOD detection needs a known in-distribution dataset, got {in_dataset!r}")
    if name in ("noise", "noise-gaussian"):
        return _resident(name, noise_images(name, min(count, NOISE_IMAGES), DATASETS[in_dataset].image_size, seed),
                         in_dataset)
    if name.startswith("folder:"):
        return OodFolder(name, name[len("folder:"):], base=in_dataset, workers=workers)
    if name == in_dataset:
        raise UserError(f"{name} is the in-distribution set of this model; choose another OOD set")
    if data_dir is None:
        raise UserError(f"the OOD set {name} needs its folder: give {param('ood_dir')} (or {param('data_dir')}); "
                        "see data/README.md")
    folder = Path(data_dir)
    if name in CIFAR:
        cifar = load_cifar(name, folder, "test", download=download, progress=progress)
        return _resident(name, cifar.images.numpy(), in_dataset)
    if name == "svhn":
        return _svhn(folder, download, progress, in_dataset)
    images = folder / "dtd" / "images"
    if not images.is_dir() and download:
        download_and_extract(DTD_ARCHIVE[0], folder, DTD_ARCHIVE[1], progress)
    if not images.is_dir():
        raise UserError(f"DTD not found: no {images}; add {param('download')} or unpack {DTD_ARCHIVE[0]} into {folder}")
    return OodFolder("textures", images, base=in_dataset, workers=workers)
