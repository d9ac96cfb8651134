"""WRN-28-10: the usual pre-activation CIFAR Wide-ResNet (Zagoruyko & Komodakis), not in the paper's code.

Layout: ``layer0`` = conv3x3 3→16 → three groups ``layer1..3`` of 4 pre-activation basic blocks with
16k/32k/64k channels (k = 10; strides 1, 2, 2) → head ``classifier.0`` = BN → ReLU → GAP → Linear.
Smoothing: one slot ``smooth1..3`` at the end of each group (before each downsampling and before the
head), 3 in all. MC dropout sits between the two convs of each block, where Zagoruyko's WRN puts its
dropout. ``width`` is the first group's channel count (default 16k = 160); the stem keeps 16 channels.
"""

from __future__ import annotations

from torch import Tensor, nn

from smoothbench.models.base import BNGAPHead, Classifier, classifier_head, scaled
from smoothbench.models.families.preact_resnet import PreActBasicBlock
from smoothbench.models.layers import conv, make_smoothing
from smoothbench.models.registry import register_model
from smoothbench.models.spec import ModelSpec
from smoothbench.models.stages import make_stages

STEM_CHANNELS = 16


class WideResNet(Classifier):
    """Pre-activation WRN-depth-k for 32x32 inputs: (depth − 4) / 6 blocks per group."""

    def __init__(self, spec: ModelSpec, depth: int, k: int) -> None:
        super().__init__(spec)
        blocks_per_group = (depth - 4) // 6
        base = 16 * k
        widths = [scaled(c, spec, base) for c in (base, 2 * base, 4 * base)]
        self.layer0 = nn.Sequential(conv(3, STEM_CHANNELS, 3, padding=1))
        groups, channels = make_stages(lambda c, w, stride: PreActBasicBlock(spec, c, w, stride),
                                       PreActBasicBlock.expansion, STEM_CHANNELS,
                                       widths, [blocks_per_group] * 3)
        self.layer1, self.layer2, self.layer3 = groups
        self.smooth1, self.smooth2, self.smooth3 = (make_smoothing(spec) for _ in range(3))
        self.classifier = classifier_head(spec, channels, lambda: BNGAPHead(channels, spec.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer0(x)
        x = self.smooth1(self.layer1(x))
        x = self.smooth2(self.layer2(x))
        x = self.smooth3(self.layer3(x))
        return self.classifier(x)


@register_model("wrn28_10", family="wrn", smoothing_layers=3, stems=("cifar",))
def wrn28_10(spec: ModelSpec) -> WideResNet:
    """WRN-28-10 (36.5 M parameters for 10 classes)."""
    return WideResNet(spec, depth=28, k=10)
