"""Natural distribution shifts: new test sets of a dataset's classes, drawn from a different distribution.

Each set is an :class:`~smoothbench.data.source.ImageSource` whose labels index the classes of its clean
dataset (``base``), so a model trained on that dataset evaluates on it unchanged:

- ``cifar10.1``: CIFAR-10.1 v6 (Recht et al. 2018), 2,000 new 32×32 test images of the CIFAR-10 classes:
  ``cifar10.1_v6_data.npy`` (uint8 [N,32,32,3]) and ``cifar10.1_v6_labels.npy`` (N integer labels).
- ``imagenet-v2``: ImageNet-V2 matched-frequency (Recht et al. 2019), 10,000 images in folders named by
  class *index* ``0`` .. ``999`` (not WNIDs); a copy re-sorted into WNID folders is read too.
- ``imagenet-a`` / ``imagenet-r``: ImageNet-A and ImageNet-R (Hendrycks et al.), WNID folders of 200
  classes. Their labels are positions ``0..199`` in the set's 200-class mask (:func:`class_mask`): a
  1000-way model's outputs are restricted to the masked columns before scoring (Hendrycks' protocol).
- ``imagenet-sketch``: ImageNet-Sketch (Wang et al. 2019), about 50 sketches per class in the 1000 WNID
  folders.

CIFAR-10H (:func:`load_cifar10h`) is not an image set but human soft labels for the CIFAR-10 *test* set
(Peterson et al. 2019), scored with :func:`smoothbench.metrics.soft_labels.soft_label_nll`.

Files are looked up under ``data_dir`` (several usual folder names, see :data:`SHIFTS`); ``download``
fetches the sets that have a stable URL and a published MD5 (CIFAR-10.1, CIFAR-10H, ImageNet-A,
ImageNet-R). :func:`get_shift` is the one entry point from a name; published image lists (``--subset-file``) are read by
:func:`smoothbench.data.subset.read_subset_file`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from smoothbench.data.cifar import checked_labels
from smoothbench.data.download import download_and_extract, fetch, md5_file
from smoothbench.data.imagenet import ImageFolderSource
from smoothbench.data.imagenet_wnids import IMAGENET_A_WNIDS, IMAGENET_R_WNIDS, IMAGENET_WNIDS
from smoothbench.data.preprocess import Preprocess, dataset_preprocess
from smoothbench.data.resident import ResidentImages
from smoothbench.data.subset import read_subset_file  # noqa: F401  (--subset-file lists; it lived here)
from smoothbench.errors import UserError, param
from smoothbench.progress import Progress

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class ShiftSet:
    """Where one shift set lives and how it is checked.

    ``folders``: where it is looked for under ``data_dir`` (in order; ``""`` is ``data_dir`` itself; the
    first is where ``download`` puts it). ``files``: ``(file name, published md5)`` of an array set
    (``None`` for a folder set). ``url``/``md5``: the archive ``download`` fetches (a folder set), or the
    folder URL the files are fetched from (an array set); ``None`` where no stable URL with a published
    checksum exists. ``classes``: the set's classes in label order, when it uses only some of ``base``'s.
    """

    name: str
    base: str
    title: str
    folders: tuple[str, ...]
    homepage: str
    files: tuple[tuple[str, str], ...] | None = None
    url: str | None = None
    md5: str | None = None
    classes: tuple[str, ...] | None = None


# Published MD5s. CIFAR-10.1 labels: computed from the file at modestyachts/CIFAR-10.1 master (2020 numpy
# format 2.0 update) and listed, with the data file's, by third-party loaders (rai-toolbox ``CIFAR10P1``
# and others). ImageNet-A / -R archives: as listed by torch-uncertainty (``ImageNetA``/``ImageNetR``) and
# other loaders. CIFAR-10H: computed from jcpeterson/cifar-10h ``data/cifar10h-probs.npy`` and listed by
# torch-uncertainty (``CIFAR10H``).
SHIFTS: dict[str, ShiftSet] = {
    "cifar10.1": ShiftSet(
        name="cifar10.1", base="cifar10", title="CIFAR-10.1 v6",
        folders=("CIFAR-10.1", "CIFAR-10.1/datasets", "cifar10.1", ""),
        homepage="https://github.com/modestyachts/CIFAR-10.1",
        files=(("cifar10.1_v6_data.npy", "4fcae82cb1326aec9ed1dc1fc62345b8"),
               ("cifar10.1_v6_labels.npy", "09a97fb7c430502fcbd69d95093a3f85")),
        url="https://github.com/modestyachts/CIFAR-10.1/raw/master/datasets/",
    ),
    "imagenet-v2": ShiftSet(
        name="imagenet-v2", base="imagenet", title="ImageNet-V2 matched-frequency",
        folders=("imagenetv2-matched-frequency-format-val", "imagenet-v2/imagenetv2-matched-frequency-format-val",
                 "imagenet-v2", "imagenetv2"),
        homepage="https://github.com/modestyachts/ImageNetV2",
    ),
    "imagenet-a": ShiftSet(
        name="imagenet-a", base="imagenet", title="ImageNet-A", folders=("imagenet-a",),
        homepage="https://github.com/hendrycks/natural-adv-examples",
        url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar", md5="c3e55429088dc681f30d81f4726b6595",
        classes=IMAGENET_A_WNIDS,
    ),
    "imagenet-r": ShiftSet(
        name="imagenet-r", base="imagenet", title="ImageNet-R", folders=("imagenet-r",),
        homepage="https://github.com/hendrycks/imagenet-r",
        url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar", md5="a61312130a589d0ca1a8fca1f2bd3337",
        classes=IMAGENET_R_WNIDS,
    ),
    "imagenet-sketch": ShiftSet(
        name="imagenet-sketch", base="imagenet", title="ImageNet-Sketch",
        folders=("sketch", "imagenet-sketch/sketch", "imagenet-sketch"),
        homepage="https://github.com/HaohanWang/ImageNet-Sketch",
    ),
}

CIFAR10H_FILE = "cifar10h-probs.npy"
CIFAR10H_MD5 = "7b41f73eee90fdefc73bfc820ab29ba8"
CIFAR10H_URL = "https://github.com/jcpeterson/cifar-10h/raw/master/data/cifar10h-probs.npy"
#: Where ``cifar10h-probs.npy`` is looked for under ``data_dir`` (the first is where ``download`` puts it).
CIFAR10H_FOLDERS = ("cifar-10h", "cifar-10h/data", "cifar10h", "")
#: Rows of CIFAR-10H must sum to 1 within this (the release is exact to float64 rounding).
SOFT_LABEL_TOLERANCE = 1e-6


def shift_names() -> tuple[str, ...]:
    """The image sets :func:`get_shift` knows."""
    return tuple(SHIFTS)


def _info(name: str) -> ShiftSet:
    if name not in SHIFTS:
        hint = (" (cifar10h is soft labels for the CIFAR-10 test set, not an image set: see load_cifar10h)"
                if name == "cifar10h" else "")
        raise UserError(f"unknown shift set {name!r}: choose one of {', '.join(SHIFTS)}{hint}")
    return SHIFTS[name]


def class_mask(name: str) -> np.ndarray | None:
    """The indices into the 1000 ImageNet classes (:data:`IMAGENET_WNIDS`, sorted WNIDs) of the classes of
    shift set ``name``, in sorted-WNID order (int64 [200] for ``imagenet-a`` / ``imagenet-r``); ``None`` for
    a set that uses all of its dataset's classes. Position ``j`` of the mask is label ``j`` of the set.

    The WNID lists are those of Hendrycks' evaluation scripts (hendrycks/natural-adv-examples and
    hendrycks/imagenet-r ``eval.py``), stored in :mod:`smoothbench.data.imagenet_wnids`.
    """
    info = _info(name)
    if info.classes is None:
        return None
    position = {wnid: i for i, wnid in enumerate(IMAGENET_WNIDS)}
    return np.array([position[wnid] for wnid in info.classes], dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------
# image sources that keep their clean dataset's input recipe


class ShiftImages(ResidentImages):
    """A CIFAR-sized shift set in memory: a :class:`ResidentImages` whose default recipe (normalisation) is
    its clean dataset's (``base``), since its own name has none."""

    def __init__(self, *args, base: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.base = base

    def _like(self, images: torch.Tensor, labels: torch.Tensor, fingerprint: str | None) -> ShiftImages:
        return ShiftImages(self.name, self.split, images, labels, self.classes, source=self.source,
                           fingerprint=fingerprint, base=self.base)

    def effective(self, preprocess: Preprocess | None) -> Preprocess:
        return super().effective(preprocess if preprocess is not None else dataset_preprocess(self.base))


class ShiftFolder(ImageFolderSource):
    """An image-folder shift set: an :class:`ImageFolderSource` whose default recipe is its clean
    dataset's (``base``; ImageNet: resize 256, centre crop 224)."""

    def __init__(self, name: str, root: str | os.PathLike, *, base: str, classes: Sequence[str],
                 folder_classes: Sequence[str] | None = None, workers: int = 4) -> None:
        # ``folder_classes``: the folder names in label order when they differ from the class names
        # (ImageNet-V2's folders are class indices); ``classes`` then replaces them.
        super().__init__(name, "test", root, classes=folder_classes or classes, workers=workers)
        self.classes = list(classes)
        self.base = base

    def effective(self, preprocess: Preprocess | None) -> Preprocess:
        return super().effective(preprocess if preprocess is not None else dataset_preprocess(self.base))


# ---------------------------------------------------------------------------------------------------------
# loaders


def _candidates(data_dir: str | os.PathLike, folders: Sequence[str]) -> list[Path]:
    return [Path(data_dir) / f if f else Path(data_dir) for f in folders]


def _need_dir(data_dir: str | os.PathLike | None, what: str) -> Path:
    if data_dir is None:
        raise UserError(f"{what} needs a data folder: give {param('data_dir')} (see data/README.md)")
    return Path(data_dir)


def _shown(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _warn_md5(what: str, folder: Path, files: Sequence[tuple[str, str]]) -> None:
    """One warning naming the files whose MD5 differs from the published one."""
    differs = [f for f, md5 in files if md5_file(folder / f) != md5]
    if differs:
        warnings.warn(f"{what}: {', '.join(differs)} in {folder} differ from the published files (md5); results "
                      "may not match published numbers", stacklevel=3)


def _load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array (pickled objects refused)."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npy array ({exc}); replace it with the published file") from None


def load_cifar10_1(data_dir: str | os.PathLike | None, *, download: bool = False,
                   progress: Progress | None = None) -> ShiftImages:
    """CIFAR-10.1 v6 as a :class:`ShiftImages` (``name="cifar10.1"``, ``split="test"``, CIFAR-10's classes).

    The two ``.npy`` files are looked for in ``data_dir/CIFAR-10.1``, ``data_dir/CIFAR-10.1/datasets``,
    ``data_dir/cifar10.1`` and ``data_dir``; ``download`` fetches the missing ones into
    ``data_dir/CIFAR-10.1`` (MD5-checked). Files that differ from the published ones load with one warning.
    """
    info = SHIFTS["cifar10.1"]
    root = _need_dir(data_dir, "cifar10.1")
    names = [f for f, _ in info.files]
    places = _candidates(root, info.folders)
    folder = next((p for p in places if all((p / f).is_file() for f in names)), None)
    if folder is None and download:
        folder = places[0]
        for f, md5 in info.files:
            if not (folder / f).is_file():
                fetch(info.url + f, folder / f, md5, progress)
    if folder is None:
        raise UserError(f"cifar10.1 not found: {' and '.join(names)} are not in any of {_shown(places)}; use "
                        f"{param('download')} to fetch them, or copy them from {info.homepage} (see data/README.md)")
    _warn_md5("cifar10.1", folder, info.files)
    data_path, labels_path = (folder / f for f in names)
    images, labels = _load_npy(data_path), _load_npy(labels_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise UserError(f"{data_path} holds {images.dtype} {list(images.shape)}, not uint8 images [N, 32, 32, 3]; "
                        "replace it with the published file")
    if labels.shape != (images.shape[0],):
        raise UserError(f"{labels_path} holds {list(labels.shape)} labels for {images.shape[0]} images in "
                        f"{data_path.name}; replace both with the published files")
    labels = checked_labels(labels, len(CIFAR10_CLASSES), labels_path)
    tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return ShiftImages("cifar10.1", "test", tensor, torch.from_numpy(labels), CIFAR10_CLASSES, source="clean",
                       base="cifar10")


def load_cifar10h(data_dir: str | os.PathLike | None, *, download: bool = False,
                  progress: Progress | None = None, num_images: int = 10000) -> np.ndarray:
    """CIFAR-10H soft labels: float64 [10000, 10], row ``i`` the human label distribution of CIFAR-10 test
    image ``i`` (file order of ``test_batch``).

    ``cifar10h-probs.npy`` is looked for in ``data_dir/cifar-10h``, ``data_dir/cifar-10h/data``,
    ``data_dir/cifar10h`` and ``data_dir``; ``download`` fetches it into ``data_dir/cifar-10h``. Refused
    unless it is [``num_images``, 10], finite, non-negative and every row sums to 1 (within
    :data:`SOFT_LABEL_TOLERANCE`); a file that differs from the published one loads with one warning.
    """
    root = _need_dir(data_dir, "cifar10h")
    places = _candidates(root, CIFAR10H_FOLDERS)
    folder = next((p for p in places if (p / CIFAR10H_FILE).is_file()), None)
    if folder is None and download:
        folder = places[0]
        fetch(CIFAR10H_URL, folder / CIFAR10H_FILE, CIFAR10H_MD5, progress)
    if folder is None:
        raise UserError(f"cifar10h not found: {CIFAR10H_FILE} is not in any of {_shown(places)}; use "
                        f"{param('download')} to fetch it, or copy it from https://github.com/jcpeterson/cifar-10h "
                        "(see data/README.md)")
    path = folder / CIFAR10H_FILE
    _warn_md5("cifar10h", folder, ((CIFAR10H_FILE, CIFAR10H_MD5),))
    probs = _load_npy(path)
    if probs.shape != (num_images, len(CIFAR10_CLASSES)) or probs.dtype.kind != "f":
        raise UserError(f"{path} holds {probs.dtype} {list(probs.shape)}, not float soft labels "
                        f"[{num_images}, {len(CIFAR10_CLASSES)}]; replace it with the published file")
    probs = probs.astype(np.float64, copy=False)
    if not np.isfinite(probs).all() or probs.min() < 0:
        raise UserError(f"{path} holds negative or non-finite values, not probabilities; replace it with the "
                        "published file")
    worst = float(np.abs(probs.sum(axis=1) - 1.0).max())
    if worst > SOFT_LABEL_TOLERANCE:
        raise UserError(f"{path} has rows that do not sum to 1 (off by up to {worst:.3g}); replace it with the "
                        "published file")
    return probs


def _class_folders(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def _find_folder(info: ShiftSet, data_dir: Path, download: bool, progress: Progress | None) -> Path:
    places = _candidates(data_dir, info.folders)
    root = next((p for p in places if p.is_dir() and _class_folders(p)), None)
    if root is None and download:
        if info.url is None:
            raise UserError(f"{info.name} has no download with a published checksum, so {param('download')} cannot "
                            f"fetch it: get it from {info.homepage} and unpack it into {places[0]} "
                            "(see data/README.md)")
        download_and_extract(info.url, data_dir, info.md5, progress)
        root = next((p for p in places if p.is_dir() and _class_folders(p)), None)
        if root is None:
            raise UserError(f"the downloaded {info.name} archive has no class folders in {_shown(places)}; check "
                            "the URL or unpack the archive by hand")
    if root is None:
        how = (f"use {param('download')} to fetch it, or unpack it from {info.url}" if info.url is not None
               else f"get it from {info.homepage}")
        raise UserError(f"{info.name} not found: no class folders in any of {_shown(places)}; {how} "
                        "(see data/README.md)")
    return root


def load_folder_shift(name: str, data_dir: str | os.PathLike | None, *, download: bool = False, workers: int = 4,
                      progress: Progress | None = None) -> ShiftFolder:
    """An ImageNet shift set (``imagenet-v2``, ``imagenet-a``, ``imagenet-r``, ``imagenet-sketch``) as a
    :class:`ShiftFolder` decoded by ``workers`` DataLoader processes.

    Labels: ImageNet-V2 and ImageNet-Sketch index the 1000 classes (sorted WNIDs; V2's folders ``0..999``
    are those indices); ImageNet-A and -R label each image by its class's position in :func:`class_mask`
    (``0..199``). A folder whose name is not a class of the set is refused (the wrong folder, most likely).
    """
    info = _info(name)
    if info.files is not None:
        raise UserError(f"{name} is not an image-folder set; use get_shift")
    root = _find_folder(info, _need_dir(data_dir, name), download, progress)
    folders = _class_folders(root)
    if name == "imagenet-v2":
        return _imagenet_v2(root, folders, workers)
    classes = info.classes if info.classes is not None else IMAGENET_WNIDS
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        kind = f"one of the {len(classes)} {info.title} classes" if info.classes is not None else "an ImageNet WNID"
        raise UserError(f"{root} holds the folder {unknown[0]!r}, which is not {kind} "
                        f"({len(unknown)} such folders); point {param('data_dir')} at the folder that holds the "
                        f"unpacked {info.folders[0]}/ (see data/README.md)")
    return ShiftFolder(name, root, base=info.base, classes=classes, workers=workers)


def _imagenet_v2(root: Path, folders: list[str], workers: int) -> ShiftFolder:
    """ImageNet-V2's release names its folders by class index (``0`` .. ``999``); a copy re-sorted into
    WNID folders is read as well. Anything else is refused."""
    if all(re.fullmatch(r"0|[1-9][0-9]{0,3}", f) for f in folders):
        bad = [f for f in folders if int(f) >= len(IMAGENET_WNIDS)]
        if bad:
            raise UserError(f"{root} holds the folder {bad[0]!r}, outside the class indices 0..999 of "
                            "ImageNet-V2; replace the folder with the published release")
        return ShiftFolder("imagenet-v2", root, base="imagenet", classes=IMAGENET_WNIDS,
                           folder_classes=[str(i) for i in range(len(IMAGENET_WNIDS))], workers=workers)
    known = set(IMAGENET_WNIDS)
    if all(f in known for f in folders):
        return ShiftFolder("imagenet-v2", root, base="imagenet", classes=IMAGENET_WNIDS, workers=workers)
    odd = next((f for f in folders if f not in known and not f.isdigit()), None)
    what = f"the folder {odd!r}" if odd is not None else "both class-index and WNID folders"
    raise UserError(f"{root} holds {what}: ImageNet-V2 folders are class indices 0..999 (the release) or "
                    "ImageNet WNIDs, not a mix; replace the folder with the published release")


def get_shift(name: str, data_dir: str | os.PathLike | None, *, download: bool = False, workers: int = 4,
              progress: Progress | None = None) -> tuple[ShiftImages | ShiftFolder, np.ndarray | None]:
    """Shift set ``name`` from ``data_dir`` and its class mask (:func:`class_mask`; ``None`` when the set
    uses all of its dataset's classes). ``download`` fetches a missing set where a stable URL and a published
    MD5 exist; ``workers`` decode the image-folder sets."""
    info = _info(name)
    if info.files is not None:
        return load_cifar10_1(data_dir, download=download, progress=progress), None
    return load_folder_shift(name, data_dir, download=download, workers=workers, progress=progress), class_mask(name)
