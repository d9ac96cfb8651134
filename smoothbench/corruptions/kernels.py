"""Shared image primitives of the corruption engine, batched in torch (CPU or GPU).

Every function works on channels-last float tensors ``[N, H, W, C]`` (any C) and reproduces one
operation of the libraries the reference scripts call (ImageMagick, scipy/scikit-image, OpenCV), so
that weather corruptions and perturbation sequences can reuse them:

- :func:`motion_blur`: ImageMagick ``MotionBlurImage`` (one-sided Gaussian along an angle).
- :func:`gaussian_filter`: scipy ``gaussian_filter`` / skimage ``filters.gaussian`` over H and W.
- :func:`filter_matrix`, :func:`apply_filter_matrix`: any 1-D correlation with a scipy boundary mode as
  an exact (n x n) matrix, for kernels wider than the image.
- :func:`disk_kernel`, :func:`filter2d`: the reference's anti-aliased disk and OpenCV ``filter2D``.
- :func:`clipped_zoom`, :func:`zoom_sum`: the reference's centre crop + ``scipy.ndimage.zoom(order=1)``
  + trim, and its sum over several zoom factors (zoom blur); :func:`clipped_zoom_scipy`: the same with
  scipy's float64 arithmetic, bit for bit (snow).
- :func:`warp_affine_cv2`, :func:`affine_transform_3pts`: OpenCV ``getAffineTransform`` + ``warpAffine``
  (bilinear, reflect-101 border).
- :func:`map_coordinates_linear`: scipy ``map_coordinates(order=1, mode='reflect')`` on H, W.
- :func:`rgb_to_hsv`, :func:`hsv_to_rgb`: skimage ``color.rgb2hsv`` / ``hsv2rgb``.
- :func:`unit_float64`: exact float64 ``image / 255`` for the corruptions the reference computes in float64.

Separable filters use shifted, weighted sums of gathered slices (elementwise, so each image's result
is bit-identical whatever the batch size); only kernels with more than ``_MAX_TAPS`` taps fall back
to a matrix product, done image by image for the same reason.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np
import scipy.fft
import torch

_MAX_TAPS = 65
#: Up to this many pixels per image, motion blur on CPU gathers all windows of a tap at once (faster < 64x64).
_MOTION_GATHER_PIXELS = 64 * 64


def unit_float64(x: torch.Tensor) -> torch.Tensor:
    """Exact float64 ``image / 255``, bit-equal to numpy's ``np.array(img) / 255.``.

    ``x``: the uint8 images, or float32 ``x = image / 255`` (whose ``round(255 x)`` recovers them). The
    reference computes most corruptions in float64 and truncates to uint8 at the end, so values that
    land exactly on an integer (flat regions, the max channel in HSV) need the same precision.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float64).div_(255)
    return x.to(torch.float64, copy=True).mul_(255).round_().div_(255)


# ----------------------------------------------------------------------------------------------
# boundary handling (scipy.ndimage mode names)
# ----------------------------------------------------------------------------------------------
def boundary_index(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map integer positions (any range) into ``0..n-1`` with a scipy.ndimage boundary mode.

    ``nearest`` (a a | a b c | c c, OpenCV BORDER_REPLICATE, ImageMagick edge pixels),
    ``reflect`` (b a | a b c | c b, half-sample symmetric), ``mirror`` (c b | a b c | b a, OpenCV
    BORDER_REFLECT_101), ``wrap`` (periodic).
    """
    idx = np.asarray(idx, dtype=np.int64)
    if mode == "nearest":
        return np.clip(idx, 0, n - 1)
    if mode == "wrap":
        return np.mod(idx, n)
    if n == 1:
        return np.zeros_like(idx)
    if mode == "reflect":
        r = np.mod(idx, 2 * n)
        return np.where(r < n, r, 2 * n - 1 - r)
    if mode == "mirror":
        r = np.mod(idx, 2 * n - 2)
        return np.where(r < n, r, 2 * n - 2 - r)
    raise ValueError(f"unknown boundary mode {mode!r}")


# ----------------------------------------------------------------------------------------------
# ImageMagick motion blur
# ----------------------------------------------------------------------------------------------
def motion_taps(radius: float, sigma: float) -> np.ndarray:
    """ImageMagick's one-sided motion-blur weights (float64, length ``2*ceil(radius)+1``).

    Width from ``GetOptimalKernelWidth1D`` for radius > 0: ``w = 2*ceil(radius) + 1``; weights
    ``k_i = exp(-i^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)`` for ``i = 0..w-1``, normalised to sum 1
    (``GetMotionBlurKernel``). A radius beyond ~3 sigma therefore changes nothing visible.
    """
    if radius <= 0 or sigma <= 0:
        raise ValueError("motion blur needs radius > 0 and sigma > 0")
    width = int(2.0 * math.ceil(radius) + 1.0)
    i = np.arange(width, dtype=np.float64)
    k = np.exp(-(i * i) / (2.0 * sigma * sigma)) / (math.sqrt(2.0 * math.pi) * sigma)
    return k / k.sum()


def motion_offsets(width: int, angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image tap offsets ``(dx, dy)``, each ``[N, width]`` int64, as ImageMagick computes them.

    ``point = (width sin a, width cos a)``; tap ``i`` reads pixel
    ``(x + ceil(i point.y / |point| - 0.5), y + ceil(i point.x / |point| - 0.5))``, i.e. ``i`` steps
    along direction ``a`` (degrees, clockwise from +x since y points down), rounded half down.
    """
    a = np.pi * np.asarray(angles_deg, dtype=np.float64) / 180.0
    px = width * np.sin(a)
    py = width * np.cos(a)
    hyp = np.hypot(px, py)[:, None]
    i = np.arange(width, dtype=np.float64)[None, :]
    dx = np.ceil(i * py[:, None] / hyp - 0.5).astype(np.int64)
    dy = np.ceil(i * px[:, None] / hyp - 0.5).astype(np.int64)
    return dx, dy


def pad_edge(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """``x [N,H,W,C]`` padded over H and W by repeating the edge pixels (scipy ``nearest``), contiguous.

    Slice copies with broadcast edges: several times faster than gathering padded rows and columns.
    """
    n, h, w, c = x.shape
    out = x.new_empty(n, top + h + bottom, left + w + right, c)
    mid = out[:, top : top + h]
    mid[:, :, left : left + w] = x
    mid[:, :, :left] = x[:, :, :1]
    mid[:, :, left + w :] = x[:, :, w - 1 :]
    out[:, :top] = mid[:, :1]
    out[:, top + h :] = mid[:, h - 1 :]
    return out


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick ``MagickMotionBlurImage(radius, sigma, angle)`` on ``x [N,H,W,C]``, one angle per image.

    ``out[y, x] = sum_i k_i * in[clamp(y + dy_i), clamp(x + dx_i)]`` with weights :func:`motion_taps`
    and offsets :func:`motion_offsets`; pixels outside the image repeat the edge (ImageMagick's default
    virtual-pixel method). The images, edge-padded as far as the offsets reach, are read at shifted
    windows and summed tap by tap (``acc += k_i * window_i``, the same operation for every pixel, so
    each image's result is bit-identical whatever the batch). Small images: each tap gathers the
    window of every image at once (``index_select`` on a strided view of all windows; per-image Python
    work would dominate at 32 px), as do all images on a GPU (few large kernels); large ones on CPU:
    image by image, windows as views (cache-friendlier). Returns float in the units of ``x`` without
    rounding; pass the result (scaled to 0..255) through :func:`imagemagick_to_8bit` to get what the
    reference reads back from ImageMagick's PNG.
    """
    n, h, w, c = x.shape
    k = motion_taps(radius, sigma).tolist()
    dx, dy = motion_offsets(len(k), angles_deg.detach().cpu().numpy().reshape(n))
    top, left = max(0, -int(dy.min())), max(0, -int(dx.min()))
    padded = pad_edge(x, top, max(0, int(dy.max())), left, max(0, int(dx.max())))
    hp, wp = padded.shape[1], padded.shape[2]
    rows, cols = top + dy, left + dx  # [N, taps]: top-left of each window in the padded image
    out = torch.zeros_like(x)
    if h * w <= _MOTION_GATHER_PIXELS or x.device.type != "cpu":
        # windows[s] = the h x w window whose top-left is flat padded pixel s (a view, no copy).
        count = n * hp * wp - (h - 1) * wp - (w - 1)
        windows = padded.reshape(-1).as_strided((count, h, w, c), (c, wp * c, c, 1))
        starts = np.arange(n)[:, None] * (hp * wp) + rows * wp + cols
        starts_t = torch.as_tensor(starts.T.copy(), device=x.device)  # [taps, N]
        for t, weight in enumerate(k):
            out.add_(windows.index_select(0, starts_t[t]), alpha=weight)
        return out
    rows_l, cols_l = rows.tolist(), cols.tolist()
    for i in range(n):
        acc, img = out[i], padded[i]
        for weight, y0, x0 in zip(k, rows_l[i], cols_l[i]):
            acc.add_(img[y0 : y0 + h, x0 : x0 + w], alpha=weight)
    return out


def imagemagick_to_8bit(v255: torch.Tensor) -> torch.Tensor:
    """8-bit value ImageMagick (Q16) writes for a filtered value ``v255`` on the 0..255 scale.

    Q16 stores ``q = round(257 v)`` (``ClampToQuantum``) and the PNG writer keeps ``floor(q / 257)``:
    so ``floor(v)`` except that values within 0.5/257 below an integer go up. Measured against
    Wand + ImageMagick 6.9.11 Q16: identical on all but ~1e-5 of pixels (see benchmarks/parity_reference.py).
    """
    return torch.floor(torch.floor(v255 * 257.0 + 0.5) / 257.0).clamp_(0, 255)


# ----------------------------------------------------------------------------------------------
# separable filtering (scipy.ndimage semantics)
# ----------------------------------------------------------------------------------------------
def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy's 1-D Gaussian: radius ``int(truncate*sigma + 0.5)``, ``exp(-x^2/(2 sigma^2))`` normalised."""
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * t * t)
    return phi / phi.sum()


def filter_matrix(n: int, weights: np.ndarray, mode: str) -> np.ndarray:
    """The (n x n) matrix A of a centred 1-D correlation with ``weights`` under boundary ``mode``.

    ``out[i] = sum_t w[t] in[map(i + t - r)] = (A @ in)[i]`` with ``r = len(w) // 2``; exact for kernels
    of any width (a kernel wider than the signal reflects several times, as in scipy).
    """
    r = len(weights) // 2
    rows = np.repeat(np.arange(n), len(weights))
    cols = boundary_index(rows + np.tile(np.arange(len(weights)) - r, n), n, mode)
    a = np.zeros((n, n), dtype=np.float64)
    np.add.at(a, (rows, cols), np.tile(np.asarray(weights, dtype=np.float64), n))
    return a


@lru_cache(maxsize=32)
def _filter_matrix_tensor(
    n: int, weights: tuple[float, ...], mode: str, dtype: torch.dtype, device: str
) -> torch.Tensor:
    """:func:`filter_matrix` as a tensor, cached (building it for a 1000-tap kernel costs ~10 ms)."""
    return torch.as_tensor(filter_matrix(n, np.asarray(weights), mode), dtype=dtype, device=device)


def apply_filter_matrix(x: torch.Tensor, a: torch.Tensor, dim: int) -> torch.Tensor:
    """``A @ x`` along ``dim`` of ``x [N, ...]``, one matrix product per image (batch-independent)."""
    xt = x.movedim(dim, 1)
    shape = xt.shape
    flat = xt.reshape(shape[0], shape[1], -1)
    out = torch.stack([a @ flat[i] for i in range(shape[0])])
    return out.reshape(shape).movedim(1, dim)


def correlate1d(x: torch.Tensor, weights: np.ndarray, dim: int, mode: str) -> torch.Tensor:
    """scipy ``correlate1d(x, weights, axis=dim, mode=mode)`` (centred, odd length) for ``x [N, ...]``.

    Up to ``_MAX_TAPS`` taps the sum runs in scipy's order (symmetric kernels: centre first, then
    ``(left + right) * w`` from the outermost pair in), each product and sum rounded separately, so
    float64 inputs give scipy's float64 results bit for bit.
    """
    n = x.shape[dim]
    w = np.asarray(weights, dtype=np.float64)
    if len(w) > _MAX_TAPS:
        return apply_filter_matrix(x, _filter_matrix_tensor(n, tuple(w.tolist()), mode, x.dtype, str(x.device)), dim)
    r = len(w) // 2
    padded = x.index_select(dim, torch.as_tensor(boundary_index(np.arange(-r, n + r), n, mode), device=x.device))

    def shifted(offset: int) -> torch.Tensor:
        return padded.narrow(dim, r + offset, n)

    if np.array_equal(w, w[::-1]):
        out = shifted(0) * float(w[r])
        for j in range(r, 0, -1):
            out += torch.add(shifted(-j), shifted(j)).mul_(float(w[r - j]))
        return out
    out = shifted(-r) * float(w[0])
    for t in range(1, len(w)):
        out += shifted(t - r) * float(w[t])
    return out


def gaussian_filter(x: torch.Tensor, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur over H and W of ``x [N,H,W,C]`` as scipy ``gaussian_filter`` / skimage ``gaussian``.

    Same kernel (:func:`gaussian_weights`), same boundary ``mode`` (skimage's default is ``nearest``,
    truncate 4); a sigma of (almost) 0 is the identity, as in scipy.
    """
    if sigma <= 1e-15:
        return x.clone()
    w = gaussian_weights(sigma, truncate)
    return correlate1d(correlate1d(x, w, 1, mode), w, 2, mode)


# ----------------------------------------------------------------------------------------------
# disk kernel and 2-D correlation (OpenCV semantics)
# ----------------------------------------------------------------------------------------------
def _cv_gaussian_1d(ksize: int, sigma: float) -> np.ndarray:
    """OpenCV ``getGaussianKernel(ksize, sigma, CV_32F)`` for sigma > 0: ``exp(-(i-(k-1)/2)^2 / (2 sigma^2))``
    normalised in float64, then rounded to float32."""
    t = np.arange(ksize, dtype=np.float64) - (ksize - 1) * 0.5
    g = np.exp(-0.5 / (sigma * sigma) * t * t)
    return (g / g.sum()).astype(np.float32)


def _cv_symmetric_pass(a: np.ndarray, k: np.ndarray, axis: int, fuse_centre: bool) -> np.ndarray:
    """One pass of OpenCV's float32 symmetric separable filter with BORDER_REFLECT_101.

    Arithmetic as OpenCV's SIMD code does it (each pair ``left + right`` rounded to float32, then
    fused multiply-adds): the row pass fuses the centre tap into the first pair's product, the column
    pass starts from the centre product and fuses each pair. The products of two float32 are exact in
    float64, so rounding the float64 multiply-add once to float32 emulates a fused multiply-add.
    """
    n = a.shape[axis]
    r = len(k) // 2
    idx = np.arange(n)
    f32, f64 = np.float32, np.float64

    def pair(j: int) -> np.ndarray:
        left = np.take(a, boundary_index(idx - j, n, "mirror"), axis=axis)
        right = np.take(a, boundary_index(idx + j, n, "mirror"), axis=axis)
        return (left + right).astype(f32).astype(f64)

    centre = a.astype(f64) * f64(k[r])
    if fuse_centre:
        s = (pair(1) * f64(k[r - 1])).astype(f32)
        s = (centre + s).astype(f32)
        first = 2
    else:
        s = centre.astype(f32)
        first = 1
    for j in range(first, r + 1):
        s = (s.astype(f64) + pair(j) * f64(k[r - j])).astype(f32)
    return s


@lru_cache(maxsize=64)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's anti-aliased disk (``disk()`` of make_*_c.py), float32 2-D.

    Grid ``L = -8..8`` (or ``-radius..radius`` when radius > 8); ``D = [x^2 + y^2 <= radius^2] / count``
    (float32); then OpenCV ``GaussianBlur(D, (3,3) or (5,5), sigma=alias_blur)`` with its default
    reflect-101 border, emulated to the bit for the 3x3 cases of both tables (1 ulp for 5x5): the
    reference truncates to uint8, so kernel ulps decide whole grey levels in flat regions. Where the
    disk touches the grid edge (ImageNet severities 4 and 5), the reflected border makes the kernel sum
    1.013 / 1.011 instead of 1: the images get brighter, as in the reference.
    """
    if radius <= 8:
        grid, k = np.arange(-8, 9), 3
    else:
        grid, k = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(grid, grid)
    d = np.asarray(xx**2 + yy**2 <= radius**2, dtype=np.float32)
    d /= np.sum(d)
    g = _cv_gaussian_1d(k, alias_blur)
    return _cv_symmetric_pass(_cv_symmetric_pass(d, g, 1, True), g, 0, False)


def filter2d(x: torch.Tensor, kernel: np.ndarray, mode: str = "mirror") -> torch.Tensor:
    """OpenCV ``filter2D(x, -1, kernel)`` over H, W of ``x [N,H,W,C]``: centred 2-D correlation.

    Border ``mode`` as in :func:`boundary_index` (OpenCV's default BORDER_REFLECT_101 is ``mirror``).
    All-zero outer rows/columns of the kernel are dropped first (they add exact zeros). Small
    kernels use shifted weighted sums; large ones an FFT per image on the padded image (equal up to
    float rounding).
    """
    n, h, w, c = x.shape
    kh, kw = kernel.shape
    nz_r = np.flatnonzero(np.any(kernel != 0, axis=1))
    nz_c = np.flatnonzero(np.any(kernel != 0, axis=0))
    r0, r1, c0, c1 = nz_r[0], nz_r[-1] + 1, nz_c[0], nz_c[-1] + 1
    k = kernel[r0:r1, c0:c1].astype(np.float64)
    # Offsets of the cropped kernel's first tap relative to the output pixel.
    oy, ox = r0 - kh // 2, c0 - kw // 2
    rows = torch.as_tensor(boundary_index(np.arange(oy, h + oy + k.shape[0] - 1), h, mode), device=x.device)
    cols = torch.as_tensor(boundary_index(np.arange(ox, w + ox + k.shape[1] - 1), w, mode), device=x.device)
    padded = x.index_select(1, rows).index_select(2, cols)
    if np.count_nonzero(k) <= _MAX_TAPS:
        out = torch.zeros_like(x)
        for a, b in zip(*np.nonzero(k)):
            out.add_(padded[:, a : a + h, b : b + w], alpha=float(k[a, b]))
        return out
    # Correlation = convolution with the flipped kernel, circular over a fast FFT size (2^a 3^b 5^c) at
    # least the padded size: the wrap-around only touches the cropped margin.
    fh, fw = (scipy.fft.next_fast_len(int(v), real=True) for v in padded.shape[1:3])
    kt = torch.zeros(fh, fw, dtype=x.dtype, device=x.device)
    kt[: k.shape[0], : k.shape[1]] = torch.as_tensor(k[::-1, ::-1].copy(), dtype=x.dtype, device=x.device)
    kf = torch.fft.rfft2(kt)
    outs = []
    for i in range(n):
        img = padded[i].permute(2, 0, 1)
        full = torch.fft.irfft2(torch.fft.rfft2(img, s=(fh, fw)) * kf, s=(fh, fw))
        outs.append(full[:, k.shape[0] - 1 : k.shape[0] - 1 + h, k.shape[1] - 1 : k.shape[1] - 1 + w].permute(1, 2, 0))
    return torch.stack(outs)


# ----------------------------------------------------------------------------------------------
# resampling
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _zoom_axis(h: int, zoom: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows ``(i0, i1)`` and weight of ``i1`` for each output row of :func:`clipped_zoom`."""
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    out_n = int(round(ch * zoom))  # scipy.ndimage.zoom output size
    trim = (out_n - h) // 2
    ratio = (ch - 1) / (out_n - 1) if out_n > 1 else 1.0  # scipy zoom, grid_mode=False
    coord = (np.arange(h) + trim) * ratio
    i0 = np.minimum(np.floor(coord).astype(np.int64), ch - 1)
    wt = coord - i0
    i1 = np.minimum(i0 + 1, ch - 1)
    return top + i0, top + i1, wt


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """The reference ``clipped_zoom`` on ``x [N,H,H,C]``: zoom into the centre, keep H x H.

    Crop side ``ch = ceil(H / zoom)`` at ``top = (H - ch) // 2``, ``scipy.ndimage.zoom(order=1)`` to
    ``round(ch * zoom)`` pixels (linear interpolation with ends mapped onto ends: source coordinate
    ``j (ch - 1) / (out - 1)``), then keep ``H`` pixels from ``(out - H) // 2``. Separable, so done as
    two 1-D linear interpolations.
    """
    i0, i1, wt = _zoom_axis(x.shape[1], float(zoom))
    dev, dt = x.device, x.dtype
    i0_t, i1_t = torch.as_tensor(i0, device=dev), torch.as_tensor(i1, device=dev)
    w_t = torch.as_tensor(wt, dtype=dt, device=dev)
    y = torch.lerp(x.index_select(1, i0_t), x.index_select(1, i1_t), w_t[None, :, None, None])
    return torch.lerp(y.index_select(2, i0_t), y.index_select(2, i1_t), w_t[None, None, :, None])


def clipped_zoom_scipy(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """:func:`clipped_zoom` of float64 ``x [N,H,H]`` with scipy's own arithmetic, bit for bit.

    ``scipy.ndimage.zoom(order=1)`` sums the 2x2 neighbours in raster order, each as
    ``(value * wy) * wx``, with weights ``w0 = 1 - (c - floor(c))`` and ``w1 = 1 - w0`` (its spline
    weights sum to exactly 1); the same operations here, batched. Used where the reference thresholds
    the zoomed values, so that ulps cannot move a pixel across the threshold.
    """
    i0, i1, wt = _zoom_axis(x.shape[1], float(zoom))
    dev = x.device
    w0 = 1.0 - wt
    w1 = 1.0 - w0
    i0_t, i1_t = torch.as_tensor(i0, device=dev), torch.as_tensor(i1, device=dev)
    wy0, wy1 = (torch.as_tensor(v, dtype=x.dtype, device=dev)[None, :, None] for v in (w0, w1))
    wx0, wx1 = (torch.as_tensor(v, dtype=x.dtype, device=dev)[None, None, :] for v in (w0, w1))
    top = x.index_select(1, i0_t) * wy0
    bottom = x.index_select(1, i1_t) * wy1
    out = top.index_select(2, i0_t) * wx0 + top.index_select(2, i1_t) * wx1
    return (out + bottom.index_select(2, i0_t) * wx0) + bottom.index_select(2, i1_t) * wx1


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, shape: tuple[int, int], device: str) -> torch.Tensor:
    index = torch.as_tensor(np.stack([rows, cols]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        coo = torch.sparse_coo_tensor(index, torch.as_tensor(vals), shape, check_invariants=True)
        return coo.coalesce().to_sparse_csr().to(device)


def _zoom_taps(h: int, zooms: tuple[float, ...]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per zoom: source indices ``[h, 2]`` and their weights ``[h, 2]`` of each output index."""
    taps = [_zoom_axis(h, z) for z in zooms]
    return [np.stack([i0, i1], 1) for i0, i1, _ in taps], [np.stack([1 - wt, wt], 1) for _, _, wt in taps]


@lru_cache(maxsize=32)
def _zoom_full(h: int, zooms: tuple[float, ...], device: str) -> torch.Tensor:
    """Sparse ``(h*h, h*h)`` operator of ``sum_z clipped_zoom(., z)`` on flattened ``h x h`` images."""
    src, wts = _zoom_taps(h, zooms)
    r = np.arange(h * h).reshape(h, h)
    rows = np.concatenate([np.broadcast_to(r[:, :, None, None], (h, h, 2, 2)).reshape(-1)] * len(zooms))
    cols = np.concatenate([(s[:, None, :, None] * h + s[None, :, None, :]).reshape(-1) for s in src])
    vals = np.concatenate([(w[:, None, :, None] * w[None, :, None, :]).reshape(-1) for w in wts])
    return _csr(rows, cols, vals, (h * h, h * h), device)


#: Output rows per block of the large-image zoom sum: keeps the all-zooms intermediate in cache.
_ZOOM_ROWS = 32


@lru_cache(maxsize=32)
def _zoom_1d(
    h: int, zooms: tuple[float, ...], device: str, dtype: torch.dtype
) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The 1-D zooms as sparse operators: per block of ``_ZOOM_ROWS`` output rows ``r``, the rows ``r`` of
    every zoom stacked ``[A_1[r]; ...; A_Z[r]]`` ``(Z*m, h)``; and ``[A_1 | ... | A_Z]`` ``(h, Z*h)``."""
    src, wts = _zoom_taps(h, zooms)
    blocks = []
    for lo in range(0, h, _ZOOM_ROWS):
        m = min(_ZOOM_ROWS, h - lo)
        local = np.repeat(np.arange(m), 2)
        rows = np.concatenate([z * m + local for z in range(len(zooms))])
        cols = np.concatenate([s[lo : lo + m].reshape(-1) for s in src])
        vals = np.concatenate([w[lo : lo + m].reshape(-1) for w in wts])
        blocks.append(_csr(rows, cols, vals, (len(zooms) * m, h), device).to(dtype))
    out_idx = np.repeat(np.arange(h), 2)
    side = _csr(np.tile(out_idx, len(zooms)), np.concatenate([z * h + s.reshape(-1) for z, s in enumerate(src)]),
                np.concatenate([w.reshape(-1) for w in wts]), (h, len(zooms) * h), device).to(dtype)
    return tuple(blocks), side


def zoom_sum(x: torch.Tensor, zooms: np.ndarray) -> torch.Tensor:
    """``sum_z clipped_zoom(x, z)`` for ``x [N,H,H,C]``, as sparse matrix products.

    Small images (H <= 64): one product with the summed 2-D operator (each output pixel mixes ~10
    input pixels, far cheaper than zoom by zoom). Larger ones: per block of output rows, all zooms along
    H in one product, then along W with the zooms' sum folded into the second product (blocks keep the
    intermediate, Z times the block, in cache; the very same sums as whole images). Timings:
    ``benchmarks/corrupt_throughput.py``. Summation order differs from the reference's float32 running
    sum (~1e-6).
    """
    n, h, w, c = x.shape
    zoom_key = tuple(float(z) for z in zooms)
    if h <= 64:
        flat = x.permute(1, 2, 0, 3).reshape(h * w, n * c)
        return (_zoom_full(h, zoom_key, str(x.device)).to(x.dtype) @ flat).reshape(h, w, n, c).permute(2, 0, 1, 3)
    blocks, side = _zoom_1d(h, zoom_key, str(x.device), x.dtype)
    flat = x.permute(1, 2, 3, 0).reshape(h, w * c * n)
    out = x.new_empty(w, h, c * n)
    for lo, block in zip(range(0, h, _ZOOM_ROWS), blocks):
        m = min(_ZOOM_ROWS, h - lo)
        along_h = block @ flat  # [Z*m, w*c*n]: every zoom of output rows lo..lo+m
        per_zoom = along_h.reshape(len(zooms), m, w, c * n).permute(0, 2, 1, 3).reshape(len(zooms) * w, m * c * n)
        out[:, lo : lo + m] = (side @ per_zoom).reshape(w, m, c * n)
    return out.reshape(w, h, c, n).permute(3, 1, 0, 2)


def affine_transform_3pts(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """OpenCV ``getAffineTransform``: the 2x3 matrix mapping three ``src`` points onto ``dst`` (float64).

    ``src [3, 2]``; ``dst [3, 2]`` or a batch ``[N, 3, 2]`` (then returns ``[N, 2, 3]``).
    """
    a = np.concatenate([np.asarray(src, dtype=np.float64), np.ones((3, 1))], axis=1)  # rows (x, y, 1)
    sol = np.linalg.solve(a, np.asarray(dst, dtype=np.float64))  # a @ sol = dst, sol [.., 3, 2]
    return np.swapaxes(sol, -1, -2)


def warp_affine_cv2(x: torch.Tensor, matrices: np.ndarray, mode: str = "mirror") -> torch.Tensor:
    """OpenCV ``warpAffine(img, M, (W, H), INTER_LINEAR, borderMode)`` for ``x [N,H,W,C]``, one M per image.

    OpenCV inverts M; output pixel ``(x, y)`` takes the bilinear blend at source position
    ``M^-1 (x, y, 1)``, neighbours outside the image read through the border ``mode`` (``mirror`` =
    BORDER_REFLECT_101). This is OpenCV 5 on float images (checked to 2e-6); OpenCV <= 4 rounded the
    position to 1/32 px first, which moves edge pixels by up to ~3 grey levels.
    """
    n, h, w, _ = x.shape
    m = torch.as_tensor(np.asarray(matrices, dtype=np.float64).reshape(n, 2, 3), device=x.device)
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    d = torch.where(det != 0, 1.0 / torch.where(det != 0, det, torch.ones_like(det)), torch.zeros_like(det))
    i00, i11 = m[:, 1, 1] * d, m[:, 0, 0] * d
    i01, i10 = -m[:, 0, 1] * d, -m[:, 1, 0] * d
    b0 = -i00 * m[:, 0, 2] - i01 * m[:, 1, 2]
    b1 = -i10 * m[:, 0, 2] - i11 * m[:, 1, 2]
    xs = torch.arange(w, dtype=torch.float64, device=x.device)[None, None, :]
    ys = torch.arange(h, dtype=torch.float64, device=x.device)[None, :, None]
    e = lambda v: v[:, None, None]  # noqa: E731 (per-image coefficient against the pixel grid)
    sx = e(i00) * xs + e(i01) * ys + e(b0)
    sy = e(i10) * xs + e(i11) * ys + e(b1)
    return map_coordinates_linear(x, sy, sx, mode)


def map_coordinates_linear(x: torch.Tensor, ycoord: torch.Tensor, xcoord: torch.Tensor, mode: str = "reflect") -> torch.Tensor:
    """scipy ``map_coordinates(order=1, mode)`` over H, W of ``x [N,H,W,C]`` (channel coordinate = itself).

    ``ycoord``/``xcoord``: float ``[N,H',W']`` source positions (tensors or arrays). Bilinear blend of
    the floor/ceil neighbours read through the boundary ``mode``: ``reflect`` (half-sample symmetric,
    scipy's default), ``mirror`` (reflect-101) or ``nearest``. Done by torch ``grid_sample``, whose
    reflection padding reflects the coordinate about -0.5 / W-0.5 (``align_corners=False``) or 0 / W-1
    (``True``) and clips it: for linear interpolation that is the same as reading the neighbours
    through the reflected border. Positions pass through x's dtype (~1e-5 px in float32 at 224 px).
    """
    n, h, w, c = x.shape
    if mode not in ("reflect", "mirror", "nearest"):
        raise ValueError(f"unsupported boundary mode {mode!r}")
    corners = mode != "reflect"
    yc = torch.as_tensor(ycoord, device=x.device).to(torch.float64)
    xc = torch.as_tensor(xcoord, device=x.device).to(torch.float64)

    def norm(v: torch.Tensor, size: int) -> torch.Tensor:
        return 2 * v / (size - 1) - 1 if corners else (2 * v + 1) / size - 1

    grid = torch.stack([norm(xc, w), norm(yc, h)], -1).to(x.dtype)
    padding = "border" if mode == "nearest" else "reflection"
    out = torch.nn.functional.grid_sample(x.permute(0, 3, 1, 2), grid, mode="bilinear", padding_mode=padding, align_corners=corners)
    return out.permute(0, 2, 3, 1)


# ----------------------------------------------------------------------------------------------
# colour
# ----------------------------------------------------------------------------------------------
def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage ``color.rgb2hsv`` on ``x [..., 3]`` in [0, 1].

    ``V = max``, ``S = (max - min) / V`` (0 where max = min), ``H = ((G-B)/d, 2 + (B-R)/d, 4 + (R-G)/d
    for max = R, G, B) / 6 mod 1`` with ties resolved as skimage does (blue over green over red), H = 0
    where max = min.
    """
    r, g, b = x.unbind(-1)
    v = torch.maximum(torch.maximum(r, g), b)
    delta = v - torch.minimum(torch.minimum(r, g), b)
    flat = delta == 0
    safe = torch.where(flat, torch.ones_like(delta), delta)
    s = torch.where(flat, torch.zeros_like(delta), delta / torch.where(v == 0, torch.ones_like(v), v))
    h = (g - b) / safe
    h = torch.where(g == v, 2.0 + (b - r) / safe, h)
    h = torch.where(b == v, 4.0 + (r - g) / safe, h)
    h = torch.remainder(h / 6.0, 1.0)
    h = torch.where(flat, torch.zeros_like(h), h)
    return torch.stack([h, s, v], -1)


# Which of (v, p, q, t) is R, G, B in each hue sector 0..5 (skimage hsv2rgb).
_HSV_SECTORS = ((0, 3, 1), (2, 0, 1), (1, 0, 3), (1, 2, 0), (3, 1, 0), (0, 1, 2))


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """skimage ``color.hsv2rgb``: sector ``i = floor(6H) mod 6``, ``f = 6H - floor(6H)``,
    ``p = V(1-S)``, ``q = V(1-fS)``, ``t = V(1-(1-f)S)``; RGB = (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q).
    """
    h, s, v = x.unbind(-1)
    hi = torch.floor(h * 6)
    f = h * 6 - hi
    cands = torch.stack([v, v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)], -1)
    lut = torch.tensor(_HSV_SECTORS, device=x.device)
    sector = hi.long().remainder_(6)  # hi is integer-valued: the same as the float remainder
    return torch.gather(cands, -1, lut.index_select(0, sector.reshape(-1)).reshape(*sector.shape, 3))
