"""Feature maps along the depth of a network: variance over space, variance across MC samples, Fourier spectrum.

**Positions** (where feature maps are read): the network's blocks and its smoothing layers, in the order
their outputs are computed (found from one dry forward). From the top of the module tree, a child is
*opened* (its children take its place) when it is a container holding at least two children with a
convolution each (a stage of residual blocks, a VGG ``features`` list), a container that is never called
itself (the ``ModuleDict`` of layers inserted by ``--smoothing``), or the only child that runs (the network
inside a model from elsewhere); any other child is one position. A position that is a slot holding only
:class:`~smoothbench.models.layers.Smoothing` layers becomes those layers, and every smoothing layer is a
position (marked ``smoothing``). For smoothbench's ResNets this gives the authors' blocks (``layer0``, each
``layerN.i``; how-do-vits-work ``featuremap_variance.ipynb``) plus ``smoothN``. Positions whose output is not
a 4-D feature map of more than one pixel (pooled features, logits) are left out, and so are empty slots,
identities and dropout layers. A position is marked
``downsample`` when its map is smaller than the previous position's (or the input's).

**Statistics**, per position, over every image (a feature map ``z[b, c, h, w]``):

* ``fmap_variance``: ``mean_{b,c} Var_{h,w} z`` with the unbiased variance (``torch.var``'s default), the
  authors' ``latent.var(dim=[-1, -2]).mean(dim=[0, 1])`` (featuremap_variance.ipynb);
* ``mc_variance``: ``mean_{b,c,h,w} Var_s z_s`` over ``S`` keyed MC-dropout samples ``s`` of the same image
  (unbiased, computed from deviations to the first sample so identical samples give exactly 0): how much the
  members of an MC ensemble disagree inside the network, the quantity smoothing should lower ("blurs behave
  like ensembles"). A model without MC dropout runs once and gets 0;
* ``fourier_high`` and the curve behind it (the authors' fourier_analysis.ipynb): ``A = log(|FFT₂ z| + 1e-6)``
  (natural log) per (image, channel), shifted so the zero frequency sits at ``(⌊H/2⌋, ⌊W/2⌋)``, **averaged over
  images and channels** (the mean of log amplitudes), then read along the diagonal from the centre outwards:
  ``Δ(k) = A[H/2 + k, W/2 + k] − A[H/2, W/2]``, the log amplitude at frequency ``(2πk/H, 2πk/W)`` relative to
  the zero frequency. ``freq`` is ``2k/H`` in units of π (the authors plot the same points against
  ``linspace(0, 1)``); ``fourier_high = Δ`` at the highest such frequency (the authors' Fig. 8 quantity).

For an MC-dropout model ``fmap_variance`` and the Fourier curve are averaged over its ``S`` samples (the
maps its ensemble members compute); otherwise they come from its one deterministic forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pandas as pd
import torch
from torch import Tensor, nn

from smoothbench.models.layers import MCDropout, Smoothing, mc_row_keys
from smoothbench.models.surgery import DROPOUT_TYPES
from smoothbench.progress import Progress

#: Added to Fourier amplitudes before the log, as the authors do.
AMPLITUDE_FLOOR = 1e-6
#: Modules that are never positions: identities and dropout (their maps are the block's before or after them).
_PASS_THROUGH = (nn.Identity, MCDropout, *DROPOUT_TYPES)


@dataclass(frozen=True)
class Position:
    """One place feature maps are read: its module's dotted name, kind and map shape."""

    index: int
    module: str
    smoothing: bool
    downsample: bool
    channels: int
    height: int
    width: int


def _feature_map(output) -> Tensor | None:
    """The first tensor of a module's output if it is a 4-D feature map."""
    while isinstance(output, (tuple, list)) and output:
        output = output[0]
    return output if isinstance(output, Tensor) and output.dim() == 4 else None


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def _only_smoothing(module: nn.Module) -> list[Smoothing]:
    """The smoothing layers of a slot that holds nothing else (``smoothN``), else ``[]``."""
    children = list(module.children())
    if isinstance(module, nn.Sequential) and children and all(isinstance(c, Smoothing) for c in children):
        return children
    return []


def _units(module: nn.Module, prefix: str, called: set[str]) -> list[str]:
    """The positions under ``module`` (see the module docstring), as dotted names, in no particular order."""
    children = [(f"{prefix}{name}", child) for name, child in module.named_children()]
    ran = [(name, child) for name, child in children
           if any(n == name or n.startswith(name + ".") for n in called)]
    own = [name for name, _ in ran if name in called]
    names = []
    for name, child in ran:
        grandchildren = list(child.children())
        convs = sum(_has_conv(c) for c in grandchildren)
        if isinstance(child, Smoothing):
            names.append(name)
        elif isinstance(child, _PASS_THROUGH) or (isinstance(child, nn.Sequential) and not grandchildren):
            continue  # an empty slot or a dropout layer: no feature map of its own
        elif name not in called or (own == [name] and grandchildren) or (isinstance(child, nn.Sequential) and convs >= 2):
            names += _units(child, name + ".", called)
        elif _only_smoothing(child):
            names += [f"{name}.{n}" for n, c in child.named_children()]
        else:
            names.append(name)
    return names


@torch.no_grad()
def feature_positions(model: nn.Module, example: Tensor) -> list[Position]:
    """The positions of ``model`` (eval mode, MC off), from one forward of ``example`` ``[B, 3, H, W]``."""
    modules = dict(model.named_modules())
    finished: dict[str, Tensor | None] = {}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: finished.setdefault(name, _feature_map(o)),
                                          prepend=True)
             for name, module in modules.items() if name]
    try:
        model(example)
    finally:
        for hook in hooks:
            hook.remove()
    order = list(finished)
    names = sorted(set(_units(model, "", set(finished))), key=order.index)
    positions, previous = [], example.shape[-2]
    for name in names:
        z = finished[name]
        if z is None or z.shape[-2] * z.shape[-1] < 2:
            continue
        positions.append(Position(len(positions), name, isinstance(modules[name], Smoothing), z.shape[-2] < previous,
                                  z.shape[1], z.shape[-2], z.shape[-1]))
        previous = z.shape[-2]
    return positions


def log_amplitude(z: Tensor) -> Tensor:
    """``Σ_{b,c}`` of the centred log amplitude ``log(|FFT₂ z| + 1e-6)``: ``[H, W]``, float64."""
    h, w = z.shape[-2:]
    amplitude = torch.fft.fft2(z.double()).abs().add_(AMPLITUDE_FLOOR).log_()
    return torch.roll(amplitude, shifts=(h // 2, w // 2), dims=(-2, -1)).sum(dim=(0, 1))


def relative_diagonal(mean_log_amplitude: Tensor) -> tuple[list[float], list[float]]:
    """``(freq in units of π, Δ log amplitude)`` along the diagonal from the zero frequency outwards."""
    h, w = mean_log_amplitude.shape
    steps = min(h - h // 2, w - w // 2)
    diagonal = torch.stack([mean_log_amplitude[h // 2 + k, w // 2 + k] for k in range(steps)])
    return [2 * k / h for k in range(steps)], (diagonal - diagonal[0]).tolist()


class _Sums:
    """Running sums of one position over images and ``samples`` MC samples per image."""

    def __init__(self, samples: int) -> None:
        self.samples = samples
        self.variance = 0.0  # Σ over samples, images, channels of Var_hw
        self.log_amplitude: Tensor | None = None  # Σ over samples, images, channels, [H, W]
        self.mc_variance = 0.0  # Σ over images, channels, positions of Var_s
        self.maps = 0  # images × channels seen per sample
        self.elements = 0  # images × channels × H × W
        self.first: Tensor | None = None  # sample 0 of the current batch
        self.deviation: Tensor | None = None  # Σ_s (z_s − z_0)
        self.squares: Tensor | None = None  # Σ_s (z_s − z_0)²

    def add(self, z: Tensor, sample: int) -> None:
        z = z.float()
        self.variance += float(z.var(dim=(-2, -1)).double().sum())
        amplitude = log_amplitude(z)
        self.log_amplitude = amplitude if self.log_amplitude is None else self.log_amplitude + amplitude
        if sample == 0:
            self.maps += z.shape[0] * z.shape[1]
            self.elements += z.numel()
            if self.samples > 1:
                self.first, self.deviation, self.squares = z.clone(), torch.zeros_like(z), torch.zeros_like(z)
        else:
            d = z - self.first
            self.deviation += d
            self.squares += d * d

    def end_batch(self) -> None:
        """Fold the batch's across-sample variance into the sums."""
        if self.samples > 1:
            variance = (self.squares - self.deviation.square() / self.samples).clamp_min_(0) / (self.samples - 1)
            self.mc_variance += float(variance.double().sum())
        self.first = self.deviation = self.squares = None


def feature_statistics(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor, Tensor]], positions: list[Position],
                       *, mc_samples: int, seed: int,
                       progress: Progress | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(one row per position, the Fourier curves: one row per position and frequency)``; see the module
    docstring. ``batches`` yield ``(x, y, ids)``; ``ids`` key the MC-dropout masks (sample ``s`` of image ``i``
    is the mask ``eval`` draws for it); a model without MC dropout runs once per batch. The model is left in
    eval mode with MC dropout off and no keys."""
    stochastic = model.spec.method == "mcdo" and (model.spec.dropout_rate or 0) > 0
    samples = mc_samples if stochastic else 1
    modules = dict(model.named_modules())
    sums = {p.module: _Sums(samples) for p in positions}
    current = {"sample": 0}
    hooks = [modules[p.module].register_forward_hook(
        lambda m, i, o, name=p.module: sums[name].add(_feature_map(o), current["sample"]), prepend=True)
        for p in positions]
    model.eval()
    try:
        model.mc(stochastic)
        with torch.no_grad():
            for x, _, ids in batches:
                for sample in range(samples):
                    current["sample"] = sample
                    if stochastic:
                        model.set_mc_keys(mc_row_keys(seed, ids, torch.full_like(ids, sample)))
                    model(x)
                for s in sums.values():
                    s.end_batch()
                if progress is not None:
                    progress.advance(x.shape[0])
    finally:
        for hook in hooks:
            hook.remove()
        model.mc(False)
        model.set_mc_keys(None)
    rows, curves = [], []
    depth = max(len(positions) - 1, 1)
    for p in positions:
        s = sums[p.module]
        freq, delta = relative_diagonal(s.log_amplitude / (s.maps * samples))
        rows.append({"position": p.index, "depth": p.index / depth, "module": p.module, "smoothing": p.smoothing,
                     "downsample": p.downsample, "channels": p.channels, "height": p.height, "width": p.width,
                     "fmap_variance": s.variance / (s.maps * samples),
                     "mc_variance": s.mc_variance / s.elements if samples > 1 else 0.0,
                     "fourier_high": delta[-1], "mc_samples": samples})
        curves += [{"position": p.index, "module": p.module, "freq": f, "dlog_amplitude": d}
                   for f, d in zip(freq, delta)]
    return pd.DataFrame(rows), pd.DataFrame(curves)
