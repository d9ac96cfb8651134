"""``Classifier``: the base of every model (MC-dropout switches, parameter count), plus the classifier heads.

The heads keep the paper's module names (``gap``/``dense``, ``bn``, ``dense1..3``) so that state-dict keys
equal those of the paper's checkpoints.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from smoothbench.errors import UserError
from smoothbench.models.layers import MCDropout
from smoothbench.models.spec import ModelSpec


class Classifier(nn.Module):
    """A classifier that maps normalised images ``[B, 3, H, W]`` to logits ``[B, K]``.

    MC dropout is off by default: in eval mode an ``mcdo`` model is deterministic (dropout acts as the
    identity) until ``.mc(True)``; BatchNorm's train/eval state is never touched by the MC switches.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec

    def _mc_layers(self) -> list[MCDropout]:
        return [m for m in self.modules() if isinstance(m, MCDropout)]

    @property
    def mc_enabled(self) -> bool:
        """Whether MC dropout draws masks in eval mode."""
        return any(m.mc_enabled for m in self._mc_layers())

    def mc(self, enabled: bool = True) -> "Classifier":
        """Switch MC dropout on/off for eval-mode forwards; returns ``self``."""
        for layer in self._mc_layers():
            layer.mc_enabled = bool(enabled)
        return self

    def set_mc_keys(self, row_keys: Tensor | None) -> "Classifier":
        """Use reproducible masks keyed by ``row_keys`` (int64 ``[B]``, one per row of the next batches).

        Build keys with :func:`smoothbench.models.layers.mc_row_keys`; ``None`` falls back to torch's RNG.
        """
        if row_keys is not None:
            if not isinstance(row_keys, Tensor) or row_keys.dtype != torch.int64 or row_keys.dim() != 1:
                raise TypeError("MC row keys must be a 1-D int64 tensor (see mc_row_keys)")
        for layer in self._mc_layers():
            layer.row_keys = row_keys
        return self

    def mc_sampling(self, row_keys: Tensor | None = None):
        """Context manager: MC on with ``row_keys`` inside, previous MC state and keys restored after."""
        return mc_sampling(self, row_keys)

    def num_parameters(self) -> int:
        """Number of parameter elements (the blur kernels are buffers and do not count)."""
        return sum(p.numel() for p in self.parameters())


@contextmanager
def mc_sampling(model: Classifier, row_keys: Tensor | None = None) -> Iterator[Classifier]:
    """``with mc_sampling(model, keys):`` draws MC-dropout masks (keyed if ``keys``), then restores state."""
    layers = model._mc_layers()
    saved = [(layer.mc_enabled, layer.row_keys) for layer in layers]
    model.mc(True).set_mc_keys(row_keys)
    try:
        yield model
    finally:
        for layer, (enabled, keys) in zip(layers, saved):
            layer.mc_enabled, layer.row_keys = enabled, keys


def scaled(channels: int, spec: ModelSpec, base: int) -> int:
    """``channels · width / base`` (integer division) for ``spec.width``; ``channels`` when width is None."""
    if spec.width is None:
        return channels
    if spec.width < 1:
        raise UserError(f"width must be a positive integer, got {spec.width}")
    out = channels * spec.width // base
    if out < 1:
        raise UserError(f"width {spec.width} is too small for {spec.arch} ({channels} channels at width {base} "
                        f"would become 0); use a width of at least {-(-base // channels)}")
    return out


#: The MLP head's pooled map is ``MLP_POOL × MLP_POOL`` (the paper code's ``AdaptiveAvgPool2d((7, 7))``).
MLP_POOL = 7


def classifier_head(spec: ModelSpec, channels: int, gap: Callable[[], nn.Module], *,
                    pools: Callable[[], tuple[nn.Module, ...]] = tuple, size: int = MLP_POOL) -> nn.Sequential:
    """The ``classifier`` of ``spec.head`` (``None``: the family's own, from the registry), the paper code's rule:
    ``gap`` is the family's global-average-pooling head made by ``gap()`` (``GAPBlock``; ``BNGAPBlock`` for
    pre-activation nets); ``mlp`` is the family's ``pools()``, an adaptive ``size``×``size`` average pool and
    :class:`MLPHead` (``MLPBlock``, hidden width 4096·width/64) on the flattened map. Module indices equal the
    paper's, so its checkpoints load key for key. Only the chosen head is built, so the random initialisation
    of a family's own head is what it was before heads could be chosen."""
    from smoothbench.models.registry import get_entry

    if (spec.head or get_entry(spec.arch).head) == "gap":
        return nn.Sequential(gap())
    return nn.Sequential(*pools(), nn.AdaptiveAvgPool2d((size, size)),
                         MLPHead(size * size * channels, scaled(4096, spec, 64), spec.num_classes))


class GAPHead(nn.Module):
    """ResNet head (paper's ``GAPBlock``): global average pool → Linear."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dense = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(torch.flatten(self.gap(x), 1))


class BNGAPHead(nn.Module):
    """Pre-activation head (paper's ``BNGAPBlock``): BN → ReLU → global average pool → Linear."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_features)
        self.relu = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.dense = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(torch.flatten(self.gap(self.relu(self.bn(x))), 1))


class MLPHead(nn.Module):
    """VGG/AlexNet head (paper's ``MLPBlock``): Linear-ReLU-Dropout(0.5) twice, then Linear.

    Its ``nn.Dropout(0.5)`` is ordinary dropout (off in eval mode, untouched by MC mode), as in the paper.
    """

    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(in_features, hidden)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(0.5)
        self.dense2 = nn.Linear(hidden, hidden)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(0.5)
        self.dense3 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout1(self.relu1(self.dense1(torch.flatten(x, 1))))
        x = self.dropout2(self.relu2(self.dense2(x)))
        return self.dense3(x)
