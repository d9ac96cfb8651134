"""AlexNet as in the paper's code: conv-ReLU blocks (no BN), three smoothing slots, MLP head.

Layout (paper.md §1.3-1.4; ``models/alexnet.py``):
- ``layer0``: conv 3→64, ``cifar`` 3x3/2 pad 1, ``imagenet`` 11x11/4 pad 2; then ``smooth0``.
- ``layer1``: MaxPool(k, 2) → conv 64→192 5x5 pad 2; then ``smooth1``.
- ``layer2``: MaxPool(k, 2) → conv 192→384, 384→256, 256→256 (3x3 pad 1); then ``smooth2``.
- ``classifier``: MaxPool(k, 2) → AdaptiveAvgPool(s x s) → MLP head (4096-4096-K, Dropout(0.5)),
  with k = 2, s = 2 for ``cifar`` and k = 3, s = 6 for ``imagenet``.
``width`` scales every channel count and the MLP's hidden size by ``width/64``. MC dropout (default rate
0.1, as in the paper's ``alexnet_mcdo_block``) follows every conv-ReLU.
"""

from __future__ import annotations

from torch import Tensor, nn

from smoothbench.models.base import Classifier, GAPHead, classifier_head, scaled
from smoothbench.models.layers import conv, make_dropout, make_smoothing
from smoothbench.models.registry import register_model
from smoothbench.models.spec import ModelSpec


class AlexNetBlock(nn.Module):
    """conv-ReLU-[MC dropout] (bias-free conv, no BN)."""

    def __init__(self, spec: ModelSpec, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.conv = conv(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.relu = nn.ReLU()
        self.dropout = make_dropout(spec)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.relu(self.conv(x)))


class AlexNet(Classifier):
    """The paper's AlexNet (CIFAR or ImageNet variant, picked by ``spec.stem``)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        c1, c2, c3, c4, c5 = (scaled(c, spec, 64) for c in (64, 192, 384, 256, 256))
        imagenet = spec.stem == "imagenet"
        pool = 3 if imagenet else 2
        if imagenet:
            self.layer0 = nn.Sequential(AlexNetBlock(spec, 3, c1, 11, stride=4, padding=2))
        else:
            self.layer0 = nn.Sequential(AlexNetBlock(spec, 3, c1, 3, stride=2, padding=1))
        self.layer1 = nn.Sequential(nn.MaxPool2d(kernel_size=pool, stride=2), AlexNetBlock(spec, c1, c2, 5, padding=2))
        self.layer2 = nn.Sequential(
            nn.MaxPool2d(kernel_size=pool, stride=2),
            AlexNetBlock(spec, c2, c3, 3, padding=1),
            AlexNetBlock(spec, c3, c4, 3, padding=1),
            AlexNetBlock(spec, c4, c5, 3, padding=1),
        )
        self.smooth0, self.smooth1, self.smooth2 = (make_smoothing(spec) for _ in range(3))
        out = 6 if imagenet else 2
        self.classifier = classifier_head(spec, c5, lambda: GAPHead(c5, spec.num_classes),
                                          pools=lambda: (nn.MaxPool2d(kernel_size=pool, stride=2),), size=out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.smooth0(self.layer0(x))
        x = self.smooth1(self.layer1(x))
        x = self.smooth2(self.layer2(x))
        return self.classifier(x)


@register_model("alexnet", family="alexnet", smoothing_layers=3, default_dropout=0.1, head="mlp")
def alexnet(spec: ModelSpec) -> AlexNet:
    """AlexNet (CIFAR: 23,467,722 parameters for 10 classes)."""
    return AlexNet(spec)
