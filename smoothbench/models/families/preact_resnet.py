"""Pre-activation ResNet-18/34/50/101/152 (the paper's ``PreResNet``).

Layout (paper.md §1.3-1.4): ``layer0`` stem (``cifar``: conv3x3; ``imagenet``: conv7x7/2 + MaxPool(3, 2, 1),
no BN/ReLU: the blocks pre-activate) → ``layer1..4`` with smoothing after ``layer1..3`` only → head
``classifier.0`` = BN → ReLU → GAP → Linear. MC dropout sits before the last conv of each block.

Quirk kept on purpose so every checkpoint of the paper's code loads: the MC-dropout Bottleneck has a BN in
its projection shortcut, the deterministic Bottleneck and both BasicBlocks do not.
"""

from __future__ import annotations

from torch import Tensor, nn

from smoothbench.models.base import BNGAPHead, Classifier, classifier_head, scaled
from smoothbench.models.layers import conv, make_dropout, make_smoothing
from smoothbench.models.registry import register_model
from smoothbench.models.spec import ModelSpec
from smoothbench.models.stages import make_stages


def _preact_shortcut(in_channels: int, out_channels: int, stride: int, with_bn: bool) -> nn.Sequential:
    """conv1x1 (+ BN if ``with_bn``) when shape changes, else an empty Sequential (identity)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()
    layers = [conv(in_channels, out_channels, 1, stride=stride)]
    if with_bn:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


class PreActBlock(nn.Module):
    """Base of the pre-activation blocks: ``bn1``-``relu1`` first, shared by shortcut when it projects.

    With a projection shortcut, the shortcut reads the pre-activated input; with an identity shortcut it
    reads the raw input (as in the paper's code).
    """

    shortcut: nn.Sequential
    bn1: nn.BatchNorm2d
    relu1: nn.ReLU

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if len(self.shortcut) > 0:
            x = self.relu1(self.bn1(x))
            skip = self.shortcut(x)
        else:
            skip = x
            x = self.relu1(self.bn1(x))
        return skip + self.residual(x)


class PreActBasicBlock(PreActBlock):
    """BN-ReLU-conv3x3-BN-ReLU-[MC dropout]-conv3x3, plus shortcut (also the Wide-ResNet block)."""

    expansion = 1

    def __init__(self, spec: ModelSpec, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        self.shortcut = _preact_shortcut(in_channels, planes, stride, with_bn=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv(in_channels, planes, 3, stride=stride, padding=1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.dropout = make_dropout(spec)
        self.conv2 = conv(planes, planes, 3, padding=1)

    def residual(self, x: Tensor) -> Tensor:
        x = self.dropout(self.relu2(self.bn2(self.conv1(x))))
        return self.conv2(x)


class PreActBottleneck(PreActBlock):
    """BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-[MC dropout]-conv1x1, plus shortcut (BN in it for mcdo)."""

    expansion = 4

    def __init__(self, spec: ModelSpec, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.shortcut = _preact_shortcut(in_channels, out_channels, stride, with_bn=spec.method == "mcdo")
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv(in_channels, planes, 1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv2 = conv(planes, planes, 3, stride=stride, padding=1)
        self.bn3 = nn.BatchNorm2d(planes)
        self.relu3 = nn.ReLU()
        self.dropout = make_dropout(spec)
        self.conv3 = conv(planes, out_channels, 1)

    def residual(self, x: Tensor) -> Tensor:
        x = self.relu2(self.bn2(self.conv1(x)))
        x = self.dropout(self.relu3(self.bn3(self.conv2(x))))
        return self.conv3(x)


class PreActResNet(Classifier):
    """The paper's PreResNet: stem, four stages, smoothing after the first three, BN-ReLU-GAP-Linear head."""

    def __init__(self, spec: ModelSpec, block: type[PreActBlock], num_blocks: list[int]) -> None:
        super().__init__(spec)
        planes = [scaled(c, spec, 64) for c in (64, 128, 256, 512)]
        if spec.stem == "imagenet":
            self.layer0 = nn.Sequential(conv(3, planes[0], 7, stride=2, padding=3),
                                        nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        else:
            self.layer0 = nn.Sequential(conv(3, planes[0], 3, padding=1))
        stages, channels = make_stages(lambda c, p, stride: block(spec, c, p, stride), block.expansion, planes[0],
                                       planes, num_blocks)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.smooth1, self.smooth2, self.smooth3 = (make_smoothing(spec) for _ in range(3))
        self.smooth4 = nn.Sequential()  # no smoothing before the BN-ReLU-GAP head (paper: [1, 1, 1, 0])
        self.classifier = classifier_head(spec, channels, lambda: BNGAPHead(channels, spec.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer0(x)
        x = self.smooth1(self.layer1(x))
        x = self.smooth2(self.layer2(x))
        x = self.smooth3(self.layer3(x))
        x = self.smooth4(self.layer4(x))
        return self.classifier(x)


def _register(name: str, block: type[PreActBlock], num_blocks: list[int]) -> None:
    register_model(name, family="preact_resnet", smoothing_layers=3)(
        lambda spec: PreActResNet(spec, block, num_blocks))


_register("preact_resnet18", PreActBasicBlock, [2, 2, 2, 2])
_register("preact_resnet34", PreActBasicBlock, [3, 4, 6, 3])
_register("preact_resnet50", PreActBottleneck, [3, 4, 6, 3])
_register("preact_resnet101", PreActBottleneck, [3, 4, 23, 3])
_register("preact_resnet152", PreActBottleneck, [3, 8, 36, 3])
