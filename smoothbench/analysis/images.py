"""The images an analysis sees, fixed once so that every grid point and mini-batch sees the same pixels.

The authors evaluate loss landscapes (and argue Hessians should be measured) on the *augmented* training set
(how-do-vits-work README, "Investigate Loss Landscapes and Hessians With L2 Regularization on Augmented
Datasets"); their loader draws new crops and flips for every grid point, so neighbouring points differ by
augmentation noise as well as by the weights. Here the augmented images are drawn once, from ``seed``, exactly
as epoch 0 of ``smoothbench train --seed SEED`` would draw them (the source's ``train_batches``), and kept:
the landscape becomes a deterministic function of the weights. Without augmentation the source itself is
used, so its batches are exactly ``smoothbench eval``'s.
"""

from __future__ import annotations

import hashlib
from typing import Iterator, Sequence

import numpy as np
import torch

from smoothbench.data.preprocess import Preprocess
from smoothbench.device import to_channels_last

#: Images per draw when materialising augmented images (memory only; the draws do not depend on it).
_DRAW_BATCH = 256


class AugmentedImages:
    """Augmented training images, drawn once: normalised float32 ``[N, 3, H, W]`` on the CPU, their labels and
    their positions ``0..N-1`` in the drawn (shuffled) order, which key MC-dropout masks.

    It offers what :func:`smoothbench.evaluation.ensembles.predict` and the provenance columns use of an
    :class:`~smoothbench.data.source.ImageSource` (``eval_batches`` yields the stored tensors, whatever recipe
    it is given: the recipe was applied when drawing).
    """

    def __init__(self, base, images: torch.Tensor, labels: torch.Tensor, seed: int) -> None:
        self.base, self.images, self.labels, self.seed = base, images, labels, seed
        self.name, self.split, self.source, self.classes = base.name, base.split, "clean", base.classes

    @classmethod
    def draw(cls, base, preprocess: Preprocess | None, *, seed: int, device: torch.device,
             limit: int | None = None) -> "AugmentedImages":
        """Epoch 0 of ``base.train_batches`` with augmentation, from ``seed``: its first ``limit`` images (a
        random sample, the epoch being shuffled), or all."""
        xs, ys, drawn = [], [], 0
        for x, y in base.train_batches(_DRAW_BATCH, preprocess, device=device, seed=seed, epoch=0, augment=True):
            xs.append(x.cpu())
            ys.append(y.cpu())
            drawn += len(y)
            if limit is not None and drawn >= limit:
                break
        return cls(base, torch.cat(xs)[:limit], torch.cat(ys)[:limit], seed)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def fingerprint(self) -> str:
        """The base set's fingerprint and the augmentation seed, hashed to 16 hex chars."""
        text = f"{self.base.fingerprint}:augmented:{self.seed}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def effective(self, preprocess: Preprocess | None) -> Preprocess:
        return self.base.effective(preprocess)

    def select(self, indices: Sequence[int] | np.ndarray) -> "AugmentedImages":
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return AugmentedImages(self.base, self.images[index], self.labels[index], self.seed)

    def eval_batches(self, batch_size: int, preprocess: Preprocess | None = None, *, device: torch.device | str,
                     channels_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The stored images in order, ``(x, y, idx)`` on ``device``."""
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            x = to_channels_last(self.images[start:stop].to(device), channels_last)
            yield x, self.labels[start:stop].to(device), torch.arange(start, stop, device=device)


def analysis_images(source, preprocess: Preprocess | None, *, augment: bool, seed: int, device: torch.device,
                    limit: int | None = None):
    """``source`` itself, or (``augment``, training split) its augmented images drawn once from ``seed``; at
    most ``limit`` images (the first ones)."""
    if augment and source.split == "train":
        return AugmentedImages.draw(source, preprocess, seed=seed, device=device, limit=limit)
    return source.first(limit) if limit is not None and limit < len(source) else source
