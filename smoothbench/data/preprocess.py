"""``Preprocess``: a model's input recipe (resize, centre crop, interpolation, normalisation), applied batched.

The recipe belongs to the model (torchvision weights and timm models state theirs; smoothbench models record
the dataset's); image sources apply it, and every result row records the recipe actually applied (the
``preprocess`` column), so rows made with other inputs are never compared as one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from smoothbench.data.augment import channel_stats
from smoothbench.data.info import NORMALIZATION
from smoothbench.errors import UserError, param

#: Resampling filters a recipe may name, as torchvision spells them.
INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}
#: The evaluation resize of each dataset's own recipe (ImageNet: shorter side 256, then the 224 crop).
DATASET_RESIZE = {"imagenet": 256}


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize`` (``None``: keep the size), centre-crop ``crop`` × ``crop``
    (``None``: keep the image), resample with ``interpolation``, then ``(x / 255 − mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: int | None = None
    crop: int | None = None
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise UserError(f"{param('mean')} and {param('std')} need three values each (R, G, B), got "
                            f"{list(self.mean)} and {list(self.std)}")
        if any(s <= 0 for s in self.std):
            raise UserError(f"{param('std')} values must be positive, got {list(self.std)}")
        for name in ("resize", "crop"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"{param(name)} must be at least 1, got {value}")
        if self.interpolation not in INTERPOLATIONS:
            raise UserError(f"{param('interpolation')} must be one of {', '.join(INTERPOLATIONS)}, "
                            f"got {self.interpolation!r}")

    def describe(self) -> str:
        """The compact text of the ``preprocess`` column, e.g. ``resize=256 crop=224 bilinear mean=... std=...``."""
        parts = [f"resize={self.resize}" if self.resize else "", f"crop={self.crop}" if self.crop else "",
                 self.interpolation if self.resize or self.crop else "",
                 "mean=" + ",".join(f"{v:g}" for v in self.mean), "std=" + ",".join(f"{v:g}" for v in self.std)]
        return " ".join(p for p in parts if p)

    def with_(self, **changes) -> "Preprocess":
        return replace(self, **changes)

    def stats(self, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``mean``/``std`` as device tensors for :func:`~smoothbench.data.augment.normalize` (once per pass)."""
        return channel_stats(self.mean, self.std, device)

    def resize_and_crop(self, images: torch.Tensor) -> torch.Tensor:
        """The geometric part on a batch ``[B, 3, H, W]`` (uint8 or float, on any device): resize (antialiased),
        then centre crop; the identity when the batch is already the target size."""
        if self.resize is not None and min(images.shape[-2:]) != self.resize:
            images = TF.resize(images.float(), [self.resize], interpolation=INTERPOLATIONS[self.interpolation],
                               antialias=True).round_().clamp_(0, 255)
        if self.crop is not None and tuple(images.shape[-2:]) != (self.crop, self.crop):
            if min(images.shape[-2:]) < self.crop:
                raise UserError(f"{param('crop')} {self.crop} is larger than the {images.shape[-2]}x"
                                f"{images.shape[-1]} images; give a {param('resize')} of at least {self.crop}")
            images = TF.center_crop(images, [self.crop, self.crop])
        return images


def dataset_preprocess(name: str, image_size: int | None = None) -> Preprocess:
    """The dataset's own recipe: its normalisation, its evaluation resize (ImageNet 256), the crop of its
    ``image_size`` when given."""
    if name not in NORMALIZATION:
        raise UserError(f"no normalisation known for {name!r}: give {param('mean')} and {param('std')}")
    mean, std = NORMALIZATION[name]
    return Preprocess(tuple(mean), tuple(std), resize=DATASET_RESIZE.get(name), crop=image_size)


def resolve(preprocess: Preprocess | None, dataset: str, mean: Sequence[float] | None = None,
            std: Sequence[float] | None = None) -> Preprocess:
    """``preprocess``, or the recipe of ``dataset`` when ``None`` (``mean``/``std`` override its statistics)."""
    if preprocess is not None:
        return preprocess
    recipe = dataset_preprocess(dataset)
    if mean is not None and std is not None:
        recipe = recipe.with_(mean=tuple(mean), std=tuple(std))
    return recipe
