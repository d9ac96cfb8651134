"""ResidentImages: a CIFAR-sized set held as one uint8 tensor, batched and augmented on the device."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from smoothbench.data.augment import crop_flip, draw_crop_flip, epoch_generator, normalize
from smoothbench.data.fingerprint import array_fingerprint
from smoothbench.data.preprocess import Preprocess, resolve
from smoothbench.data.subset import first_indices, stratified_indices
from smoothbench.device import to_channels_last
from smoothbench.distributed import rank_batch_ranges
from smoothbench.errors import UserError, param


class ResidentImages:
    """A whole image set as ``images`` (uint8 [N,3,H,W]) and ``labels`` (int64 [N]) tensors.

    ``source`` says where the pixels come from (``clean``, ``released`` or ``generated``). Both tensors
    are moved to the batching device in one piece; cropping, flipping and normalising then run batched
    there, with no per-image Python work and no worker processes.
    """

    def __init__(
        self,
        name: str,
        split: str,
        images: torch.Tensor,
        labels: torch.Tensor,
        classes: Sequence[str],
        *,
        source: str = "clean",
        fingerprint: str | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N,3,H,W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be [N={images.shape[0]}], got {tuple(labels.shape)}")
        self.name, self.split, self.source = name, split, source
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64)
        self.classes = list(classes)
        self._fingerprint = fingerprint

    @classmethod
    def from_numpy(
        cls,
        name: str,
        split: str,
        images_nhwc_uint8: np.ndarray,
        labels: np.ndarray | Sequence[int],
        classes: Sequence[str],
        source: str = "clean",
    ) -> "ResidentImages":
        """Build from a uint8 (N,H,W,3) array (the layout of CIFAR-10-C/-P files) and N labels."""
        images = np.asarray(images_nhwc_uint8)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"images must be uint8 (N,H,W,3), got {images.dtype} {images.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return cls(name, split, tensor, torch.as_tensor(np.asarray(labels), dtype=torch.int64), classes, source=source)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return f"ResidentImages({self.name!r}, {self.split!r}, n={len(self)}, size={self.image_size}, {self.source})"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def fingerprint(self) -> str:
        """16 hex chars of SHA-256 over (name, split, labels, images); see :func:`array_fingerprint`."""
        if self._fingerprint is None:
            self._fingerprint = array_fingerprint(
                self.name, self.split, self.images.cpu().numpy(), self.labels.cpu().numpy()
            )
        return self._fingerprint

    def _like(self, images: torch.Tensor, labels: torch.Tensor, fingerprint: str | None) -> "ResidentImages":
        return ResidentImages(
            self.name, self.split, images, labels, self.classes, source=self.source, fingerprint=fingerprint
        )

    def to(self, device: torch.device | str) -> "ResidentImages":
        """The same set with both tensors on ``device`` (the fingerprint is kept)."""
        return self._like(self.images.to(device), self.labels.to(device), self._fingerprint)

    def select(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> "ResidentImages":
        """The rows at ``indices`` (in that order) as a new set."""
        if isinstance(indices, torch.Tensor):
            index = indices.to(self.images.device, torch.int64)
        else:
            index = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.images.device)
        return self._like(self.images[index], self.labels[index], None)

    def first(self, n: int) -> "ResidentImages":
        """The first ``n`` images, in order (throughput benchmarks; an evaluation subset is a class-balanced
        sample: :func:`smoothbench.data.subset.subset_positions`)."""
        return self.select(first_indices(len(self), n, f"{self.name} {self.split}"))

    def stratified(self, n: int, seed: int) -> "ResidentImages":
        """A class-balanced sample of ``n`` images in original order, drawn from ``seed`` (see
        :func:`stratified_indices`)."""
        idx = stratified_indices(self.labels.cpu().numpy(), n, self.num_classes, seed, f"{self.name} {self.split}")
        return self.select(idx)

    def numpy_nhwc(self) -> np.ndarray:
        """The images as a uint8 (N,H,W,3) numpy array (the corruption engine's layout)."""
        return self.images.permute(0, 2, 3, 1).contiguous().cpu().numpy()

    def effective(self, preprocess: Preprocess | None) -> Preprocess:
        """The recipe :meth:`eval_batches` applies: ``preprocess`` (``None``: this dataset's), cropped at the
        images' own size when it names no crop."""
        recipe = resolve(preprocess, self.name)
        return recipe if recipe.crop is not None or recipe.resize is not None else recipe.with_(crop=self.image_size)

    def eval_batches(
        self,
        batch_size: int,
        preprocess: Preprocess | None = None,
        *,
        device: torch.device | str,
        channels_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """In-order ``(x float32 normalised [B,3,H,W], y int64 [B], idx int64 [B])`` on ``device``.

        ``preprocess`` (``None``: this dataset's own recipe) is applied batched on the device: resize and
        crop only where the images are not already the target size, then normalisation.
        """
        recipe = self.effective(preprocess)
        images, labels = self.images.to(device), self.labels.to(device)
        stats = recipe.stats(images.device)
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            x = to_channels_last(normalize(recipe.resize_and_crop(images[start:stop]), *stats), channels_last)
            yield x, labels[start:stop], torch.arange(start, stop, device=images.device)

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
        """Shuffled ``(x, y)`` batches for one epoch; the last short batch is kept.

        The permutation, then the crop offsets and flips (RandomCrop(pad 4, zeros) + HFlip when
        ``augment``), are drawn per position of the epoch order from :func:`epoch_generator(seed,
        epoch) <epoch_generator>`, so they do not depend on device or batch size.

        Distributed training: ``batch_size`` is the global batch; process ``rank`` of ``world`` gets its
        contiguous slice (:func:`~smoothbench.distributed.rank_batch_ranges`) of every global batch, with the
        same per-image draws, so the union over ranks of step ``i`` is the one-process batch ``i``. A last
        partial batch of fewer than ``world`` images is left out (:func:`~smoothbench.distributed.epoch_images`).
        Training runs at the images' own size: ``preprocess`` gives the normalisation only.
        """
        recipe = self.effective(preprocess)
        if recipe.resize is not None or recipe.crop != self.image_size:
            raise UserError(f"training on {self.name} runs at its own {self.image_size} px; a recipe with "
                            f"{param('resize')} or another {param('crop')} is for evaluation only")
        generator = epoch_generator(seed, epoch)
        order = torch.randperm(len(self), generator=generator)
        draws = draw_crop_flip(len(self), generator) if augment else None
        images, labels = self.images.to(device), self.labels.to(device)
        # Everything the batches index moves to the device once per epoch: a host-to-device copy per batch
        # would synchronise a GPU at every step.
        order = order.to(images.device)
        draws = None if draws is None else tuple(d.to(images.device) for d in draws)
        stats = recipe.stats(images.device)
        for positions in rank_batch_ranges(len(self), batch_size, rank, world):
            mine = slice(positions.start, positions.stop)
            rows = order[mine]
            x = images[rows]
            if draws is not None:
                x = crop_flip(x, *(d[mine] for d in draws))
            yield to_channels_last(normalize(x, *stats), channels_last), labels[rows]
