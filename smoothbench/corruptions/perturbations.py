"""CIFAR-10-P perturbation sequences, generated as the reference creation script makes them.

Follows hendrycks/robustness ``ImageNet-P/create_p/make_cifar_p.py`` (commit 8190fe32) for the 10
perturbations that ``cifar-p-eval.py`` evaluates. Frame ``t`` (0-based) of each sequence:

=============== === ============================================================================
name             T  frame t
=============== === ============================================================================
gaussian_noise  31  t=0 clean; else ``uint8(255 clamp(x + 0.02 z, 0, 1))``, z ~ N(0,1) fresh per frame
shot_noise      31  t=0 clean; else ``uint8(255 clip(Poisson(700 x) / 700, 0, 1))`` fresh per frame
motion_blur     21  ImageMagick motion blur radius 6, sigma 1.8, angle (t − 20)·9° (−180..0); no clean frame
zoom_blur       31  running mean of the clean image and PIL bilinear zooms 1 + 0.004 s, s = 1..t
spatter         31  CIFAR-C water spatter (strength 0.6) of a liquid layer that flows down after each frame
brightness      31  skimage HSV: V + (t − 15)·0.015, clipped
translate       16  shift right by t − 7 px (−7..+8), nearest, fill 0; t=7 clean
rotate          31  PIL bilinear rotation by t − 15 degrees, fill 0; t=15 clean
tilt            31  OpenCV perspective warp, both axis angles 0.75 (t − 15)°, focal √(w²+h²)
scale           31  PIL bilinear zoom by (2t + 70)/100 = 0.70..1.30; t=15 clean
=============== === ============================================================================

with ``x`` the image in [0, 1]. Float results become uint8 by truncation, like the reference's
``np.uint8`` / ``Tensor.byte()``. Quirks kept on purpose (see shared reference corruption-notes.md):

- rotate, scale and zoom_blur use torchvision 0.2's affine matrix, centred on (w/2 + 0.5, h/2 + 0.5)
  in PIL coordinates (the centre of pixel 16), and PIL's bilinear sampling: only positions inside
  the image are sampled (their second tap replicates the edge), everything else is 0.
- tilt follows ``cv2.warpPerspective`` (bilinear on a 1/32-pixel grid, black constant border blended
  in, rounding): frame 15 is not clean but a shrink by f/(f+1) about pixel 16.
- spatter reproduces the reference's all-black frames: when a frame's water mask is all zero (no
  liquid left, or no Canny edge) the reference divides 0 by 0 and ``np.uint8(nan)`` gives 0.
- Noise frames are independent draws around the clean frame 0; zoom_blur and spatter are cumulative.

Randomness (gaussian_noise, shot_noise, spatter) comes from one numpy Generator per image:
``PCG64(SeedSequence([seed, perturbation_id(name), 0, image_index]))``, where the ids (100..109) never
meet the corruption ids 0..18 of :mod:`smoothbench.corruptions.rng`. The reference script is unseeded
(and draws gaussian noise from torch), so only distributions, not values, can match the release. Every
image draws the same numbers whatever chunk or frame selection it comes in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import scipy.ndimage as ndi
import torch

from smoothbench.corruptions.kernels import hsv_to_rgb, imagemagick_to_8bit, motion_blur, rgb_to_hsv
from smoothbench.corruptions.weather import WATER_RGB, water_mask
from smoothbench.device import resolve_device
from smoothbench.errors import UserError
from smoothbench.progress import Progress
from smoothbench.schema import PERTURBATIONS

#: The 10 evaluated perturbations (cifar-p-eval.py order) and their frame counts T.
_FRAMES: dict[str, int] = {p.name: p.frames for p in PERTURBATIONS}
_ID_BASE = 100
_SIZE = 32
#: Images processed together; bounds memory (noise draws are 30 frames x 3072 values per image).
_CHUNK = 256
#: Liquid layers per call of weather.water_mask in spatter (its int64 temporaries scale with this).
_MASK_BATCH = 2048

#: fn(x uint8 [n,32,32,3] on the device, selected frames, one Generator per image) -> uint8 [n,len(sel),32,32,3]
_SequenceFn = Callable[[torch.Tensor, list[int], list[np.random.Generator]], torch.Tensor]


def perturbation_names() -> list[str]:
    """The 10 evaluated CIFAR-10-P perturbations, in cifar-p-eval.py order."""
    return list(_FRAMES)


def _check_name(name: str) -> None:
    if name not in _FRAMES:
        raise UserError(f"unknown perturbation {name!r}: choose one of {', '.join(_FRAMES)}")


def frames(name: str) -> int:
    """Number of frames T of perturbation ``name``."""
    _check_name(name)
    return _FRAMES[name]


def perturbation_id(name: str) -> int:
    """Stable integer of a perturbation for seeding: 100 + its position in :func:`perturbation_names`."""
    _check_name(name)
    return _ID_BASE + list(_FRAMES).index(name)


def sequence_generators(seed: int, name: str, start_index: int, n: int) -> list[np.random.Generator]:
    """One Generator per image ``start_index .. start_index + n − 1`` of perturbation ``name``."""
    pid = perturbation_id(name)
    return [
        np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, pid, 0, start_index + i])))
        for i in range(n)
    ]


# ----------------------------------------------------------------------------------------------
# geometry primitives (PIL affine, OpenCV perspective); not in kernels.py, see module docstring
# ----------------------------------------------------------------------------------------------
def tv02_affine_matrix(angle: float, translate: tuple[float, float], scale: float, size: int = _SIZE) -> tuple:
    """torchvision 0.2 ``_get_inverse_affine_matrix`` (no shear) for a ``size``-square PIL image.

    Output position (u, v) reads input ``(a u + b v + c, d u + e v + f)``, in PIL coordinates (pixel
    centres at k + 0.5), with centre ``cx = cy = size/2 + 0.5``, ``R = [[cos r, sin r], [−sin r, cos r]] / s``
    and ``(c, f) = R·(−cx − tx, −cy − ty) + (cx, cy)``. The float operations follow torchvision's order
    (including its ``d = cos² + sin²`` normaliser), so PIL sees the same doubles.
    """
    center = size * 0.5 + 0.5
    rot = math.radians(angle)
    inv_scale = 1.0 / scale
    d = math.cos(rot) * math.cos(rot) + math.sin(rot) * math.sin(rot)
    m = [math.cos(rot), math.sin(rot), 0.0, -math.sin(rot), math.cos(rot), 0.0]
    m = [inv_scale / d * v for v in m]
    tx, ty = translate
    m[2] += m[0] * (-center - tx) + m[1] * (-center - ty)
    m[5] += m[3] * (-center - tx) + m[4] * (-center - ty)
    m[2] += center
    m[5] += center
    return tuple(m)


def pil_affine_bilinear(x: torch.Tensor, matrix: Sequence[float]) -> torch.Tensor:
    """PIL ``Image.transform(size, AFFINE, matrix, BILINEAR)`` of uint8 ``x [N,H,W,C]`` (same matrix for all).

    For output pixel (i, j): ``(xi, yi) = (a (j+.5) + b (i+.5) + c, d (j+.5) + e (i+.5) + f)``; outside
    ``[0, W) x [0, H)`` the pixel is 0. Otherwise, with ``x0 = floor(xi − .5)``, ``dx = xi − .5 − x0``
    (same for y): ``v1 = p[y0c, x0c] + (p[y0c, x1c] − p[y0c, x0c]) dx`` on the clamped row/columns,
    ``v2`` the same on row ``y0 + 1`` (or ``v1`` when that row is outside), ``v = v1 + (v2 − v1) dy``,
    truncated to uint8 (Pillow's ``bilinear_filter32RGB``). Float64 in Pillow's operation order.
    """
    n, h, w, c = x.shape
    a0, a1, a2, a3, a4, a5 = (float(v) for v in matrix)
    us = np.arange(w, dtype=np.float64)[None, :] + 0.5
    vs = np.arange(h, dtype=np.float64)[:, None] + 0.5
    xin = a0 * us + a1 * vs + a2
    yin = a3 * us + a4 * vs + a5
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    xin, yin = xin - 0.5, yin - 0.5
    x0, y0 = np.floor(xin), np.floor(yin)
    dx, dy = xin - x0, yin - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    has_second_row = (y0 + 1 >= 0) & (y0 + 1 < h)

    dev = x.device
    flat = x.reshape(n, h * w, c).to(torch.float64)

    def tap(yy: np.ndarray, xx: np.ndarray) -> torch.Tensor:
        idx = torch.as_tensor((yy * w + xx).reshape(-1), device=dev)
        return flat.index_select(1, idx).reshape(n, h, w, c)

    def field(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, device=dev)[None, :, :, None]

    def row(yy: np.ndarray) -> torch.Tensor:
        left = tap(yy, xa)
        return left + (tap(yy, xb) - left) * field(dx)

    v1 = row(ya)
    v2 = torch.where(field(has_second_row), row(yb), v1)
    v = v1 + (v2 - v1) * field(dy)
    return torch.where(field(inside), v, 0.0).to(torch.uint8)


def tilt_matrix(angle_deg: float, size: int = _SIZE) -> np.ndarray:
    """make_cifar_p.py's tilt homography (3x3, forward: input pixel → output pixel) for both axis angles.

    Pinhole model: move the image plane to the origin (−w/2, −h/2) at z = 1, rotate about y then x by
    the angle, push it to depth f = √(w² + h²) and project with focal length f about (w/2, h/2).
    """
    w = h = size
    phi = theta = np.deg2rad(angle_deg)
    f = np.sqrt(w**2 + h**2)
    to_plane = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rot_x = np.array(
        [[1, 0, 0, 0], [0, np.cos(theta), -np.sin(theta), 0], [0, np.sin(theta), np.cos(theta), 0], [0, 0, 0, 1]]
    )
    rot_y = np.array(
        [[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0], [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]]
    )
    push = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    project = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return project @ push @ rot_x @ rot_y @ to_plane


def _invert3x3_cv(m: np.ndarray) -> np.ndarray:
    """OpenCV ``invert(DECOMP_LU)`` of a 3x3 float64 matrix: cofactors times 1/det (its closed form for n ≤ 3)."""
    a = m
    det = (
        a[0, 0] * (a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1])
        - a[0, 1] * (a[1, 0] * a[2, 2] - a[1, 2] * a[2, 0])
        + a[0, 2] * (a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0])
    )
    d = 1.0 / det
    return np.array(
        [
            [(a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1]) * d, (a[0, 2] * a[2, 1] - a[0, 1] * a[2, 2]) * d,
             (a[0, 1] * a[1, 2] - a[0, 2] * a[1, 1]) * d],
            [(a[1, 2] * a[2, 0] - a[1, 0] * a[2, 2]) * d, (a[0, 0] * a[2, 2] - a[0, 2] * a[2, 0]) * d,
             (a[0, 2] * a[1, 0] - a[0, 0] * a[1, 2]) * d],
            [(a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]) * d, (a[0, 1] * a[2, 0] - a[0, 0] * a[2, 1]) * d,
             (a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]) * d],
        ]
    )


def warp_perspective_cv2(x: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """``cv2.warpPerspective(img, M, (W, H))`` (INTER_LINEAR, BORDER_CONSTANT 0) of uint8 ``x [N,H,W,C]``.

    OpenCV inverts M; output pixel (i, j) reads source ``(X/Wz, Y/Wz)`` with ``(X, Y, Wz) = M⁻¹ (j, i, 1)``
    (integer pixel centres), rounded half-to-even to a 1/32-pixel grid: ``sx = ⌊q/32⌋``, ``ax = q mod 32``.
    The value is ``(Σ w p + 512) >> 10`` over the 4 neighbours with weights ``(32−ax|ax)(32−ay|ay)``,
    neighbours outside the image reading 0 (OpenCV's 15-bit fixed point reduces to this exactly).
    """
    n, h, w, c = x.shape
    mi = _invert3x3_cv(np.asarray(matrix, dtype=np.float64))
    cols = np.arange(w, dtype=np.float64)[None, :]
    rows = np.arange(h, dtype=np.float64)[:, None]
    x_row = mi[0, 1] * rows + mi[0, 2]
    y_row = mi[1, 1] * rows + mi[1, 2]
    w_row = mi[2, 1] * rows + mi[2, 2]
    wz = w_row + mi[2, 0] * cols
    wz = np.where(wz != 0, 32.0 / np.where(wz != 0, wz, 1.0), 0.0)
    limit = float(np.iinfo(np.int32).max)
    qx = np.rint(np.clip((x_row + mi[0, 0] * cols) * wz, -limit - 1, limit)).astype(np.int64)
    qy = np.rint(np.clip((y_row + mi[1, 0] * cols) * wz, -limit - 1, limit)).astype(np.int64)
    sx, sy = qx >> 5, qy >> 5
    ax, ay = qx & 31, qy & 31

    dev = x.device
    flat = x.reshape(n, h * w, c).to(torch.int32)
    total = torch.zeros((n, h, w, c), dtype=torch.int32, device=dev)
    for oy, wy in ((0, 32 - ay), (1, ay)):
        for ox, wx in ((0, 32 - ax), (1, ax)):
            yy, xx = sy + oy, sx + ox
            valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            idx = torch.as_tensor((np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1)).reshape(-1), device=dev)
            weight = torch.as_tensor(np.where(valid, wx * wy, 0).astype(np.int32), device=dev)[None, :, :, None]
            total += flat.index_select(1, idx).reshape(n, h, w, c) * weight
    return ((total + 512) >> 10).to(torch.uint8)


# ----------------------------------------------------------------------------------------------
# the 10 sequences
# ----------------------------------------------------------------------------------------------
def _to_uint8(v: torch.Tensor) -> torch.Tensor:
    """The reference's ``np.uint8(v)`` for v in [0, 255]: truncation."""
    return v.to(torch.uint8)


def _gaussian_noise(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    t_max = _FRAMES["gaussian_noise"] - 1
    z = np.stack([r.standard_normal((t_max, _SIZE, _SIZE, 3), dtype=np.float32) for r in rngs])
    z = torch.from_numpy(z).to(x.device)
    xf = x.to(torch.float32) / 255  # ToTensor
    out = [x if t == 0 else _to_uint8(torch.clamp(xf + 0.02 * z[:, t - 1], 0, 1) * 255) for t in sel]
    return torch.stack(out, 1)


def _shot_noise(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    t_max = _FRAMES["shot_noise"] - 1
    lam = x.cpu().numpy() / 255.0 * 700
    counts = np.stack([r.poisson(lam[i], size=(t_max, *lam.shape[1:])).astype(np.int32) for i, r in enumerate(rngs)])
    counts = torch.from_numpy(counts).to(x.device)
    out = [x if t == 0 else _to_uint8(255 * torch.clamp(counts[:, t - 1].double() / 700.0, 0, 1)) for t in sel]
    return torch.stack(out, 1)


def _motion_blur(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    xf = x.to(torch.float64) / 255.0
    out = []
    for t in sel:
        angles = torch.full((x.shape[0],), float((t - 20) * 9), dtype=torch.float64)
        out.append(imagemagick_to_8bit(motion_blur(xf, 6, 1.8, angles) * 255.0).to(torch.uint8))
    return torch.stack(out, 1)


def _zoom_blur(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    avg = x.to(torch.float32) / 255
    done = {0: x}
    for i in range(1, max(sel) + 1):
        zoomed = pil_affine_bilinear(x, tv02_affine_matrix(0.0, (0, 0), 1 + 0.004 * i))
        avg = avg + zoomed.to(torch.float32) / 255
        if i in sel:
            done[i] = _to_uint8(avg / (i + 1) * 255)  # ToPILImage: mul(255).byte()
    return torch.stack([done[t] for t in sel], 1)


def _spatter(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    liquid = np.stack([r.normal(size=(_SIZE, _SIZE), loc=0.6, scale=0.265) for r in rngs])
    liquid = ndi.gaussian_filter(liquid, sigma=(0, 1.75, 1.75), mode="nearest", truncate=4.0)  # skimage gaussian
    liquid[liquid < 0.7] = 0
    layers = {}
    for t in range(max(sel) + 1):
        layers[t] = liquid
        # the liquid flows down: np.convolve(column, [0.2, 0.8], 'same') = 0.2 L[r] + 0.8 L[r-1]
        shifted = np.zeros_like(liquid)
        shifted[:, 1:] = liquid[:, :-1]
        liquid = 0.2 * liquid + 0.8 * shifted
    n = x.shape[0]
    # water_mask works per (image, frame) layer: batch several frames per call (few torch calls),
    # at most _MASK_BATCH layers at a time (bounded memory)
    group = max(1, _MASK_BATCH // n)
    parts = [
        water_mask(np.concatenate([layers[t] for t in sel[i : i + group]]), x.device)
        for i in range(0, len(sel), group)
    ]
    mask = torch.cat(parts).reshape(len(sel), n, _SIZE, _SIZE).transpose(0, 1)
    peak = mask.amax(dim=(2, 3), keepdim=True)
    p = (x.to(torch.float32) / 255.0)[:, None]
    colour = torch.tensor(WATER_RGB, dtype=torch.float64, device=x.device).div(255.0).float()
    out = torch.clamp(p + ((mask / peak) * 0.6)[..., None] * colour, 0, 1) * 255
    # 0/0 in the reference: NaN frames, which np.uint8 turns into black
    return torch.where((peak > 0)[..., None], _to_uint8(out), 0).to(torch.uint8)


def _brightness(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    hsv = rgb_to_hsv(x.to(torch.float64) / 255.0)
    # hsv2rgb picks each channel from v, v(1-s), v(1-fs), v(1-(1-f)s): all v times a factor that
    # does not involve v, so v' * hsv2rgb(h, s, 1) is bit-identical and needs one conversion only.
    unit = hsv_to_rgb(torch.cat([hsv[..., :2], torch.ones_like(hsv[..., 2:])], -1))
    out = []
    for t in sel:
        c = (t - 15) * 1.5 / 100.0
        out.append(_to_uint8(torch.clamp(hsv[..., 2:] + c, 0, 1) * unit * 255))
    return torch.stack(out, 1)


def _translate(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    out = []
    for t in sel:
        shift = t - 7  # torchvision affine(translate=(shift, 0)), nearest: an integer shift with fill 0
        frame = torch.zeros_like(x)
        if shift >= 0:
            frame[:, :, shift:] = x[:, :, : _SIZE - shift]
        else:
            frame[:, :, :shift] = x[:, :, -shift:]
        out.append(frame)
    return torch.stack(out, 1)


def _rotate(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    return torch.stack([pil_affine_bilinear(x, tv02_affine_matrix(t - 15, (0, 0), 1.0)) for t in sel], 1)


def _scale(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    return torch.stack([pil_affine_bilinear(x, tv02_affine_matrix(0.0, (0, 0), (t * 2 + 70) / 100.0)) for t in sel], 1)


def _tilt(x: torch.Tensor, sel: list[int], rngs: list[np.random.Generator]) -> torch.Tensor:
    return torch.stack([warp_perspective_cv2(x, tilt_matrix(0.75 * (t - 15))) for t in sel], 1)


_SEQUENCES: dict[str, _SequenceFn] = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "motion_blur": _motion_blur,
    "zoom_blur": _zoom_blur,
    "spatter": _spatter,
    "brightness": _brightness,
    "translate": _translate,
    "rotate": _rotate,
    "tilt": _tilt,
    "scale": _scale,
}


def perturb_sequence(
    images: np.ndarray | torch.Tensor,
    name: str,
    *,
    seed: int = 0,
    start_index: int = 0,
    device: str | torch.device = "cpu",
    frames: Sequence[int] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """CIFAR-10-P sequences of ``name`` for uint8 ``images`` (N, 32, 32, 3): uint8 (N, T, 32, 32, 3).

    ``images[i]`` is dataset image ``start_index + i`` (it picks the image's random generator, so a
    slice of a set gives the same frames as the whole set). ``frames`` selects frame indices (in the
    order given; default all T): the result is then (N, len(frames), 32, 32, 3) and every frame
    equals the same frame of the full sequence. Work runs in chunks of images on ``device``;
    ``progress.advance(n_images, name)`` is called after each chunk.
    """
    _check_name(name)
    arr = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != (_SIZE, _SIZE, 3):
        raise UserError(
            f"perturbation sequences need uint8 images of shape (N, 32, 32, 3), got {arr.dtype} {arr.shape}: "
            "pass CIFAR-sized RGB images (channels last)"
        )
    if seed < 0 or start_index < 0:
        raise UserError(f"seed ({seed}) and start_index ({start_index}) must be >= 0")
    t_total = _FRAMES[name]
    sel = list(range(t_total)) if frames is None else [int(t) for t in frames]
    if not sel or any(t < 0 or t >= t_total for t in sel):
        raise UserError(f"frames {list(frames or [])} out of range for {name}: choose indices in 0..{t_total - 1}")
    dev = resolve_device(device) if isinstance(device, str) else device
    fn = _SEQUENCES[name]
    out = np.empty((arr.shape[0], len(sel), _SIZE, _SIZE, 3), dtype=np.uint8)
    for lo in range(0, arr.shape[0], _CHUNK):
        hi = min(lo + _CHUNK, arr.shape[0])
        rngs = sequence_generators(seed, name, start_index + lo, hi - lo)
        x = torch.from_numpy(np.ascontiguousarray(arr[lo:hi])).to(dev)
        out[lo:hi] = fn(x, sel, rngs).cpu().numpy()
        if progress is not None:
            progress.advance(hi - lo, name)
    return out
