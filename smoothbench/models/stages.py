"""Residual stages: the loop that stacks blocks into the stages of ResNet, PreAct ResNet and WRN."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

#: ``block(in_channels, planes, stride)`` → a block whose output has ``planes · expansion`` channels.
BlockFactory = Callable[[int, int, int], nn.Module]


def make_stages(block: BlockFactory, expansion: int, in_channels: int, planes: Sequence[int],
                num_blocks: Sequence[int]) -> tuple[list[nn.Sequential], int]:
    """One ``nn.Sequential`` of ``num_blocks[s]`` blocks per stage ``s``; returns them and the last width.

    The first block of every stage but the first downsamples (stride 2); the others keep the resolution,
    as in He et al. and the paper's code (module names ``layerN.i`` follow from the Sequential indices).
    """
    stages, channels = [], in_channels
    for stage, (width, count) in enumerate(zip(planes, num_blocks)):
        blocks = []
        for i in range(count):
            blocks.append(block(channels, width, 2 if stage > 0 and i == 0 else 1))
            channels = width * expansion
        stages.append(nn.Sequential(*blocks))
    return stages, channels
