"""``ImageSource``: the interface every dataset offers to training and evaluation loops.

Two implementations: :class:`~smoothbench.data.resident.ResidentImages` (a CIFAR-sized set as one uint8
tensor, batched and augmented on the device) and :class:`~smoothbench.data.imagenet.ImageFolderSource`
(image files decoded by DataLoader workers). Loops depend on this protocol only.
"""

from __future__ import annotations

from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

#: ``(x float32 normalised [B,3,H,W], y int64 [B], idx int64 [B])``: ``idx`` is the position in the source.
EvalBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: ``(x, y)`` of one training step.
TrainBatch = tuple[torch.Tensor, torch.Tensor]


@runtime_checkable
class ImageSource(Protocol):
    """A labelled image set: ``name``, ``split``, ``source`` (``clean``, ``released`` or ``generated``),
    ``classes``, ``num_classes``, a short hex ``fingerprint`` of its content, ``labels`` and its length."""

    name: str
    split: str
    source: str
    classes: list[str]

    @property
    def num_classes(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def labels(self) -> torch.Tensor: ...

    def __len__(self) -> int: ...

    def select(self, indices: Sequence[int] | np.ndarray) -> "ImageSource":
        """The images at ``indices`` (in that order) as a new source (sharding, subsets)."""

    def first(self, n: int) -> "ImageSource":
        """The first ``n`` images (throughput benchmarks)."""

    def stratified(self, n: int, seed: int) -> "ImageSource":
        """A class-balanced random sample of ``n`` images in original order, drawn from ``seed`` (subsets:
        :mod:`smoothbench.data.subset`)."""

    def eval_batches(self, batch_size: int, mean: Sequence[float] | None, std: Sequence[float] | None, *,
                     device: torch.device | str, channels_last: bool = False) -> Iterator[EvalBatch]:
        """Every image once, in order, normalised with ``mean``/``std`` (``None``: the dataset's own)."""

    def train_batches(self, batch_size: int, mean: Sequence[float] | None, std: Sequence[float] | None, *,
                      device: torch.device | str, seed: int, epoch: int, augment: bool = True,
                      channels_last: bool = False, rank: int = 0, world: int = 1) -> Iterator[TrainBatch]:
        """One epoch of shuffled, augmented batches, a pure function of ``(seed, epoch)``; ``batch_size`` is
        the global batch and process ``rank`` of ``world`` gets its contiguous slice of each."""
