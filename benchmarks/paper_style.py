"""What the benchmarks' paper-style baselines share: a torchvision-style dataset of PIL images."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


class PILImages(Dataset):
    """A torchvision-style dataset: ``(transform(PIL image), label)`` per index, like ``datasets.CIFAR10``."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images_nhwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])
