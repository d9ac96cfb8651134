"""Weather corruptions: snow, frost, fog and spatter, as the reference creation scripts make them.

Reproduces ``snow``, ``frost``, ``fog`` and ``spatter`` of hendrycks/robustness
``ImageNet-C/create_c/make_cifar_c.py`` and ``make_imagenet_c.py`` (commit 8190fe32) for both
parameter tables, including each image's random draws in the reference order (from ``ctx.rngs[i]``
instead of numpy's unseeded global state) and the floating-point types the reference computes in,
so that the final ``np.uint8`` truncation (done by the engine) sees the same numbers. (``brightness``,
also a weather corruption, lives with the other HSV operations in :mod:`digital`.)

Inputs are the uint8 images [N,H,W,3]. Single-channel random layers are drawn and smoothed on the
CPU with numpy/scipy (the reference's own calls); everything else runs batched in torch on the images'
device. No operation mixes images, so every image's result is independent of the batch it comes in.

The reference's spatter calls OpenCV (Canny, distanceTransform, equalizeHist, filter2D, blur) and
snow calls ImageMagick; neither is a dependency here. Their algorithms are reimplemented below in
torch/scipy, following OpenCV's documented integer arithmetic (see each helper); the known limits are
listed in :func:`spatter`.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from smoothbench.corruptions.frost import frost_textures
from smoothbench.corruptions.kernels import clipped_zoom_scipy, imagemagick_to_8bit, motion_blur
from smoothbench.corruptions.registry import CorruptionContext, register_corruption
from smoothbench.errors import UserError

#: Side of the plasma map the fog of each table is cut from (make_cifar_c.py: 32, make_imagenet_c.py: 256).
PLASMA_SIZE = {"cifar": 32, "imagenet": 256}
#: Textures frost draws from: ``randint(5)`` over frost1..frost6, so frost6 is never used.
FROST_CHOICES = 5
#: Snow's motion-blur angle range in degrees: ``uniform(-135, -45)``.
SNOW_ANGLES = (-135.0, -45.0)
#: Colours of spatter: water (pale turquoise) and mud (brown), RGB / 255.
WATER_RGB = (175, 238, 238)
MUD_RGB = (63, 42, 20)


# ----------------------------------------------------------------------------------------------
# fog
# ----------------------------------------------------------------------------------------------
def plasma_fractal(rngs: list[np.random.Generator], mapsize: int, wibbledecay: float) -> np.ndarray:
    """Diamond-square height maps, float64 [N, mapsize, mapsize] in [0, 1], one per generator.

    The reference's ``plasma_fractal``: ``map[0, 0] = 0``; for ``step = mapsize, mapsize/2, .., 2`` the
    square centres get ``sum/4 + w * U(-w, w)`` (``sum``: the 4 corners, wrapping around), then the two
    diamond sets (first the points between horizontal neighbours, then between vertical ones) the same
    with their 4 neighbours; ``w`` starts at 100 and is divided by ``wibbledecay`` after each level.
    Finally ``(map - min) / max(map - min)``. Image ``i`` draws, per level, one ``(n, n)`` uniform
    array for the squares and one per diamond set (``n = mapsize / step``) from ``rngs[i]``: all of
    them as one ``random()`` call per image, then ``U(-w, w) = -w + 2w u`` as numpy's ``uniform``
    computes it, so the values equal those of the successive ``uniform`` calls bit for bit.
    """
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"plasma map size must be a power of two >= 2, got {mapsize}")
    levels = mapsize.bit_length() - 1  # steps mapsize, .., 2
    counts = [3 * 4**level for level in range(levels)]  # per level: squares, across, down (n*n each)
    uniforms = np.empty((len(rngs), sum(counts)), dtype=np.float64)
    for i, rng in enumerate(rngs):
        rng.random(out=uniforms[i])
    maps = np.zeros((len(rngs), mapsize, mapsize), dtype=np.float64)
    step, wibble, used = mapsize, 100.0, 0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        nonlocal used
        size = total.shape[1] * total.shape[2]
        u = uniforms[:, used : used + size].reshape(total.shape)
        used += size
        return total / 4 + wibble * (-wibble + (wibble - -wibble) * u)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares += np.roll(squares, -1, axis=2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        across = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=2))
        maps[:, 0::step, half::step] = wibbled_mean(across)
        down = (centres + np.roll(centres, 1, axis=2)) + (corners + np.roll(corners, -1, axis=1))
        maps[:, half::step, 0::step] = wibbled_mean(down)
        step //= 2
        wibble /= wibbledecay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def plasma_size(table: str, height: int, width: int) -> int:
    """The table's plasma map side (32 or 256), doubled while smaller than the image."""
    size = PLASMA_SIZE[table]
    while size < max(height, width):
        size *= 2
    return size


@register_corruption("fog", group="weather", common=True)
def fog(images: torch.Tensor, params: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Fog: a plasma-fractal haze added, then the contrast scaled back.

    With ``p = x/255`` (float64), ``m = max(p)`` over the whole image and ``P`` the top-left HxW of a
    :func:`plasma_fractal` map (32 px for CIFAR, 256 px for ImageNet), strength ``a`` and decay ``d``:
    ``out = 255 * clip((p + a P) * m / (m + a), 0, 1)``.
    """
    strength, decay = params
    n, h, w, _ = images.shape
    plasma = plasma_fractal(ctx.rngs, plasma_size(ctx.table, h, w), decay)[:, :h, :w]
    p = images.double().div_(255.0)
    peak = p.amax(dim=(1, 2, 3), keepdim=True)
    haze = torch.from_numpy(np.ascontiguousarray(plasma)).to(images.device).mul_(strength)
    return p.add_(haze[..., None]).mul_(peak).div_(peak + strength).clamp_(0, 1).mul_(255)


# ----------------------------------------------------------------------------------------------
# frost
# ----------------------------------------------------------------------------------------------
def frost_draw(rng: np.random.Generator, textures: list[np.ndarray], height: int, width: int) -> tuple[int, int, int]:
    """``(texture index, top, left)`` drawn as the reference does: ``randint(5)``, then ``randint(0,
    rows - height)`` and ``randint(0, cols - width)`` (upper bounds exclusive)."""
    index = int(rng.integers(FROST_CHOICES))
    rows, cols = textures[index].shape[:2]
    if rows <= height or cols <= width:
        raise UserError(
            f"frost texture {index + 1} ({rows}x{cols}) is too small for {height}x{width} images; "
            "use the cifar table for 32 px images and the imagenet table for 224 px images"
        )
    return index, int(rng.integers(0, rows - height)), int(rng.integers(0, cols - width))


@register_corruption("frost", group="weather", common=True)
def frost(images: torch.Tensor, params: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Frost: a random crop of a frost texture blended in.

    ``out = clip(a * x8 + b * T[top:top+H, left:left+W], 0, 255)`` (float64), with ``x8`` the 8-bit
    pixels, ``(a, b)`` the image and frost weights, and ``T`` one of frost1..frost5 (shrunk by 0.2 for
    the CIFAR table, see :func:`~smoothbench.corruptions.frost.frost_textures`) chosen by
    :func:`frost_draw`.
    """
    image_weight, frost_weight = params
    n, h, w, _ = images.shape
    if "frost_textures" not in ctx.run:  # resolving and checking the folder costs ~0.2 ms: once per call
        ctx.run["frost_textures"] = frost_textures(ctx.frost_dir, table=ctx.table)
    textures = ctx.run["frost_textures"]
    crops = []
    for rng in ctx.rngs:
        index, top, left = frost_draw(rng, textures, h, w)
        crops.append(textures[index][top : top + h, left : left + w])
    layer = torch.from_numpy(np.stack(crops)).to(images.device, torch.float64)
    return torch.clamp(image_weight * images.double() + frost_weight * layer, 0, 255)


# ----------------------------------------------------------------------------------------------
# snow
# ----------------------------------------------------------------------------------------------
_GRAY_R, _GRAY_G, _GRAY_B = (float(np.float32(c)) for c in (0.299, 0.587, 0.114))


def gray_cv2(p: torch.Tensor) -> torch.Tensor:
    """OpenCV ``COLOR_RGB2GRAY`` on float32 RGB ``[..., 3]``: ``0.299 R + 0.587 G + 0.114 B``.

    Bit-exact with OpenCV 5's vectorised loop, which evaluates ``fma(B, .114, fma(R, .299, G * .587))``
    with float32 coefficients; each fused multiply-add is formed in float64 (the float32 product is
    exact there) and rounded once to float32.
    """
    t = p[..., 1] * _GRAY_G
    t = (p[..., 0].double() * _GRAY_R + t.double()).float()
    return (p[..., 2].double() * _GRAY_B + t.double()).float()


@register_corruption("snow", group="weather", common=True)
def snow(images: torch.Tensor, params: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Snow: a zoomed, thresholded, motion-blurred noise layer added twice (once rotated 180°).

    Per image: ``L ~ N(loc, scale)`` of shape HxW, then an angle ``~ U(-135, -45)``. ``L`` goes
    through the reference's ``clipped_zoom`` (scipy's arithmetic bit for bit:
    :func:`~smoothbench.corruptions.kernels.clipped_zoom_scipy`), values below the threshold become 0,
    and it is stored as an 8-bit grey image ``uint8(255 clip(L, 0, 1))``, motion-blurred (ImageMagick, via
    :func:`~smoothbench.corruptions.kernels.motion_blur`) and read back as 8 bits
    (:func:`~smoothbench.corruptions.kernels.imagemagick_to_8bit`): ``S``. With
    ``p = x/255`` (float32) and image weight ``c``:
    ``q = c p + (1 - c) max(p, 1.5 gray(p) + 0.5)`` (float32) and
    ``out = 255 clip(q + S/255 + rot180(S)/255, 0, 1)`` (float64).
    """
    loc, scale, zoom, threshold, radius, sigma, weight = params
    n, h, w, _ = images.shape
    layers, angles = np.empty((n, h, w)), np.empty(n)
    for i, rng in enumerate(ctx.rngs):
        layers[i] = rng.normal(loc, scale, size=(h, w))
        angles[i] = rng.uniform(*SNOW_ANGLES)
    layer = clipped_zoom_scipy(torch.from_numpy(layers).to(images.device), zoom)
    layer = torch.where(layer < threshold, 0.0, layer)
    grey = torch.floor(layer.clamp_(0, 1) * 255)  # np.uint8 truncation of values in [0, 255]
    blurred = motion_blur(grey[..., None], radius, sigma, torch.from_numpy(angles))
    flakes = imagemagick_to_8bit(blurred) / 255.0
    p = images.float() / 255.0
    p = weight * p + (1 - weight) * torch.maximum(p, gray_cv2(p)[..., None] * 1.5 + 0.5)
    out = p.double() + flakes + torch.flip(flakes, dims=(1, 2))
    return torch.clamp(out, 0, 1) * 255


# ----------------------------------------------------------------------------------------------
# spatter: OpenCV pieces of the water branch
# ----------------------------------------------------------------------------------------------
_TG22 = 13573  # OpenCV Canny: round(tan(22.5°) * 2^15)
_CANNY_SHIFT = 15
#: OpenCV distanceTransform(DIST_L2, 5): float32 steps of the 5x5 chamfer mask (4-neighbour,
#: diagonal, knight move).
_CHAMFER_STEPS = (np.float32(1.0), np.float32(1.4), np.float32(2.1969))


def canny(image: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """OpenCV ``Canny(image, low, high)`` (3x3 Sobel, L1 gradient) on uint8-valued [N,H,W]; bool edges.

    Sobel ``dx``/``dy`` with replicated borders; magnitude ``|dx| + |dy|``. Non-maximum suppression as
    in OpenCV's integer code: with ``t = tan 22.5°`` in 15-bit fixed point, a gradient with
    ``|dy| < t |dx|`` compares with left (>) and right (>=), ``|dy| > (t + 2) |dx|`` with above (>) and
    below (>=), otherwise with the diagonal neighbours (both >) along the gradient; magnitudes outside
    the image are 0. Candidates need magnitude > ``low``; hysteresis keeps the 8-connected candidate
    components holding a magnitude > ``high`` (``scipy.ndimage.label``, on the CPU).
    """
    p = F.pad(image.float()[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
    dy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
    dx, dy = dx.to(torch.int32), dy.to(torch.int32)
    ax, ay = dx.abs(), dy.abs()
    mag = ax + ay
    m = F.pad(mag, (1, 1, 1, 1))

    def at(dr: int, dc: int) -> torch.Tensor:
        return m[:, 1 + dr : m.shape[1] - 1 + dr, 1 + dc : m.shape[2] - 1 + dc]

    tg22x = ax * _TG22
    ay_s = ay << _CANNY_SHIFT
    horizontal = ay_s < tg22x
    vertical = ay_s > tg22x + (ax << (_CANNY_SHIFT + 1))
    same_sign = (dx < 0) == (dy < 0)
    keep = torch.where(
        horizontal,
        (mag > at(0, -1)) & (mag >= at(0, 1)),
        torch.where(
            vertical,
            (mag > at(-1, 0)) & (mag >= at(1, 0)),
            torch.where(
                same_sign, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1))
            ),
        ),
    )
    candidates = (keep & (mag > low)).cpu().numpy()
    strong = (keep & (mag > high)).cpu().numpy()
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected within an image, never across images
    labels, _ = ndi.label(candidates, structure=structure)
    hit = np.unique(labels[strong])
    edges = np.isin(labels, hit[hit > 0])
    return torch.from_numpy(edges).to(image.device)


def chamfer_distance(edges: torch.Tensor, cap: float) -> torch.Tensor:
    """``min(cv2.distanceTransform(255 - edges, DIST_L2, 5), cap)`` as float32 [N,H,W].

    OpenCV's 5x5 chamfer distance to the nearest edge pixel (steps 1, 1.4 and 2.1969 for 4-neighbour,
    diagonal and knight moves; nothing outside the image), by its two raster passes in float32 (the
    IPP path of OpenCV builds): top-down, each row first takes ``min(d, d[up-neighbour] + cost)`` over
    the 7 neighbours of the two rows above, then the left-to-right run ``d[j] = min(d[j], d[j-1] + 1)``;
    then the mirror image bottom-up. Rows are processed one at a time, vectorised over images and
    columns; neighbours with the same step are minimised before the step is added (float32 rounding
    is monotone, so this is the same number), and the in-row run is a cumulative minimum of
    ``d[k] - k`` (in float64, so exact) plus ``j``. Values above ``cap`` are clamped, which cannot
    change any distance below it. Computed with numpy on the CPU: the 2H sequential row steps are
    many tiny operations, and numpy's per-call cost is a fraction of torch's.
    """
    one, diagonal, knight = _CHAMFER_STEPS
    limit = np.float32(np.ceil(cap) + 3.0)
    n, h, w = edges.shape
    dist = np.full((h + 4, n, w + 4), limit, dtype=np.float32)  # row-major over rows: each row step is contiguous
    dist[2 : h + 2, :, 2 : w + 2][edges.cpu().numpy().transpose(1, 0, 2)] = 0.0
    cols = np.arange(w, dtype=np.float64)
    step = np.empty((n, w), dtype=np.float32)
    run = np.empty((n, w), dtype=np.float64)

    def relax(r: int, near: np.ndarray, far: np.ndarray, forward: bool) -> None:
        """Row ``r`` from the adjacent row ``near`` and the next one ``far`` (both padded), then its run."""
        cur = dist[r, :, 2 : w + 2]
        np.minimum(cur, np.add(near[:, 2 : w + 2], one, out=step), out=cur)
        np.minimum(near[:, 1 : w + 1], near[:, 3 : w + 3], out=step)
        np.minimum(cur, np.add(step, diagonal, out=step), out=cur)
        np.minimum(near[:, 0:w], near[:, 4 : w + 4], out=step)
        np.minimum(step, far[:, 1 : w + 1], out=step)
        np.minimum(step, far[:, 3 : w + 3], out=step)
        np.minimum(cur, np.add(step, knight, out=step), out=cur)
        if forward:
            np.subtract(cur, cols, out=run)
            np.minimum.accumulate(run, axis=1, out=run)
            np.add(run, cols, out=run)
        else:
            np.add(cur, cols, out=run)
            backwards = run[:, ::-1]
            np.minimum.accumulate(backwards, axis=1, out=backwards)
            np.subtract(run, cols, out=run)
        np.minimum(run, limit, out=cur, casting="unsafe")

    for r in range(2, h + 2):
        relax(r, dist[r - 1], dist[r - 2], True)
    for r in range(h + 1, 1, -1):
        relax(r, dist[r + 1], dist[r + 2], False)
    inner = np.minimum(dist[2 : h + 2, :, 2 : w + 2], np.float32(cap)).transpose(1, 0, 2)
    return torch.from_numpy(np.ascontiguousarray(inner)).to(edges.device)


def _pad_reflect101(v: torch.Tensor) -> torch.Tensor:
    """[N,H,W] padded by one pixel with OpenCV's default BORDER_REFLECT_101 (torch's ``reflect``)."""
    return F.pad(v[:, None], (1, 1, 1, 1), mode="reflect")[:, 0]


def _sum3x3(p: torch.Tensor) -> torch.Tensor:
    """Sums of every 3x3 window of a padded [N,H+2,W+2] tensor (exact for the integer-valued inputs here)."""
    rows = p[:, :, :-2] + p[:, :, 1:-1] + p[:, :, 2:]
    return rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]


def box3_float(v: torch.Tensor) -> torch.Tensor:
    """OpenCV ``blur(v, (3, 3))`` on float32 [N,H,W]: reflect-101 border, sum in float64 (exact for
    these float32 inputs, so the order is immaterial), times 1/9 in float64, rounded to float32."""
    return (_sum3x3(_pad_reflect101(v.double())) * (1.0 / 9.0)).float()


def box3_uint8(v: torch.Tensor) -> torch.Tensor:
    """OpenCV ``blur(v, (3, 3))`` on uint8-valued [N,H,W] (returned as int32): reflect-101 border,
    ``((sum + 4) * 7282) >> 16``, OpenCV's 8-bit fixed-point division, which equals ``round(sum / 9)``."""
    total = _sum3x3(_pad_reflect101(v.float())).to(torch.int32)
    return ((total + 4) * 7282) >> 16


def equalize_hist(v: torch.Tensor) -> torch.Tensor:
    """OpenCV ``equalizeHist`` per image of uint8-valued int64 [N,H,W].

    With ``h`` the 256-bin histogram and ``i0`` the lowest value present: ``lut[i0] = 0`` and
    ``lut[i] = round_half_even(float32(sum h[i0+1..i]) * float32(255 / (total - h[i0])))`` above it;
    an image of a single value is returned unchanged.
    """
    n = v.shape[0]
    flat = v.reshape(n, -1)
    total = flat.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.int64, device=v.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    present = hist > 0
    first = torch.argmax(present.to(torch.int8), dim=1)
    first_count = hist.gather(1, first[:, None])[:, 0]
    bins = torch.arange(256, device=v.device)[None, :]
    above = torch.where(bins > first[:, None], hist, 0)
    cum = torch.cumsum(above, dim=1)
    denom = (total - first_count).clamp(min=1).to(torch.float32)
    scale = torch.tensor(255.0, dtype=torch.float32, device=v.device) / denom
    lut = torch.round(cum.to(torch.float32) * scale[:, None]).clamp(0, 255).to(torch.int64)
    out = lut.gather(1, flat).reshape(v.shape)
    constant = (first_count == total)[:, None, None]
    return torch.where(constant, v, out)


def filter2d_uint8(v: torch.Tensor, kernel: list[list[int]]) -> torch.Tensor:
    """OpenCV ``filter2D(v, CV_8U, kernel)`` for an integer 3x3 kernel on uint8-valued [N,H,W]:
    correlation, reflect-101 border, saturated to 0..255 (sums are integers, exact in float32)."""
    p = _pad_reflect101(v.float())
    h, w = v.shape[1:]
    total = sum(k * p[:, r : r + h, c : c + w] for r, row in enumerate(kernel) for c, k in enumerate(row) if k)
    return total.clamp(0, 255).to(torch.int64)


_SPATTER_KERNEL = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]


def water_mask(liquid: np.ndarray, device: torch.device) -> torch.Tensor:
    """The water branch's unnormalised mask ``L8 * D`` (float32 [N,H,W]).

    ``L8 = uint8(255 L)`` (values past 255 wrap modulo 256, as numpy's cast does on x86); ``D``:
    Canny(L8, 50, 150) edges, distance to them (capped at 20), 3x3 box blur truncated to uint8,
    histogram equalisation, the emboss kernel ``[[-2,-1,0],[-1,1,1],[0,1,2]]`` (saturated to uint8)
    and a second 3x3 box blur.
    """
    l8 = torch.from_numpy(np.floor(liquid * 255).astype(np.int64) % 256).to(device)
    edges = canny(l8, 50, 150)
    dist = box3_float(chamfer_distance(edges, 20.0)).to(torch.int64)
    dist = box3_uint8(filter2d_uint8(equalize_hist(dist), _SPATTER_KERNEL)).to(torch.float32)
    return l8.to(torch.float32) * dist


@register_corruption("spatter", group="weather", common=False)
def spatter(images: torch.Tensor, params: tuple, ctx: CorruptionContext) -> torch.Tensor:
    """Spatter: water drops (modes 0) or mud (mode 1) from a smoothed, thresholded noise layer.

    Per image ``L ~ N(loc, scale)`` (HxW), Gaussian-smoothed with ``sigma`` (scipy, ``mode='nearest'``,
    truncate 4, as skimage's ``gaussian``), values below ``threshold`` set to 0. With ``p = x/255``
    (float32) and intensity ``k``:

    - water: ``M = k * W / max(W)`` with ``W`` = :func:`water_mask`; ``out = 255 clip(p + M * c, 0, 1)``
      with ``c = (175, 238, 238)/255``. An image whose ``W`` is all zero is black, as the reference's
      0/0 NaN becomes 0 in its ``np.uint8``.
    - mud: ``m = gauss(1[L > threshold], k)`` (float32), zeroed below 0.8;
      ``out = 255 clip(p (1 - m) + m c, 0, 1)`` with ``c = (63, 42, 20)/255``.

    Parity: against the reference functions run with OpenCV 5.0 / scikit-image 0.26 on the same noise
    layers, the output bytes were identical (100 CIFAR and 12 ImageNet-sized images, all 5
    severities). OpenCV builds without IPP compute distanceTransform in 16-bit fixed point instead of
    float32; their distances differ from these by up to 1e-4, which may move a blurred distance across
    an integer and change one grey level.
    """
    loc, scale, sigma, threshold, intensity, mode = params
    n, h, w, _ = images.shape
    liquid = np.empty((n, h, w))
    for i, rng in enumerate(ctx.rngs):
        liquid[i] = rng.normal(loc, scale, size=(h, w))
    liquid = ndi.gaussian_filter(liquid, sigma=(0, sigma, sigma), mode="nearest", truncate=4.0)
    liquid[liquid < threshold] = 0
    p = images.float() / 255.0
    if mode == 0:
        mask = water_mask(liquid, images.device)
        peak = mask.amax(dim=(1, 2), keepdim=True)
        mask = (mask / peak) * intensity
        colour = torch.tensor(WATER_RGB, dtype=torch.float64, device=images.device).div(255.0).float()
        out = torch.clamp(p + mask[..., None] * colour, 0, 1) * 255
        return torch.where((peak > 0)[..., None], out, torch.zeros_like(out))
    blob = (liquid > threshold).astype(np.float32)
    blob = ndi.gaussian_filter(blob, sigma=(0, intensity, intensity), mode="nearest", truncate=4.0, output=np.float32)
    blob[blob < 0.8] = 0
    m = torch.from_numpy(blob).to(images.device)[..., None]
    colour = torch.tensor(MUD_RGB, dtype=torch.float64, device=images.device).div(255.0).float()
    return torch.clamp(p * (1 - m) + colour * m, 0, 1) * 255
