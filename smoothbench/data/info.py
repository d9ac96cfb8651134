"""Static facts about the supported datasets: normalisation and shape/recipe information."""

from __future__ import annotations

from dataclasses import dataclass

# Per-channel (mean, std) of the [0, 1] pixels, as in the paper's code (``ops/datasets.py``). The CIFAR-10
# std is the widely copied (0.2023, ...) rather than the true ≈(0.247, 0.243, 0.261); kept for fidelity.
# The synthetic values are the measured statistics of its default training set (seed 0), rounded.
NORMALIZATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "synthetic": ((0.5001, 0.5014, 0.4972), (0.2573, 0.2665, 0.2563)),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model or recipe needs to know about a dataset before loading it.

    ``stem`` is the model stem (``"cifar"``: 3x3 conv, no max-pool; ``"imagenet"``: 7x7/2 + max-pool) and
    ``recipe`` the key of the default training recipe.
    """

    name: str
    num_classes: int
    image_size: int
    stem: str
    recipe: str


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, 32, "cifar", "cifar"),
    "cifar100": DatasetInfo("cifar100", 100, 32, "cifar", "cifar"),
    "imagenet": DatasetInfo("imagenet", 1000, 224, "imagenet", "imagenet"),
    "synthetic": DatasetInfo("synthetic", 10, 32, "cifar", "synthetic"),
}

SPLITS = ("train", "test")
