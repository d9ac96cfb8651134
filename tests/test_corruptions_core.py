"""Corruption engine core: registry, parameter tables, seeding, noise / blur / digital corruptions and
the shared kernels (checked against scipy, colorsys, numpy's SeedSequence, PIL, hand-derived values
and literal replays of the reference's sequential glass-blur loop and ImageMagick's motion-blur sum)."""

from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image
from scipy import stats

from smoothbench.corruptions import PARAMS, corrupt, imagenet_preprocess, names
from smoothbench.corruptions import kernels
from smoothbench.corruptions.blur import glass_sources
from smoothbench.corruptions.noise import poisson_inverse
from smoothbench.corruptions.rng import LazyGenerators, image_generator, image_generators, seed_words, stable_id
from smoothbench.errors import UserError

MINE = [
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression", "speckle_noise",
    "gaussian_blur", "saturate",
]
RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur", "elastic_transform"}


@pytest.fixture(scope="module")
def cifar(cifar10_test) -> np.ndarray:
    """The first 8 real CIFAR-10 test images, uint8 (8, 32, 32, 3)."""
    return cifar10_test[0][:8].copy()


# ------------------------------------------------------------------------------------------ names, params
def test_names_follow_reference_order_and_subsets():
    common = names()
    assert common == ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                      "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                      "jpeg_compression"]
    assert names("extra") == ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    assert names("all") == common + names("extra")
    assert names("noise") == ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]
    assert names("weather") == ["snow", "frost", "fog", "brightness", "spatter"]
    groups = sum((names(g) for g in ("noise", "blur", "weather", "digital")), [])
    assert sorted(groups) == sorted(names("all"))
    with pytest.raises(UserError, match="subset"):
        names("bogus")


def test_parameter_tables_cover_both_scripts():
    for table in ("cifar", "imagenet"):
        assert set(PARAMS[table]) == set(names("all"))
        assert all(len(v) == 5 for v in PARAMS[table].values())
    # Spot values from make_cifar_c.py / make_imagenet_c.py (peers.md table).
    assert PARAMS["cifar"]["shot_noise"] == (500, 250, 100, 75, 50)
    assert PARAMS["imagenet"]["motion_blur"][4] == (20, 15)
    assert PARAMS["imagenet"]["elastic_transform"][0] == (244 * 2, 244 * 0.7, 244 * 0.1)
    # np.arange(1, 1.06, 0.01) ends at 1.06 through float rounding, as in the reference.
    assert len(np.arange(*PARAMS["cifar"]["zoom_blur"][0])) == 7


def test_generators_depend_only_on_image_index():
    a = image_generators(3, "glass_blur", 2, 0, 6)
    b = image_generators(3, "glass_blur", 2, 4, 2)
    assert a[4].random() == b[0].random()
    assert image_generators(3, "glass_blur", 2, 4, 1)[0].random() != image_generators(4, "glass_blur", 2, 4, 1)[0].random()
    assert image_generators(3, "glass_blur", 2, 4, 1)[0].random() != image_generators(3, "motion_blur", 2, 4, 1)[0].random()
    lazy = LazyGenerators(3, "glass_blur", 2, 0, 6)
    assert len(lazy) == 6 and lazy[-2].random() == image_generators(3, "glass_blur", 2, 4, 1)[0].random()
    assert [g.random() for g in lazy[:2]] == [g.random() for g in image_generators(3, "glass_blur", 2, 0, 2)]
    # chunks of a run share its seed words and give the same generators as the run itself
    part = LazyGenerators(3, "glass_blur", 2, 10, 8).chunk(5, 8)
    assert len(part) == 3 and part[1].random() == image_generators(3, "glass_blur", 2, 16, 1)[0].random()


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1, 2**40 + 3, 2**70])
def test_vectorised_seed_words_equal_numpy_seedsequence(seed):
    indices = np.array([0, 1, 2, 12345, 2**31, 2**32 - 1], dtype=np.uint64)
    words = seed_words(seed, "spatter", 4, indices)
    for i, index in enumerate(indices.tolist()):
        expected = np.random.SeedSequence([seed, stable_id("spatter"), 4, index]).generate_state(4, np.uint64)
        np.testing.assert_array_equal(words[i], expected)
    lazy = LazyGenerators(seed, "spatter", 4, 2**32 - 3, 3)  # the run's last index is 2**32 - 1
    assert lazy[2].integers(2**62) == image_generator(seed, "spatter", 4, 2**32 - 1).integers(2**62)


# ------------------------------------------------------------------------------------------ corrupt() contract
@pytest.mark.parametrize("name", MINE)
@pytest.mark.parametrize("severity", [1, 5])
def test_corruption_contract_on_cifar(cifar, name, severity):
    out = corrupt(cifar, name, severity, seed=0)
    assert out.dtype == np.uint8 and out.shape == cifar.shape
    assert np.abs(out.astype(int) - cifar).mean() > 0.3  # every severity changes the images
    again = corrupt(cifar, name, severity, seed=0, batch_size=3)  # other chunking, same result
    np.testing.assert_array_equal(out, again)
    single = corrupt(cifar[5:6], name, severity, seed=0, start_index=5)
    np.testing.assert_array_equal(out[5], single[0])
    other = corrupt(cifar, name, severity, seed=1)
    if name in RANDOM:
        assert not np.array_equal(out, other)
    else:
        np.testing.assert_array_equal(out, other)


def test_torch_input_gives_torch_output(cifar):
    x = torch.from_numpy(cifar[:2])
    out = corrupt(x, "contrast", 3)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), corrupt(cifar[:2], "contrast", 3))


def test_bad_input_raises_user_error(cifar):
    with pytest.raises(UserError, match="unknown corruption"):
        corrupt(cifar, "blurry", 1)
    for sev in (0, 6, True, 2.0):
        with pytest.raises(UserError, match="severity"):
            corrupt(cifar, "contrast", sev)
    with pytest.raises(UserError, match="uint8"):
        corrupt(cifar.astype(np.float32), "contrast", 1)
    with pytest.raises(UserError, match="shape"):
        corrupt(cifar[0], "contrast", 1)
    with pytest.raises(UserError, match="224x224"):
        corrupt(cifar, "contrast", 1, params="imagenet")
    with pytest.raises(UserError, match="table"):
        corrupt(cifar, "contrast", 1, params="tiny")
    with pytest.raises(UserError, match="device"):
        corrupt(cifar, "contrast", 1, device="tpu")


# ------------------------------------------------------------------------------------------ noise draws
def test_poisson_inverse_is_the_exact_poisson_quantile():
    # The count of u is the smallest k with F(k) > u: scipy's quantile function wherever u is not a CDF value.
    u = (np.arange(4000) + 0.5) / 4000
    for c in (500, 60, 3):
        for level in (0, 1, 77, 200, 255):
            lam = level / 255.0 * c
            counts = poisson_inverse(np.full(u.shape, level, np.uint8), c, u)
            expected = stats.poisson.ppf(u, lam).astype(np.int64)
            np.testing.assert_array_equal(counts, expected, err_msg=f"c={c} v={level}")


def test_poisson_inverse_tails_and_distribution():
    rng = np.random.default_rng(11)
    tails = np.array([1e-18, 1e-9, 1 - 1e-9, 1 - 1e-12])  # far from the guide's start: the binary search
    u = np.concatenate([rng.random(200_000), tails])
    counts = poisson_inverse(np.full(u.shape, 200, np.uint8), 500, u)
    lam = 200 / 255 * 500
    np.testing.assert_array_equal(counts[-4:], stats.poisson.ppf(tails, lam))
    observed = np.bincount(counts[:-4], minlength=int(lam * 2))
    expected = stats.poisson.pmf(np.arange(observed.size), lam) * 200_000
    keep = expected > 20
    chi2 = (((observed[keep] - expected[keep]) ** 2) / expected[keep]).sum()
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-3


def test_shot_and_impulse_draw_one_stream_per_image(cifar):
    seed, sev = 4, 3
    c = PARAMS["cifar"]["shot_noise"][sev - 1]
    out = corrupt(cifar[:3], "shot_noise", sev, seed=seed, start_index=2)
    for i, rng in enumerate(image_generators(seed, "shot_noise", sev, 2, 3)):
        counts = poisson_inverse(cifar[i], c, rng.random(cifar[i].shape))
        np.testing.assert_array_equal(out[i], np.uint8(np.clip(counts / c, 0, 1) * 255))
    amount = PARAMS["cifar"]["impulse_noise"][sev - 1]
    out = corrupt(cifar[:3], "impulse_noise", sev, seed=seed)
    for i, rng in enumerate(image_generators(seed, "impulse_noise", sev, 0, 3)):
        flip, salt = rng.random(cifar[i].shape), rng.random(cifar[i].shape)  # the reference's two draws, in order
        expected = np.where(flip <= amount, np.where(salt <= 0.5, 1.0, 0.0), cifar[i] / 255.0)
        np.testing.assert_array_equal(out[i], np.uint8(expected * 255))


# ------------------------------------------------------------------------------------------ hand-checked values
def test_contrast_and_brightness_hand_values():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[:, :16] = 51  # 0.2
    img[:, 16:] = 153  # 0.6; mean 0.4
    out = corrupt(img, "contrast", 1)  # c = 0.75: 0.4 + (0.2 - 0.4) 0.75 = 0.25 -> 63.75; 0.55 -> 140.25
    assert set(np.unique(out[:, :16])) == {63} and set(np.unique(out[:, 16:])) == {140}
    grey = np.full((1, 32, 32, 3), 100, np.uint8)  # S = 0: V + 0.05 -> (100/255 + 0.05) 255 = 112.75
    assert set(np.unique(corrupt(grey, "brightness", 1))) == {112}
    colour = np.zeros((1, 32, 32, 3), np.uint8)
    colour[...] = (200, 100, 50)  # H = 1/18, S = 0.75, V + 0.3 -> 1: (1, 1 - (2/3) 0.75, 0.25) -> (255, 127.5, 63.75)
    assert tuple(corrupt(colour, "brightness", 5)[0, 7, 9]) == (255, 127, 63)


def test_jpeg_equals_pil_save_and_open(cifar):
    for sev in (1, 5):
        quality = PARAMS["cifar"]["jpeg_compression"][sev - 1]
        out = corrupt(cifar, "jpeg_compression", sev)
        for img, got in zip(cifar, out):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=quality)
            np.testing.assert_array_equal(got, np.asarray(Image.open(buf).convert("RGB")))


def test_pixelate_known_pattern_imagenet():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 240, size=(112, 112, 3))
    offsets = np.array([[0, 2], [4, 6]])  # a 2x2 block holds b, b+2, b+4, b+6: mean b + 3
    img = (np.repeat(np.repeat(blocks, 2, 0), 2, 1) + np.tile(offsets, (112, 112))[..., None]).astype(np.uint8)
    out = corrupt(img[None], "pixelate", 2, params="imagenet")[0]  # 224 -> 112 -> 224 (BOX)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(blocks + 3, 2, 0), 2, 1))


def _literal_motion_blur(img: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's motion-blur sum written out pixel by pixel: taps k_i at the rounded offsets, edge pixels
    repeated outside the image."""
    k = kernels.motion_taps(radius, sigma)
    dx, dy = kernels.motion_offsets(len(k), np.array([angle]))
    h, w = img.shape[:2]
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            for t in range(len(k)):
                out[y, x] += k[t] * img[min(max(y + dy[0, t], 0), h - 1), min(max(x + dx[0, t], 0), w - 1)]
    return out


def test_motion_blur_batched_windows_equal_literal_sum_and_per_image_path(monkeypatch):
    rng = np.random.default_rng(5)
    imgs = rng.random((4, 12, 10, 2))
    angles = np.array([-170.0, -100.0, 3.0, 44.0])  # perturbation, snow and motion-blur ranges: all pad sides
    batched = kernels.motion_blur(torch.from_numpy(imgs), 5, 2.0, torch.from_numpy(angles)).numpy()
    for i in range(4):
        np.testing.assert_allclose(batched[i], _literal_motion_blur(imgs[i], 5, 2.0, angles[i]), rtol=0, atol=1e-12)
    monkeypatch.setattr(kernels, "_MOTION_GATHER_PIXELS", 0)  # the image-by-image path of large images
    per_image = kernels.motion_blur(torch.from_numpy(imgs), 5, 2.0, torch.from_numpy(angles)).numpy()
    np.testing.assert_array_equal(per_image, batched)


def test_motion_blur_of_one_bright_pixel_spreads_along_the_angle():
    x = torch.zeros(3, 15, 15, 1, dtype=torch.float64)
    x[:, 7, 7] = 1.0
    out = kernels.motion_blur(x, 3, 1.0, torch.tensor([0.0, 90.0, 45.0])).numpy()
    w = np.exp(-np.arange(7) ** 2 / 2.0)
    w /= w.sum()  # one-sided Gaussian over 2*ceil(3)+1 = 7 taps
    # Angle 0: out(y, x) reads in(y, x + i), so the light lands left of the pixel with weight w_i.
    np.testing.assert_allclose(out[0, 7, 7::-1, 0][:7], w, atol=1e-12)
    assert np.abs(out[0, 7, 8:]).max() == 0 and np.abs(out[0, :7]).max() == 0
    # Angle 90: reads in(y + i, x) -> upwards.
    np.testing.assert_allclose(out[1, 7::-1, 7, 0][:7], w, atol=1e-12)
    # Angle 45: offsets ceil(i/sqrt(2) - 0.5) = 0,1,1,2,3,4,4 on both axes: taps 1,2 and 5,6 coincide.
    diag = [out[2, 7 - k, 7 - k, 0] for k in range(5)]
    np.testing.assert_allclose(diag, [w[0], w[1] + w[2], w[3], w[4], w[5] + w[6]], atol=1e-12)


def test_imagemagick_8bit_rounding():
    # Q16 keeps round(257 v), the PNG writer floor(q / 257).
    v = torch.tensor([99.999, 99.99, 100.0, 0.2, 254.9995, 300.0])
    assert kernels.imagemagick_to_8bit(v).tolist() == [100, 99, 100, 0, 255, 255]


def test_defocus_kernel_sum_quirk():
    # ImageNet severities 4 and 5: the disk touches its grid, reflect-101 blur makes the sum 1.013 / 1.011.
    assert kernels.disk_kernel(8, 0.5).sum() == pytest.approx(1.013, abs=5e-4)
    assert kernels.disk_kernel(10, 0.5).sum() == pytest.approx(1.011, abs=5e-4)
    assert kernels.disk_kernel(6, 0.5).sum() == pytest.approx(1.0, abs=1e-6)
    grey = np.full((1, 224, 224, 3), 100, np.uint8)
    assert set(np.unique(corrupt(grey, "defocus_blur", 4, params="imagenet"))) == {101}


# ------------------------------------------------------------------------------------------ glass blur loop
def _sequential_glass_pass(img: np.ndarray, shifts: np.ndarray, delta: int) -> np.ndarray:
    """The reference loop, literally: x[h, w] = x[h + dy, w + dx] in descending h, w order."""
    x = img.copy()
    size = x.shape[0]
    for a, h in enumerate(range(size - delta, delta, -1)):
        for b, w in enumerate(range(size - delta, delta, -1)):
            dx, dy = shifts[a, b]
            x[h, w] = x[h + dy, w + dx]
    return x


@pytest.mark.parametrize("delta", [1, 2, 4])
def test_glass_pointer_doubling_equals_sequential_loop(delta):
    rng = np.random.default_rng(delta)
    size, n = 14, 3
    imgs = rng.integers(0, 256, size=(n, size, size, 3))
    shifts = rng.integers(-delta, delta, size=(n, size - 2 * delta, size - 2 * delta, 2))
    src = glass_sources(shifts, size, delta)
    for i in range(n):
        fast = imgs[i].reshape(-1, 3)[src[i]].reshape(size, size, 3)
        np.testing.assert_array_equal(fast, _sequential_glass_pass(imgs[i], shifts[i], delta))


# ------------------------------------------------------------------------------------------ kernels vs scipy
@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "wrap"])
def test_boundary_index_matches_numpy_pad(mode):
    pad_mode = {"nearest": "edge", "reflect": "symmetric", "mirror": "reflect", "wrap": "wrap"}[mode]
    sig = np.arange(5)
    np.testing.assert_array_equal(kernels.boundary_index(np.arange(-12, 17), 5, mode), np.pad(sig, 12, mode=pad_mode))


@pytest.mark.parametrize("sigma,mode,truncate", [(0.4, "nearest", 4.0), (1.5, "reflect", 3.0), (25.0, "reflect", 3.0)])
def test_gaussian_filter_matches_scipy(sigma, mode, truncate):
    x = torch.rand(2, 20, 20, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = kernels.gaussian_filter(x, sigma, mode=mode, truncate=truncate).numpy()
    ref = np.stack([ndi.gaussian_filter(x[i].numpy(), (sigma, sigma, 0), mode=mode, truncate=truncate) for i in range(2)])
    if sigma < 1:  # shifted sums in scipy's order: bit-identical
        np.testing.assert_array_equal(ours, ref)
    np.testing.assert_allclose(ours, ref, atol=1e-12)


@pytest.mark.parametrize("size,zoom", [(32, 1.06), (32, 1.26), (224, 1.11), (224, 1.29)])
def test_clipped_zoom_matches_scipy_zoom(size, zoom):
    img = np.random.default_rng(1).random((size, size, 3)).astype(np.float32)
    ch = int(np.ceil(size / zoom))
    top = (size - ch) // 2
    z = ndi.zoom(img[top : top + ch, top : top + ch], (zoom, zoom, 1), order=1)
    trim = (z.shape[0] - size) // 2
    ours = kernels.clipped_zoom(torch.from_numpy(img)[None], zoom)[0].numpy()
    np.testing.assert_allclose(ours, z[trim : trim + size, trim : trim + size], atol=1e-6)


@pytest.mark.parametrize("size,n", [(32, 3), (224, 1)])
def test_zoom_sum_equals_sum_of_clipped_zooms(size, n):
    x = torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(size))
    zooms = np.arange(1, 1.16, 0.03)
    ref = sum(kernels.clipped_zoom(x, float(z)) for z in zooms)
    torch.testing.assert_close(kernels.zoom_sum(x, zooms), ref, atol=2e-5, rtol=0)


def test_map_coordinates_and_filter2d_match_scipy():
    rng = np.random.default_rng(2)
    img = rng.random((1, 16, 16, 2))
    yc = rng.uniform(-3, 19, (1, 16, 16))
    xc = rng.uniform(-3, 19, (1, 16, 16))
    ours = kernels.map_coordinates_linear(torch.from_numpy(img), yc, xc, "reflect")[0].numpy()
    for c in range(2):
        ref = ndi.map_coordinates(img[0, ..., c], [yc[0], xc[0]], order=1, mode="reflect")
        np.testing.assert_allclose(ours[..., c], ref, atol=1e-12)
    k = np.zeros((7, 7))
    k[2:5, 1:6] = rng.random((3, 5))
    for big in (False, True):  # shifted sums, and the FFT path for many taps
        kk = rng.random((11, 11)) if big else k
        ours = kernels.filter2d(torch.from_numpy(img), kk, "mirror")[0].numpy()
        ref = ndi.correlate(img[0, ..., 0], kk, mode="mirror")
        np.testing.assert_allclose(ours[..., 0], ref, atol=1e-10)
    # ImageNet's largest defocus disk: the padded size 244 is FFT'd at the fast size 250
    disk = kernels.disk_kernel(10, 0.5)
    big_img = rng.random((1, 224, 224, 1))
    ours = kernels.filter2d(torch.from_numpy(big_img), disk, "mirror")[0, ..., 0].numpy()
    np.testing.assert_allclose(ours, ndi.correlate(big_img[0, ..., 0], disk.astype(np.float64), mode="mirror"), atol=1e-12)


def test_hsv_matches_colorsys_and_round_trips():
    rgb = torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rgb[:10, 1] = rgb[:10, 0]  # ties
    rgb[10:20] = rgb[10:20, :1]  # greys
    hsv = kernels.rgb_to_hsv(rgb)
    ref = torch.tensor([colorsys.rgb_to_hsv(*p) for p in rgb.tolist()], dtype=torch.float64)
    torch.testing.assert_close(hsv, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(kernels.hsv_to_rgb(hsv), rgb, atol=1e-12, rtol=0)


def test_warp_affine_identity_and_shift():
    x = torch.rand(1, 10, 10, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    ident = np.array([[1.0, 0, 0], [0, 1, 0]])
    torch.testing.assert_close(kernels.warp_affine_cv2(x, ident[None]), x)
    shift = np.array([[1.0, 0, 2], [0, 1, 0]])  # dst(x) = src(x - 2); left border reflect-101: src(2), src(1)
    out = kernels.warp_affine_cv2(x, shift[None])[0, :, :, 0]
    torch.testing.assert_close(out[:, 2:], x[0, :, :8, 0])
    torch.testing.assert_close(out[:, 0], x[0, :, 2, 0])
    pts = np.float32([[0, 0], [5, 0], [0, 5]])
    np.testing.assert_allclose(kernels.affine_transform_3pts(pts, pts + np.float32([2, 0])), shift, atol=1e-12)


# ------------------------------------------------------------------------------------------ ImageNet table
def test_imagenet_params_on_224_images(cifar):
    imgs = np.stack([imagenet_preprocess(cifar[i]) for i in range(2)])
    assert imgs.shape == (2, 224, 224, 3) and imgs.dtype == np.uint8
    for name, sev in [("glass_blur", 2), ("motion_blur", 5), ("defocus_blur", 5), ("zoom_blur", 5),
                      ("elastic_transform", 1), ("gaussian_noise", 3), ("jpeg_compression", 5)]:
        out = corrupt(imgs, name, sev, params="imagenet", seed=0)
        assert out.shape == imgs.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - imgs).mean() > 0.3, name
        if name in RANDOM:
            np.testing.assert_array_equal(out[1], corrupt(imgs[1:], name, sev, params="imagenet", seed=0, start_index=1)[0])
    with pytest.raises(UserError, match="32x32"):
        corrupt(imgs, "contrast", 1, params="cifar")
