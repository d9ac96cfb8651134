"""What the benchmarks' paper-style baselines share: a torchvision-style dataset of PIL images, and the
paper code's blur layer."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from smoothbench.models.layers import PaddedBox2, Smoothing


class PILImages(Dataset):
    """A torchvision-style dataset: ``(transform(PIL image), label)`` per index, like ``datasets.CIFAR10``."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images_nhwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def with_paper_blur(model: nn.Module) -> nn.Module:
    """``model`` (changed in place) with every ``box2-pad1`` blur as the paper code's ``nn.AvgPool2d(2, 1, 1)``.

    smoothbench computes that blur another way on the CPU (:class:`PaddedBox2`, same values, faster), so a
    paper-style baseline puts the paper's layer back: its speed is the paper code's, not ours.
    """
    for module in model.modules():
        if isinstance(module, Smoothing) and isinstance(module.blur, PaddedBox2):
            module.blur = nn.AvgPool2d(2, stride=1, padding=1)
    return model
