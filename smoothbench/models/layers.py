"""Building blocks shared by every family: bias-free convolutions, blurs, spatial smoothing, MC dropout.

Spatial smoothing (Park & Kim 2022, paper.md §1.1) is ``blur(ReLU(τ·tanh(x/τ)))`` with τ = 10 and, in the
paper's code, a 2x2 box blur ``AvgPool2d(2, stride=1, padding=1)`` that grows the map from H to H+1.
None of these layers owns a parameter, so smoothing never changes a model's parameter count.

MC dropout masks can be drawn from a counter-based hash instead of torch's RNG: the mask of element ``e``
of MC-dropout layer ``l`` for batch row ``r`` is a pure function of ``(row_keys[r], l, e)``, so a sample is
identical whatever the batch size, its position in the batch, the chunking or the device.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothbench.models.spec import ModelSpec

RELU6_CAP = 6.0  # upper clamp of the "relu6-blur" smoothing (paper's ReLuBlurBlock, temp=6)

_MASK32 = 0xFFFFFFFF
_GOLDEN32 = 0x9E3779B1  # odd, so e -> e * _GOLDEN32 mod 2^32 is a bijection
_LANE_A, _LANE_B = 0x243F6A88, 0x85A308D3  # two independent 32-bit hash lanes (hex digits of pi)
_FMIX_C1, _FMIX_C2 = 0x85EBCA6B, 0xC2B2AE35  # fmix32's multipliers
_SIGN32 = 1 << 31
# Elements of a mask hashed at once (whole rows). CPU: the ~17 int32 passes over a block then run on two
# 2 MiB buffers that stay in cache instead of streaming [B, numel] temporaries through memory (int32 and
# cache-sized blocks are what make the keyed masks cheap on a CPU; the block size barely matters within that).
# GPU: memory bandwidth is plentiful but every pass is a kernel launch, so blocks are large (two 256 MiB
# buffers): with CPU-sized blocks an MC forward of 2,048 CIFAR images would launch ~20,000 tiny kernels.
_CPU_BLOCK_ELEMENTS = 1 << 19
_GPU_BLOCK_ELEMENTS = 1 << 26


def mask_block_elements(device: torch.device) -> int:
    """Mask elements hashed per block on ``device`` (the masks do not depend on it)."""
    return _CPU_BLOCK_ELEMENTS if device.type == "cpu" else _GPU_BLOCK_ELEMENTS


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
         groups: int = 1) -> nn.Conv2d:
    """A bias-free convolution, as every convolution of the paper's code (``layers.convnxn``)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                     bias=False)


class PaddedBox2(nn.Module):
    """The paper code's blur, ``AvgPool2d(2, stride=1, padding=1)`` (count_include_pad), H -> H+1.

    ``y[i, j] = (x[i-1, j-1] + x[i-1, j] + x[i, j-1] + x[i, j]) / 4`` with zeros outside the map. On the CPU
    it is computed as a depthwise 2x2 convolution with weights 1/4 and zero padding 1: the same float32
    values as ``avg_pool2d`` in our checks (gradients equal up to summation order) and faster, as a layer
    and per training step (``benchmarks/blur_formulations.py``; figures in the README). Other devices
    keep ``avg_pool2d``: on CUDA a channels-last depthwise conv would go to cuDNN (TF32 for float32 by
    default, so not the same values) and ``torch.compile`` fuses a pooling, not a convolution, with the
    tanh/ReLU in front; that choice is to be revisited once the GPU suite has timed both. The kernel is a
    non-persistent buffer, as in :class:`Binomial3`, so state dicts match the paper's.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", torch.full((1, 1, 2, 2), 0.25), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu":
            return F.avg_pool2d(x, kernel_size=2, stride=1, padding=1)
        return self.depthwise(x)

    def depthwise(self, x: Tensor) -> Tensor:
        """The blur as a depthwise convolution, on any device."""
        channels = x.shape[-3]
        weight = self.kernel.to(x.dtype).expand(channels, 1, 2, 2)
        return F.conv2d(x, weight, padding=1, groups=channels)


class SameBox2(nn.Module):
    """Size-preserving 2x2 box blur: replicate-pad one row/column right and bottom, then average 2x2.

    ``y[i, j] = (x[i, j] + x[i, j+1] + x[i+1, j] + x[i+1, j+1]) / 4`` with out-of-range indices clamped to
    the last row/column. The paper's ``SamePad`` pads floor((n-1)/2)=0 left/top and ceil((n-1)/2)=1
    right/bottom for n=2; we pick its replicate mode (the default of its ``Blur`` class) so that the
    border is not dimmed as zero padding would.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), kernel_size=2, stride=1)


class Binomial3(nn.Module):
    """Size-preserving 3x3 binomial blur: depthwise conv with k = f fᵀ / 16, f = (1, 2, 1), replicate pad 1.

    The kernel is a non-persistent buffer, not a parameter: parameter counts and state-dict keys are the
    same as without the blur, and it follows the module across devices and dtypes. (The paper's ``Blur``
    with ``sfilter=(1, 2, 1)`` zero-pads under ``TanhBlurBlock``'s default pad mode; we replicate, as for
    ``box2-same``, so the border is not dimmed.)
    """

    def __init__(self) -> None:
        super().__init__()
        f = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(f, f) / 16.0).view(1, 1, 3, 3), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(channels, 1, 3, 3)
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=channels)


def make_blur(kind: str) -> nn.Module:
    """The blur named by ``spec.blur``.

    - ``box2-pad1``: the paper code's ``AvgPool2d(2, stride=1, padding=1)`` with ``count_include_pad=True``
      (:class:`PaddedBox2`): H -> H+1, every output is the sum of its 2x2 window divided by 4 (zeros
      outside), so a corner is x/4.
    - ``box2-same``: :class:`SameBox2` (H -> H).
    - ``binomial3``: :class:`Binomial3` (H -> H).
    """
    if kind == "box2-pad1":
        return PaddedBox2()
    if kind == "box2-same":
        return SameBox2()
    if kind == "binomial3":
        return Binomial3()
    raise ValueError(f"unknown blur {kind!r}")


class Smoothing(nn.Module):
    """One spatial-smoothing layer (the paper's ``TanhBlurBlock`` and its variants).

    - ``tanh-blur``: ``blur(ReLU(τ·tanh(x/τ)))`` — τ bounds activations softly before blurring.
    - ``blur``: ``blur(x)`` (the paper's "or simply AvgPool" variant).
    - ``relu6-blur``: ``blur(clamp(x, 0, 6))`` (τ is not used).
    The blur submodule is named ``blur`` as in the paper's code.
    """

    def __init__(self, kind: str, blur: str, tau: float) -> None:
        super().__init__()
        if kind not in ("tanh-blur", "blur", "relu6-blur"):
            raise ValueError(f"unknown smoothing {kind!r}")
        self.kind = kind
        self.tau = float(tau)
        self.blur = make_blur(blur)

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "tanh-blur":
            x = F.relu(self.tau * torch.tanh(x / self.tau))
        elif self.kind == "relu6-blur":
            x = torch.clamp(x, 0.0, RELU6_CAP)
        return self.blur(x)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, tau={self.tau:g}"


def make_smoothing(spec: ModelSpec) -> nn.Sequential:
    """A smoothing slot: ``Sequential(Smoothing)``, or an empty Sequential for ``smoothing="none"``.

    A slot is a Sequential so module paths are ``smooth<k>.0.blur`` as in the paper's code.
    """
    if spec.smoothing == "none":
        return nn.Sequential()
    return nn.Sequential(Smoothing(spec.smoothing, spec.blur, spec.tau))


def _xorshift_(h: Tensor, shift: int, tmp: Tensor) -> Tensor:
    """``h ^= h >>> shift`` (logical shift of 32-bit words) in place, with ``tmp`` as scratch.

    ``h`` is either int64 holding values in [0, 2^32), or int32 holding the same 32 bits in two's complement
    (twice as many lanes per vector instruction, half the memory traffic). int32 right shifts are arithmetic,
    so their sign-extended high bits are masked off to make them logical.
    """
    torch.bitwise_right_shift(h, shift, out=tmp)
    if h.dtype != torch.int64:
        tmp.bitwise_and_((1 << (32 - shift)) - 1)
    return h.bitwise_xor_(tmp)


def _mul32_(h: Tensor, multiplier: int) -> Tensor:
    """``h *= multiplier`` mod 2^32 in place: int32 products wrap by themselves, int64 ones are masked."""
    if h.dtype == torch.int64:
        return h.mul_(multiplier).bitwise_and_(_MASK32)
    return h.mul_(_to_signed32(multiplier))


def _fmix32_core_(h: Tensor, tmp: Tensor) -> Tensor:
    """The middle of fmix32, ``M2 ∘ S13 ∘ M1``, in place."""
    return _mul32_(_xorshift_(_mul32_(h, _FMIX_C1), 13, tmp), _FMIX_C2)


def _fmix32_(h: Tensor, tmp: Tensor | None = None) -> Tensor:
    """MurmurHash3's 32-bit finaliser (a bijection of 32-bit words), in place on ``h``; returns ``h``.

    ``fmix32 = S16 ∘ M2 ∘ S13 ∘ M1 ∘ S16`` with ``Sk(h) = h ⊕ (h >>> k)`` and ``Mi(h) = h · Ci mod 2^32``;
    ``h`` is int64 in [0, 2^32) or int32 (see :func:`_xorshift_`). ``tmp`` is an optional scratch tensor
    like ``h`` (in-place ops with one scratch avoid an allocation per pass, which dominates on a CPU).
    """
    tmp = torch.empty_like(h) if tmp is None else tmp
    _xorshift_(h, 16, tmp)
    return _xorshift_(_fmix32_core_(h, tmp), 16, tmp)


def _to_signed32(value: int) -> int:
    """The two's-complement int32 value of the 32-bit word ``value`` in [0, 2^32)."""
    return value - (1 << 32) if value & _SIGN32 else value


def _int32_words(values: Tensor) -> Tensor:
    """int64 values in [0, 2^32) → int32 tensor with the same 32 bits (two's complement)."""
    return (values - ((values & _SIGN32) << 1)).to(torch.int32)


def _absorb(h: Tensor, value: Tensor | int) -> Tensor:
    """Mix a 64-bit integer into a 32-bit lane: two bijective rounds, low then high word."""
    h = _fmix32_(h ^ (value & _MASK32))
    return _fmix32_(h ^ ((value >> 32) & _MASK32))


def mc_row_keys(seed: int, image_ids: Tensor, sample_ids: Tensor) -> Tensor:
    """One int64 key per batch row from ``(seed, image id, MC sample id)`` (broadcast together).

    Two 32-bit lanes each absorb seed, image id and sample id through MurmurHash3 finalisers; the key is
    ``(laneA mod 2^31) << 32 | laneB`` (63 bits, non-negative). For a fixed seed and image, distinct sample
    ids (< 2^32) always give distinct lanes, because every absorb step is a bijection of the lane.
    """
    image_ids = torch.as_tensor(image_ids, dtype=torch.int64)
    sample_ids = torch.as_tensor(sample_ids, dtype=torch.int64, device=image_ids.device)
    image_ids, sample_ids = torch.broadcast_tensors(image_ids, sample_ids)
    lanes = []
    for lane in (_LANE_A, _LANE_B):  # the seed enters as a Python int: no host-to-device copy (a CUDA sync)
        h = _absorb(torch.full_like(image_ids, lane), int(seed))
        h = _absorb(h, image_ids)
        lanes.append(_absorb(h, sample_ids))
    return ((lanes[0] & 0x7FFFFFFF) << 32) | lanes[1]


def _signed_hashes(row_keys: Tensor, layer_id: int, numel: int) -> Iterator[tuple[slice, Tensor]]:
    """The mask hashes ``h`` of :func:`keyed_keep_mask` as int32 ``h ⊕ 2^31``, in blocks ``(rows, [n_rows, numel])``.

    One buffer is reused: use each block before taking the next. Computed with 16 instead of 25 whole-block
    ops, same bits: in int32 (see :func:`_xorshift_`), and with ``fmix32 = S16 ∘ core ∘ S16``
    (:func:`_fmix32_`), where ``S16`` is linear over ⊕ and its own inverse, so
    ``fmix32(c ⊕ sa) = S16(core(S16(c) ⊕ S16(sa)))`` and ``fmix32(S16(y) ⊕ sb) = S16(core(y ⊕ S16(sb)))``:
    ``h = S16(core(core(S16(c) ⊕ S16(sa)) ⊕ S16(sb)))``, with ``S16`` of counters and seeds taken once.
    """
    device = row_keys.device
    # The layer's two words are hashed on the CPU and enter as Python ints: a device tensor made from a
    # Python value would be a host-to-device copy, which synchronises CUDA in every forward.
    layer_a, layer_b = (int(_fmix32_(torch.tensor(int(layer_id) ^ lane))) for lane in (_LANE_A, _LANE_B))
    sa = _fmix32_(((row_keys >> 32) & _MASK32) ^ layer_a)
    sb = _fmix32_((row_keys & _MASK32) ^ layer_b)
    counters = (torch.arange(numel, dtype=torch.int64, device=device) * _GOLDEN32) & _MASK32
    sa, sb, counters = (_int32_words(_xorshift_(v, 16, torch.empty_like(v))) for v in (sa, sb, counters))
    rows_total = row_keys.shape[0]
    step = max(1, min(rows_total, mask_block_elements(device) // max(numel, 1)))
    h = torch.empty((step, numel), dtype=torch.int32, device=device)
    tmp = torch.empty_like(h)
    for start in range(0, rows_total, step):
        rows = slice(start, min(start + step, rows_total))
        hb, tb = h[: rows.stop - start], tmp[: rows.stop - start]
        torch.bitwise_xor(counters.unsqueeze(0), sa[rows].unsqueeze(1), out=hb)
        _xorshift_(_fmix32_core_(_fmix32_core_(hb, tb).bitwise_xor_(sb[rows].unsqueeze(1)), tb), 16, tb)
        yield rows, hb.bitwise_xor_(-_SIGN32)


def _keep_into(signed_hashes: Tensor, p: float, out: Tensor) -> Tensor:
    """``out = [h >= round(p·2^32)]`` (bool, or 0/1 in a float ``out``) from int32 ``h ⊕ 2^31``.

    Flipping the sign bit of both sides turns the unsigned comparison into a signed one:
    ``h >= t`` iff ``(h ⊕ 2^31) >= t − 2^31`` as int32.
    """
    threshold = int(round(p * 2.0**32)) - _SIGN32
    if threshold >= _SIGN32:  # p rounds to 1: nothing is kept (and int32 cannot hold the threshold)
        return out.zero_()
    return torch.ge(signed_hashes, threshold, out=out)


def keyed_keep_mask(row_keys: Tensor, layer_id: int, numel: int, p: float) -> Tensor:
    """Bool keep-mask ``[B, numel]``: element ``e`` of row ``r`` is kept iff ``u(key_r, layer_id, e) >= p``.

    Each row's two key words are mixed with the layer id into per-row seeds ``(sa, sb)``; then
    ``h = fmix32(fmix32(e·φ mod 2^32 ⊕ sa) ⊕ sb)`` is a uniform 32-bit integer and ``u = h / 2^32``; element
    ``e`` is kept iff ``h >= round(p·2^32)`` (compared as integers). Computed with torch integer ops on the
    keys' device, a block of rows at a time (see :func:`_signed_hashes`).
    """
    keep = torch.empty((row_keys.shape[0], numel), dtype=torch.bool, device=row_keys.device)
    for rows, signed in _signed_hashes(row_keys, layer_id, numel):
        _keep_into(signed, p, keep[rows])
    return keep


class MCDropout(nn.Module):
    """Element-wise dropout that can stay on at test time (MC dropout), with reproducible masks.

    - ``train()`` mode: ordinary dropout, ``F.dropout(x, p, training=True)``.
    - eval mode, MC off (default): identity.
    - eval mode, MC on, no keys: ``F.dropout(x, p, training=True)`` (torch's RNG).
    - eval mode, MC on, ``row_keys`` set: ``x · keep / (1 − p)`` with ``keep`` from
      :func:`keyed_keep_mask` ``(row_keys, layer_id, e)``, ``e`` the flat (C, H, W) index of the element.
    ``layer_id`` is assigned by ``create_model`` (order of appearance); ``mc_enabled`` and ``row_keys`` are
    set through :class:`smoothbench.models.base.Classifier`. ``channelwise`` drops whole channels (as
    ``nn.Dropout2d``): the keyed mask then has one element per channel, ``e`` the channel index.
    """

    def __init__(self, p: float, *, channelwise: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = float(p)
        self.channelwise = channelwise
        self.layer_id = 0
        self.mc_enabled = False
        self.row_keys: Tensor | None = None

    def _random(self, x: Tensor) -> Tensor:
        """torch's own dropout (train mode, or MC without keys)."""
        if self.channelwise and x.dim() > 2:
            return F.dropout2d(x, self.p, training=True) if x.dim() == 4 else F.dropout3d(x, self.p, training=True)
        return F.dropout(x, self.p, training=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self._random(x)
        if not self.mc_enabled or self.p == 0.0:
            return x
        if self.row_keys is None:
            return self._random(x)
        keys = self.row_keys.to(x.device)
        if keys.shape[0] != x.shape[0]:
            raise ValueError(f"MC row keys cover {keys.shape[0]} rows but the batch has {x.shape[0]}; "
                             "call set_mc_keys for each batch")
        scale = 1.0 / (1.0 - self.p)
        if self.channelwise and x.dim() > 2:
            keep = keyed_keep_mask(keys, self.layer_id, x.shape[1], self.p)
            return x * keep.view(*x.shape[:2], *[1] * (x.dim() - 2)) * scale
        if torch.is_grad_enabled() and x.requires_grad:  # out= below is not differentiable
            return x * keyed_keep_mask(keys, self.layer_id, x[0].numel(), self.p).view(x.shape) * scale
        # Same values as above, block by block while each block's hash is still in cache: the 0/1 mask is
        # written straight into the output's block, then multiplied by x and the scale there.
        out = torch.empty_like(x)
        for rows, signed in _signed_hashes(keys, self.layer_id, x[0].numel()):
            block = out[rows]
            _keep_into(signed.view(block.shape), self.p, block).mul_(x[rows]).mul_(scale)
        return out

    def extra_repr(self) -> str:
        return f"p={self.p:g}, layer_id={self.layer_id}" + (", channelwise" if self.channelwise else "")


def make_dropout(spec: ModelSpec) -> nn.Module:
    """An MC-dropout slot: :class:`MCDropout` for ``mcdo`` models, ``nn.Identity`` for ``dnn`` ones."""
    return MCDropout(spec.dropout_rate or 0.0) if spec.method == "mcdo" else nn.Identity()
