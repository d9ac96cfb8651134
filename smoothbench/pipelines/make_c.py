"""``make_corrupted_set``: write CIFAR-10-C / CIFAR-100-C (released layout) or ImageNet-C with our engine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from smoothbench.data import get_dataset
from smoothbench.device import resolve_device
from smoothbench.errors import UserError, param
from smoothbench.fileio import check_writable_folder
from smoothbench.evaluation.corruption_cells import corruption_names
from smoothbench.progress import Progress
from smoothbench.schema import SEVERITIES

PathLike = str | os.PathLike
#: Datasets whose corrupted sets can be written, and how.
MAKE_C_DATASETS = ("cifar10", "cifar100", "imagenet")


@dataclass
class MakeCRequest:
    """What ``smoothbench data make-c`` does: corrupt the clean test set of ``dataset`` (from ``data_dir``;
    ImageNet: the folder with ``val/``) with ``corruptions`` at severities 1..5 into ``out``. CIFAR sets get
    the released layout (``<corruption>.npy`` + ``labels.npy``), ImageNet JPEG folders; finished corruptions
    are skipped on a rerun. ``seed`` keys the random draws per corruption, severity and image; ``subset``
    corrupts only the class-balanced sample of N test images that ``eval --subset N`` evaluates (sweep the
    set with the same ``subset``: its images are then the clean subset's, image for image)."""

    dataset: str
    data_dir: PathLike
    out: PathLike
    corruptions: Sequence[str] | str = "all"
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 500
    frost_dir: PathLike | None = None
    subset: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in MAKE_C_DATASETS:
            raise UserError(f"{param('dataset')} must be cifar10, cifar100 or imagenet, got {self.dataset!r}")
        self.corruptions = corruption_names(self.corruptions)


def make_corrupted_set(request: MakeCRequest, *, progress: Progress | None = None) -> Path:
    """Write the corrupted set; returns the output folder."""
    from smoothbench.corruptions.writer import make_cifar_c, make_imagenet_c

    check_writable_folder(request.out)
    frost = None if request.frost_dir is None else str(request.frost_dir)
    device = resolve_device(request.device)
    if request.dataset == "imagenet":
        if progress is not None:
            progress.start(0, "ImageNet-C")
        make_imagenet_c(str(request.data_dir), str(request.out), corruptions=request.corruptions, seed=request.seed,
                        device=device, frost_dir=frost, progress=progress, subset=request.subset)
    else:
        source = get_dataset(request.dataset, str(request.data_dir), "test", subset=request.subset)
        if progress is not None:
            progress.start(len(request.corruptions) * len(SEVERITIES) * len(source), f"{request.dataset}-C")
        make_cifar_c(source.numpy_nhwc(), source.labels.numpy(), str(request.out), corruptions=request.corruptions,
                     params="cifar", seed=request.seed, batch_size=request.batch_size, device=device,
                     frost_dir=frost, progress=progress)
    return Path(request.out)
