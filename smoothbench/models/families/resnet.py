"""ResNet-18/34/50/101/152, ResNeXt and wide ResNet: the ``ResNet`` class of the paper's code.

Layout (paper.md §1.3-1.4): ``layer0`` stem → ``layer1..4`` (strides 1, 2, 2, 2), each followed by a
smoothing slot ``smooth1..4`` → ``classifier.0`` = GAP → Linear. The stem's channels and the stage planes
(64, 64/128/256/512) scale by ``width/64``. Stems: ``cifar`` = conv3x3 + BN + ReLU; ``imagenet`` = conv7x7/2 + BN + ReLU + MaxPool(3, 2, 1).
MC dropout (``mcdo``) sits before the last conv of each block. Module names equal the paper's, so its
checkpoints load key for key.
"""

from __future__ import annotations

from torch import Tensor, nn

from smoothbench.errors import UserError
from smoothbench.models.base import Classifier, GAPHead, classifier_head, scaled
from smoothbench.models.layers import conv, make_dropout, make_smoothing
from smoothbench.models.registry import register_model
from smoothbench.models.spec import ModelSpec
from smoothbench.models.stages import make_stages


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """Projection (conv1x1 + BN) when shape changes, else an empty Sequential (identity)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()
    return nn.Sequential(conv(in_channels, out_channels, 1, stride=stride), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-[MC dropout]-conv3x3-BN, plus shortcut, then ReLU."""

    expansion = 1

    def __init__(self, spec: ModelSpec, in_channels: int, planes: int, stride: int, groups: int = 1,
                 width_per_group: int = 64) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64")
        self.shortcut = _shortcut(in_channels, planes, stride)
        self.conv1 = conv(in_channels, planes, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.dropout = make_dropout(spec)
        self.conv2 = conv(planes, planes, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        skip = self.shortcut(x)
        x = self.dropout(self.relu1(self.bn1(self.conv1(x))))
        x = self.bn2(self.conv2(x))
        return self.relu2(skip + x)


class Bottleneck(nn.Module):
    """conv1x1-BN-ReLU-conv3x3(groups)-BN-ReLU-[MC dropout]-conv1x1-BN, plus shortcut, then ReLU.

    Inner width = ``int(planes · width_per_group / 64) · groups`` (ResNeXt / wide ResNet rule).
    """

    expansion = 4

    def __init__(self, spec: ModelSpec, in_channels: int, planes: int, stride: int, groups: int = 1,
                 width_per_group: int = 64) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        if width < 1:
            raise UserError(f"width {spec.width} is too small for {spec.arch}: its grouped convs get 0 channels")
        out_channels = planes * self.expansion
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.conv1 = conv(in_channels, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = conv(width, width, 3, stride=stride, padding=1, groups=groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.dropout = make_dropout(spec)
        self.conv3 = conv(width, out_channels, 1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu3 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        skip = self.shortcut(x)
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.dropout(self.relu2(self.bn2(self.conv2(x))))
        x = self.bn3(self.conv3(x))
        return self.relu3(skip + x)


class ResNet(Classifier):
    """The paper's ResNet: stem, four stages with a smoothing slot after each, GAP-Linear head."""

    def __init__(self, spec: ModelSpec, block: type[BasicBlock] | type[Bottleneck], num_blocks: list[int],
                 groups: int = 1, width_per_group: int = 64) -> None:
        super().__init__(spec)
        planes = [scaled(c, spec, 64) for c in (64, 128, 256, 512)]
        if spec.stem == "imagenet":
            self.layer0 = nn.Sequential(conv(3, planes[0], 7, stride=2, padding=3), nn.BatchNorm2d(planes[0]),
                                        nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        else:
            self.layer0 = nn.Sequential(conv(3, planes[0], 3, padding=1), nn.BatchNorm2d(planes[0]), nn.ReLU())
        stages, channels = make_stages(lambda c, p, stride: block(spec, c, p, stride, groups, width_per_group),
                                       block.expansion, planes[0], planes, num_blocks)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.smooth1, self.smooth2, self.smooth3, self.smooth4 = (make_smoothing(spec) for _ in range(4))
        self.classifier = classifier_head(spec, channels, lambda: GAPHead(channels, spec.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer0(x)
        x = self.smooth1(self.layer1(x))
        x = self.smooth2(self.layer2(x))
        x = self.smooth3(self.layer3(x))
        x = self.smooth4(self.layer4(x))
        return self.classifier(x)


def _register(name: str, block, num_blocks: list[int], groups: int = 1, width_per_group: int = 64) -> None:
    register_model(name, family="resnet", smoothing_layers=4)(
        lambda spec: ResNet(spec, block, num_blocks, groups, width_per_group))


_register("resnet18", BasicBlock, [2, 2, 2, 2])
_register("resnet34", BasicBlock, [3, 4, 6, 3])
_register("resnet50", Bottleneck, [3, 4, 6, 3])
_register("resnet101", Bottleneck, [3, 4, 23, 3])
_register("resnet152", Bottleneck, [3, 8, 36, 3])
_register("resnext50_32x4d", Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4)
_register("resnext101_32x8d", Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8)
_register("wide_resnet50_2", Bottleneck, [3, 4, 6, 3], width_per_group=128)
_register("wide_resnet101_2", Bottleneck, [3, 4, 23, 3], width_per_group=128)
