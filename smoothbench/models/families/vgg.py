"""VGG-11/13/16/19 and pre-activation VGG (the paper's ``VGGNet`` with its two block kinds).

Layout (paper.md §1.3-1.4): ``layer0`` (no pool) and ``layer1..4`` (each opening with MaxPool(2, 2)) of
conv3x3 blocks with 64/128/256/512/512 channels, a smoothing slot ``smooth0..4`` after each, then
``classifier`` = MaxPool(2, 2) → AdaptiveAvgPool(7x7) → MLP head (4096-4096-K, Dropout(0.5)). On 32x32
inputs the last map is 1x1 and is replicated to 7x7 (a 25088-d input to the MLP).
``width`` scales every channel count and the MLP's hidden size by ``width/64``. The paper's VGG has no stem
option: both stems build the same network. MC dropout follows every block.
"""

from __future__ import annotations

from torch import Tensor, nn

from smoothbench.models.base import Classifier, GAPHead, classifier_head, scaled
from smoothbench.models.layers import conv, make_dropout, make_smoothing
from smoothbench.models.registry import register_model
from smoothbench.models.spec import ModelSpec

CONFIGS = {11: [1, 1, 2, 2, 2], 13: [2, 2, 2, 2, 2], 16: [2, 2, 3, 3, 3], 19: [2, 2, 4, 4, 4]}


class VGGBlock(nn.Module):
    """conv3x3-BN-ReLU-[MC dropout]."""

    def __init__(self, spec: ModelSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = conv(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.dropout = make_dropout(spec)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.relu(self.bn(self.conv(x))))


class PreActVGGBlock(nn.Module):
    """BN-ReLU-conv3x3-[MC dropout]."""

    def __init__(self, spec: ModelSpec, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU()
        self.conv = conv(in_channels, out_channels, 3, padding=1)
        self.dropout = make_dropout(spec)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.conv(self.relu(self.bn(x))))


class VGG(Classifier):
    """The paper's VGGNet: five stages with a smoothing slot after each, MaxPool + 7x7 pool + MLP head."""

    def __init__(self, spec: ModelSpec, block: type[VGGBlock] | type[PreActVGGBlock], num_blocks: list[int]) -> None:
        super().__init__(spec)
        widths = [scaled(c, spec, 64) for c in (64, 128, 256, 512, 512)]
        channels = 3
        stages = []
        for stage, (w, n) in enumerate(zip(widths, num_blocks)):
            layers: list[nn.Module] = [nn.MaxPool2d(kernel_size=2, stride=2)] if stage > 0 else []
            for _ in range(n):
                layers.append(block(spec, channels, w))
                channels = w
            stages.append(nn.Sequential(*layers))
        self.layer0, self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.smooth0, self.smooth1, self.smooth2, self.smooth3, self.smooth4 = (make_smoothing(spec) for _ in range(5))
        self.classifier = classifier_head(spec, channels, lambda: GAPHead(channels, spec.num_classes),
                                          pools=lambda: (nn.MaxPool2d(kernel_size=2, stride=2),))

    def forward(self, x: Tensor) -> Tensor:
        x = self.smooth0(self.layer0(x))
        x = self.smooth1(self.layer1(x))
        x = self.smooth2(self.layer2(x))
        x = self.smooth3(self.layer3(x))
        x = self.smooth4(self.layer4(x))
        return self.classifier(x)


def _register(name: str, family: str, block: type[VGGBlock] | type[PreActVGGBlock], depth: int) -> None:
    register_model(name, family=family, smoothing_layers=5, head="mlp")(lambda spec: VGG(spec, block, CONFIGS[depth]))


for _depth in CONFIGS:
    _register(f"vgg{_depth}", "vgg", VGGBlock, _depth)
    _register(f"preact_vgg{_depth}", "vgg", PreActVGGBlock, _depth)
