"""Released corrupted sets: CIFAR-10-C / CIFAR-100-C ``.npy`` files and ImageNet-C JPEG folders.

CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich 2019): ``<root>/<corruption>.npy``, uint8
(5·N, 32, 32, 3) in severity-major blocks of N (N = 10,000 in the release, rows ``N(s-1) .. Ns - 1``
are severity ``s``), and ``labels.npy`` (5·N labels, the test labels tiled 5 times). ``root`` may also
be the folder above ``CIFAR-10-C/`` or ``CIFAR-100-C/``. Files are checked against the published MD5s
(as listed by torch-uncertainty, ``datasets/classification/cifar/cifar_c.py``); each file's digest is
computed once per process and cached by path, size and modification time. A partial set (only some
corruptions downloaded) works for the corruptions present.

ImageNet-C: ``<root>/<corruption>/<severity>/<wnid>/*.JPEG`` (224x224 JPEGs), class indices from
the sorted WNIDs, read by :class:`~smoothbench.data.ImageFolderSource`.

A CIFAR-C folder written by :func:`smoothbench.corruptions.writer.make_cifar_c` carries the manifest
``smoothbench-make-c.json``; it has no published MD5s, so it loads with shape checks only and
``source="generated"``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from smoothbench.corruptions.registry import CANONICAL_NAMES
from smoothbench.data import ImageFolderSource, ResidentImages
from smoothbench.data.cifar import checked_labels
from smoothbench.data.download import md5_file
from smoothbench.data.subset import sample_indices, select_subset
from smoothbench.errors import UserError, param

SEVERITIES = (1, 2, 3, 4, 5)
#: Written by smoothbench's make-c writers into every folder they fill.
MANIFEST = "smoothbench-make-c.json"

#: Published MD5 of every file of the releases (zenodo 2535967 / 3555552).
CIFAR_C_MD5: dict[str, dict[str, str]] = {
    "cifar10": {
        "gaussian_noise.npy": "ecaf8b9a2399ffeda7680934c33405fd",
        "shot_noise.npy": "3a7239bb118894f013d9bf1984be7f11",
        "impulse_noise.npy": "2090e01c83519ec51427e65116af6b1a",
        "defocus_blur.npy": "7d1322666342a0702b1957e92f6254bc",
        "glass_blur.npy": "7361fb4019269e02dbf6925f083e8629",
        "motion_blur.npy": "fffa5f852ff7ad299cfe8a7643f090f4",
        "zoom_blur.npy": "6ea8e63f1c5cdee1517533840641641b",
        "snow.npy": "bb238de8555123da9c282dea23bd6e55",
        "frost.npy": "31f6ab3bce1d9934abfb0cc13656f141",
        "fog.npy": "7b397314b5670f825465fbcd1f6e9ccd",
        "brightness.npy": "0a81ef75e0b523c3383219c330a85d48",
        "contrast.npy": "3c8262171c51307f916c30a3308235a8",
        "elastic_transform.npy": "9421657c6cd452429cf6ce96cc412b5f",
        "pixelate.npy": "0f14f7e2db14288304e1de10df16832f",
        "jpeg_compression.npy": "2b9cc4c864e0193bb64db8d7728f8187",
        "speckle_noise.npy": "ef00b87611792b00df09c0b0237a1e30",
        "gaussian_blur.npy": "c33370155bc9b055fb4a89113d3c559d",
        "spatter.npy": "8a5a3903a7f8f65b59501a6093b4311e",
        "saturate.npy": "1cfae0964219c5102abbb883e538cc56",
        "labels.npy": "c439b113295ed5254878798ffe28fd54",
    },
    "cifar100": {
        "gaussian_noise.npy": "ecc4d366eac432bdf25c024086f5e97d",
        "shot_noise.npy": "b0a1fa6e1e465a747c1b204b1914048a",
        "impulse_noise.npy": "3b3c210ddfa0b5cb918ff4537a429fef",
        "defocus_blur.npy": "d923e3d9c585a27f0956e2f2ad832564",
        "glass_blur.npy": "0bf384f38e5ccbf8dd479d9059b913e1",
        "motion_blur.npy": "732a7e2e54152ff97c742d4c388c5516",
        "zoom_blur.npy": "0204613400c034a81c4830d5df81cb82",
        "snow.npy": "0237be164583af146b7b144e73b43465",
        "frost.npy": "3a39c6823bdfaa0bf8b12fe7004b8117",
        "fog.npy": "4efc7ebd5e82b028bdbe13048e3ea564",
        "brightness.npy": "f22d7195aecd6abb541e27fca230c171",
        "contrast.npy": "322bb385f1d05154ee197ca16535f71e",
        "elastic_transform.npy": "a0792bd6581f6810878be71acedfc65a",
        "pixelate.npy": "96c00c60f144539e14cffb02ddbd0640",
        "jpeg_compression.npy": "c851b7f1324e1d2ffddeb76920576d11",
        "speckle_noise.npy": "e3f215b1a0f9fd9fd6f0d1cf94a7ce99",
        "gaussian_blur.npy": "5204ba0d557839772ef5a4196a052c3e",
        "spatter.npy": "12ccf41d62564d36e1f6a6ada5022728",
        "saturate.npy": "c0697e9fdd646916a61e9c312c77bf6b",
        "labels.npy": "bb4026e9ce52996b95f439544568cdb2",
    },
}

CIFAR_C_FOLDERS = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: CIFAR-100 fine labels (alphabetical, the order of the official meta file).
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can "
    "castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin "
    "elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster "
    "man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
    "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk "
    "skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger "
    "tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
CIFAR_CLASSES = {"cifar10": CIFAR10_CLASSES, "cifar100": tuple(CIFAR100_CLASSES)}

IMAGENET_C_FOLDERS = ("ImageNet-C", "imagenet-c", "imagenetc")
IMAGENET_CLASSES = 1000
#: ImageNet-C evaluation transforms: Hendrycks' test.py (the files are 224 px already) and the paper
#: code's Resize(256) + CenterCrop(224), which upsamples and crops 12.5 % away.
IMAGENET_C_RESIZE = {"hendrycks": None, "paper": 256}

_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_md5(path: Path) -> str:
    """MD5 of ``path``, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = md5_file(path)
    return _DIGESTS[key]


def _check_dataset(dataset: str) -> None:
    if dataset not in CIFAR_C_FOLDERS:
        raise UserError(f"unknown corrupted CIFAR dataset {dataset!r}: use cifar10 or cifar100")


def cifar_c_dir(root: str | os.PathLike, dataset: str = "cifar10") -> Path:
    """The folder holding the ``.npy`` files: ``root/CIFAR-10-C`` (or ``-100-C``) if it exists, else ``root``."""
    _check_dataset(dataset)
    root = Path(root).expanduser()
    nested = root / CIFAR_C_FOLDERS[dataset]
    folder = nested if nested.is_dir() else root
    if not folder.is_dir():
        raise UserError(
            f"{CIFAR_C_FOLDERS[dataset]} folder {root} not found: download it (zenodo, see the hendrycks/robustness "
            "README) and pass the folder that holds its .npy files"
        )
    return folder


def available_corruptions(root: str | os.PathLike, dataset: str = "cifar10") -> list[str]:
    """Corruptions with a ``<name>.npy`` file in the set at ``root``, in the canonical order."""
    folder = cifar_c_dir(root, dataset)
    return [name for name in CANONICAL_NAMES if (folder / f"{name}.npy").is_file()]


def verify_cifar_c_file(path: Path, dataset: str, md5s: Mapping[str, str] | None = None) -> None:
    """UserError unless ``path`` has its published MD5 (``md5s`` overrides the table, keyed by file name)."""
    table = CIFAR_C_MD5[dataset] if md5s is None else md5s
    expected = table.get(path.name)
    if expected is None:
        raise UserError(f"{path.name} has no published md5 for {dataset}-C; load it without the check "
                        f"({param('verify', api='verify=False', cli='--no-verify')})")
    digest = _file_md5(path)
    if digest != expected:
        raise UserError(
            f"{path} is corrupt or not the released file (md5 {digest}, expected {expected}); download it again "
            f"(or skip the check with {param('verify', api='verify=False', cli='--no-verify')} if you made it yourself)"
        )


def _open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"{path} is not a readable .npy array ({exc}); download it again") from None


def load_cifar_c(
    root: str | os.PathLike,
    corruption: str,
    severity: int,
    *,
    dataset: str = "cifar10",
    subset: int | None = None,
    verify: bool = True,
    md5s: Mapping[str, str] | None = None,
) -> ResidentImages:
    """Severity ``severity`` of ``corruption`` from a released CIFAR-10-C / CIFAR-100-C folder.

    Memory-maps ``<corruption>.npy`` and copies only the rows of the images kept into a
    :class:`ResidentImages` named ``dataset`` (so the clean set's normalisation applies), split ``test``,
    ``source="released"``. Each severity is a block of N = rows / 5 images in the clean test order:
    ``subset=n`` keeps the class-balanced sample of n images that ``get_dataset(..., "test", subset=n)`` keeps
    of the clean set (:func:`~smoothbench.data.subset.sample_indices` on the labels of the first block, which
    are the clean test labels), the same rows in every severity; without ``subset``, the whole block. With
    ``verify`` the corruption file and ``labels.npy`` must have their published MD5 (``md5s`` replaces that
    table), unless the folder is a smoothbench-made set (its manifest is present: ``source="generated"``, no
    MD5s exist).
    """
    _check_dataset(dataset)
    if corruption not in CANONICAL_NAMES:
        raise UserError(f"unknown corruption {corruption!r}: choose one of {', '.join(CANONICAL_NAMES)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise UserError(f"severity must be an integer 1..5 (got {severity!r})")
    folder = cifar_c_dir(root, dataset)
    path, labels_path = folder / f"{corruption}.npy", folder / "labels.npy"
    if not path.is_file():
        have = available_corruptions(folder, dataset)
        missing = [n for n in CANONICAL_NAMES if n not in have]
        raise UserError(
            f"{path} is missing ({len(have)} of 19 corruption files present; missing: {', '.join(missing)}); "
            f"download {CIFAR_C_FOLDERS[dataset]} completely or choose among: {', '.join(have) or 'none'}"
        )
    if not labels_path.is_file():
        raise UserError(f"{labels_path} is missing: copy labels.npy of the release into {folder}")
    generated = (folder / MANIFEST).is_file()
    if verify and not generated:
        verify_cifar_c_file(path, dataset, md5s)
        verify_cifar_c_file(labels_path, dataset, md5s)
    images, labels = _open_npy(path), _open_npy(labels_path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3) or len(images) % 5:
        raise UserError(
            f"{path} has dtype {images.dtype} and shape {images.shape}, expected uint8 (5*N, 32, 32, 3); "
            "download it again"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{labels_path} has shape {labels.shape}, expected ({len(images)},) to match {path.name}")
    classes = CIFAR_CLASSES[dataset]
    block = len(images) // 5
    start = block * (severity - 1)
    if subset is None:
        pixels, block_labels = np.asarray(images[start:start + block]), np.asarray(labels[start:start + block])
    else:
        first_block = checked_labels(np.asarray(labels[:block]), len(classes), labels_path)
        rows = start + sample_indices(first_block, subset, len(classes), f"{dataset}-C")
        pixels, block_labels = np.asarray(images[rows]), np.asarray(labels[rows])
    block_labels = checked_labels(block_labels, len(classes), labels_path)
    source = "generated" if generated else "released"
    return ResidentImages.from_numpy(dataset, "test", pixels, block_labels, classes, source=source)


def imagenet_c_dir(root: str | os.PathLike) -> Path:
    """``root`` itself, or ``root/ImageNet-C`` (also ``imagenet-c``, ``imagenetc``) when that exists."""
    root = Path(root).expanduser()
    for name in IMAGENET_C_FOLDERS:
        if (root / name).is_dir():
            return root / name
    if not root.is_dir():
        raise UserError(f"ImageNet-C folder {root} not found: pass the folder holding <corruption>/<severity>/<wnid>/")
    return root


def load_imagenet_c(
    root: str | os.PathLike,
    corruption: str,
    severity: int,
    *,
    transform: str = "hendrycks",
    subset: int | None = None,
    classes: Sequence[str] | None = None,
    workers: int = 4,
) -> ImageFolderSource:
    """Severity ``severity`` of ``corruption`` from an ImageNet-C folder, as an image source.

    ``transform="hendrycks"``: CenterCrop(224) + normalisation (ImageNet-C's own test.py);
    ``"paper"``: Resize(256) + CenterCrop(224) (the Blurs-Behave-Like-Ensembles code). Class indices
    follow ``classes`` (default: the sorted WNID folders; a warning says when there are not 1000).
    ``subset`` keeps a class-balanced sample of N images (:func:`~smoothbench.data.subset.subset_positions`,
    the images ``get_dataset`` keeps of the clean validation folder when this folder holds all of them).
    ``source`` is ``generated`` for a folder written by :func:`~smoothbench.corruptions.writer.make_imagenet_c`
    (its manifest is present), else ``released``.
    """
    if transform not in IMAGENET_C_RESIZE:
        raise UserError(f"unknown ImageNet-C transform {transform!r}: use hendrycks or paper")
    if corruption not in CANONICAL_NAMES:
        raise UserError(f"unknown corruption {corruption!r}: choose one of {', '.join(CANONICAL_NAMES)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise UserError(f"severity must be an integer 1..5 (got {severity!r})")
    base = imagenet_c_dir(root)
    folder = base / corruption / str(severity)
    if not folder.is_dir():
        have = [n for n in CANONICAL_NAMES if (base / n).is_dir()]
        raise UserError(
            f"{folder} not found (corruptions present in {base}: {', '.join(have) or 'none'}); download or "
            "write that corruption (smoothbench data make-c --dataset imagenet)"
        )
    source = ImageFolderSource(
        "imagenet", "test", folder, classes=classes, workers=workers, resize=IMAGENET_C_RESIZE[transform]
    )
    if classes is None and source.num_classes != IMAGENET_CLASSES:
        warnings.warn(
            f"{folder} has {source.num_classes} class folders, not {IMAGENET_CLASSES}: class indices follow these "
            "folders only and may not match an ImageNet model",
            stacklevel=2,
        )
    source.source = "generated" if (base / MANIFEST).is_file() else "released"
    return select_subset(source, subset) if subset is not None else source
