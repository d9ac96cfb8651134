"""ImageFolderSource: ImageNet-style ``<root>/<wnid>/*.JPEG`` folders read by DataLoader workers."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import v2

from smoothbench.data.augment import epoch_generator, normalize
from smoothbench.data.fingerprint import files_fingerprint
from smoothbench.data.preprocess import INTERPOLATIONS, Preprocess, resolve
from smoothbench.data.subset import first_indices, stratified_indices
from smoothbench.device import to_channels_last
from smoothbench.distributed import rank_batch_ranges
from smoothbench.errors import UserError


class _Files(Dataset):
    """Decoded, transformed uint8 images of ``samples[order[k]]``; with ``seeds`` each image's transform
    runs under its own seed, so the result does not depend on the worker that decodes it."""

    def __init__(self, samples: list, order: np.ndarray, transform: v2.Transform, seeds: np.ndarray | None) -> None:
        self.samples, self.order, self.transform, self.seeds = samples, order, transform, seeds

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, int]:
        path, label = self.samples[self.order[k]]
        with Image.open(path) as image:
            image = image.convert("RGB")
        if self.seeds is None:
            return self.transform(image), label, int(self.order[k])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seeds[k]))
            return self.transform(image), label, int(self.order[k])


#: ``resize`` of an :class:`ImageFolderSource` that takes the evaluation resize from the model's recipe.
MODEL_RESIZE = "model"


class ImageFolderSource:
    """Images in ``<root>/<class folder>/<file>``; class indices follow ``classes`` (default: sorted folder names).

    Evaluation: the recipe's resize of the shorter side (PIL, with its interpolation) and centre crop
    (its ``crop``, default ``image_size``). ``resize`` fixes the resize for this folder whatever the model
    asks: ``None`` never resizes (ImageNet-C, whose images are already 224 px, Hendrycks' protocol), a number
    always uses it; :data:`MODEL_RESIZE` (the default) takes the recipe's. Training: RandomResizedCrop(crop) +
    HFlip. Workers decode to uint8; normalisation runs batched on the device. ``samples`` (``(path, label)``
    pairs) replaces the class-folder scan.
    """

    source = "clean"

    def __init__(
        self,
        name: str,
        split: str,
        root: str | os.PathLike,
        *,
        classes: Sequence[str] | None = None,
        workers: int = 4,
        image_size: int = 224,
        resize: int | str | None = MODEL_RESIZE,
        samples: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        self.name, self.split, self.root = name, split, Path(root)
        if not self.root.is_dir():
            raise UserError(f"image folder {self.root} not found; see data/README.md for the expected layout")
        if samples is not None:  # files listed by the caller (e.g. an unlabelled folder): ``classes`` names the labels
            self.classes, self.samples = list(classes or ()), list(samples)
        else:
            self.classes = list(classes) if classes is not None else find_classes(self.root)[0]
            class_to_idx = {c: i for i, c in enumerate(self.classes)}
            self.samples = make_dataset(self.root, class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
        if not self.samples:
            raise UserError(f"no images found under {self.root}/<class>/; see data/README.md for the expected layout")
        self.workers, self.image_size, self.resize = workers, image_size, resize
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.name!r}, {self.split!r}, {str(self.root)!r}, n={len(self)})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> torch.Tensor:
        """Class index of every image, int64 [N]."""
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    @property
    def fingerprint(self) -> str:
        """16 hex chars of SHA-256 over the sorted relative file list and sizes; see :func:`files_fingerprint`."""
        if self._fingerprint is None:
            self._fingerprint = files_fingerprint(self.name, self.split, self.root, [p for p, _ in self.samples])
        return self._fingerprint

    def select(self, indices: Sequence[int] | np.ndarray) -> "ImageFolderSource":
        """The images at ``indices`` (in that order) as a new source."""
        subset = copy.copy(self)
        subset.samples = [self.samples[i] for i in np.asarray(indices, dtype=np.int64)]
        subset._fingerprint = None
        return subset

    def first(self, n: int) -> "ImageFolderSource":
        """The first ``n`` images, in order (throughput benchmarks; an evaluation subset is a class-balanced
        sample: :func:`smoothbench.data.subset.subset_positions`)."""
        return self.select(first_indices(len(self), n, f"{self.name} {self.split}"))

    def stratified(self, n: int, seed: int) -> "ImageFolderSource":
        """A class-balanced sample of ``n`` images in original order, drawn from ``seed`` (see
        :func:`stratified_indices`)."""
        return self.select(stratified_indices(self.labels.numpy(), n, self.num_classes, seed, f"{self.name} {self.split}"))

    def effective(self, preprocess: Preprocess | None) -> Preprocess:
        """The recipe :meth:`eval_batches` applies: ``preprocess`` (``None``: this dataset's), with this
        folder's fixed resize if it has one, cropped at ``image_size`` when the recipe names no crop."""
        recipe = resolve(preprocess, self.name)
        if self.resize != MODEL_RESIZE:
            recipe = recipe.with_(resize=self.resize)
        return recipe if recipe.crop is not None else recipe.with_(crop=self.image_size)

    def _eval_steps(self, recipe: Preprocess) -> list[v2.Transform]:
        mode = INTERPOLATIONS[recipe.interpolation]
        resize = [v2.Resize(recipe.resize, interpolation=mode, antialias=True)] if recipe.resize else []
        return [*resize, v2.CenterCrop(recipe.crop)]

    def _loader(self, dataset: Dataset, batches: Sequence[Sequence[int]], device: torch.device) -> DataLoader:
        """Workers decode the dataset positions of each entry of ``batches`` into one batch, in that order."""
        return DataLoader(dataset, batch_sampler=batches, num_workers=self.workers, pin_memory=device.type == "cuda")

    def eval_batches(
        self,
        batch_size: int,
        preprocess: Preprocess | None = None,
        *,
        device: torch.device | str,
        channels_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """In-order ``(x float32 normalised [B,3,S,S], y int64 [B], idx int64 [B])`` on ``device``, with the
        recipe of :meth:`effective`."""
        device = torch.device(device)
        recipe = self.effective(preprocess)
        stats = recipe.stats(device)
        transform = v2.Compose([*self._eval_steps(recipe), v2.PILToTensor()])
        dataset = _Files(self.samples, np.arange(len(self)), transform, None)
        batches = [range(start, min(start + batch_size, len(self))) for start in range(0, len(self), batch_size)]
        for x, y, idx in self._loader(dataset, batches, device):
            x = normalize(x.to(device, non_blocking=True), *stats)
            yield to_channels_last(x, channels_last), y.to(device), idx.to(device)

    def train_batches(
        self,
        batch_size: int,
        preprocess: Preprocess | None = None,
        *,
        device: torch.device | str,
        seed: int,
        epoch: int,
        augment: bool = True,
        channels_last: bool = False,
        rank: int = 0,
        world: int = 1,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled ``(x, y)`` batches for one epoch (last short batch kept), reproducible per (seed, epoch).

        The permutation and one seed per position of the epoch order come from :func:`epoch_generator`;
        each image's RandomResizedCrop + HFlip runs under its position's seed, so its pixels depend on
        neither the worker nor the batch that decodes it. ``augment=False`` uses the evaluation transform.

        Distributed training: ``batch_size`` is the global batch; process ``rank`` of ``world`` decodes only
        its contiguous slice (:func:`~smoothbench.distributed.rank_batch_ranges`) of every global batch, so the
        union over ranks of step ``i`` is the one-process batch ``i``, pixel for pixel. A last partial batch
        of fewer than ``world`` images is left out (:func:`~smoothbench.distributed.epoch_images`).
        """
        device = torch.device(device)
        recipe = self.effective(preprocess)
        stats = recipe.stats(device)
        generator = epoch_generator(seed, epoch)
        order = torch.randperm(len(self), generator=generator).numpy()
        seeds = torch.randint(0, 2**62, (len(self),), generator=generator).numpy()
        if augment:
            steps = [v2.RandomResizedCrop(recipe.crop, antialias=True), v2.RandomHorizontalFlip()]
        else:
            steps = self._eval_steps(recipe)
        dataset = _Files(self.samples, order, v2.Compose([*steps, v2.PILToTensor()]), seeds)
        for x, y, _idx in self._loader(dataset, rank_batch_ranges(len(self), batch_size, rank, world), device):
            x = normalize(x.to(device, non_blocking=True), *stats)
            yield to_channels_last(x, channels_last), y.to(device)
