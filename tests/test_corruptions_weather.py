"""Weather corruptions (snow, frost, fog, spatter), their OpenCV-equivalent helpers, and frost textures.

Expected values are hand-derived from the reference algorithms (diamond-square, Canny, chamfer
distance, equalizeHist, the blend formulas) or are properties every output must have.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image

from smoothbench.corruptions import PARAMS, corrupt, imagenet_preprocess
from smoothbench.corruptions import frost as frost_mod
from smoothbench.corruptions import kernels, weather
from smoothbench.corruptions.rng import image_generators
from smoothbench.errors import UserError

WEATHER = ["snow", "frost", "fog", "spatter"]


@pytest.fixture(scope="module")
def cifar(cifar10_test) -> np.ndarray:
    """The first 6 real CIFAR-10 test images, uint8 (6, 32, 32, 3)."""
    return cifar10_test[0][:6].copy()


# ------------------------------------------------------------------------------------------ corrupt() contract
@pytest.mark.parametrize("name", WEATHER)
def test_weather_contract_on_real_cifar(cifar, frost_dir, name):
    changes = []
    for severity in (1, 5):
        out = corrupt(cifar, name, severity, seed=0, frost_dir=str(frost_dir))
        assert out.dtype == np.uint8 and out.shape == cifar.shape
        rebatched = corrupt(cifar, name, severity, seed=0, frost_dir=str(frost_dir), batch_size=4)
        np.testing.assert_array_equal(out, rebatched)
        single = corrupt(cifar[3:5], name, severity, seed=0, start_index=3, frost_dir=str(frost_dir))
        np.testing.assert_array_equal(out[3:5], single)
        assert not np.array_equal(out, corrupt(cifar, name, severity, seed=1, frost_dir=str(frost_dir)))
        changes.append(np.abs(out.astype(int) - cifar).mean())
    # every severity changes the images, severity 5 more than severity 1, and nothing is wiped out
    assert 0.3 < changes[0] < changes[1] < 128


@pytest.mark.parametrize("name", WEATHER)
def test_weather_imagenet_table_on_224_images(cifar, frost_dir, name):
    big = np.stack([imagenet_preprocess(img) for img in cifar[:2]])
    out = corrupt(big, name, 4, params="imagenet", seed=0, frost_dir=str(frost_dir))
    assert out.shape == big.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1:], corrupt(big[1:], name, 4, params="imagenet", seed=0, start_index=1,
                                                   frost_dir=str(frost_dir)))
    assert np.abs(out.astype(int) - big).mean() > 0.3


# ------------------------------------------------------------------------------------------ fog / plasma
def test_plasma_two_pixel_map_by_hand():
    maps = weather.plasma_fractal([np.random.default_rng(7)], 2, 3.0)
    u = np.random.default_rng(7).uniform(-100, 100, 3)  # squares, then the two diamond sets
    centre = 100 * u[0]
    raw = np.array([[0.0, 2 * centre / 4 + 100 * u[1]], [2 * centre / 4 + 100 * u[2], centre]])
    raw -= raw.min()
    np.testing.assert_allclose(maps[0], raw / raw.max(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [32, 256])
def test_plasma_map_properties_and_draw_count(size):
    rngs = [np.random.default_rng(s) for s in (1, 2)]
    maps = weather.plasma_fractal(rngs, size, 2.0)
    assert maps.shape == (2, size, size) and maps.dtype == np.float64
    assert np.allclose(maps.min(axis=(1, 2)), 0) and np.allclose(maps.max(axis=(1, 2)), 1)
    assert not np.array_equal(maps[0], maps[1])
    # each image depends on its own generator only
    np.testing.assert_array_equal(weather.plasma_fractal([np.random.default_rng(2)], size, 2.0)[0], maps[1])
    # per level one (n, n) draw for the squares and two for the diamonds: 3 * (1 + 4 + ... + (size/2)^2)
    expected_draws = sum(3 * (size // step) ** 2 for step in 2 ** np.arange(int(np.log2(size)), 0, -1))
    fresh = np.random.default_rng(1)
    fresh.uniform(size=expected_draws)
    assert rngs[0].random() == fresh.random()
    # a large decay leaves only the coarse levels: far smoother than a small one
    rough = np.abs(np.diff(weather.plasma_fractal([np.random.default_rng(3)], size, 1.2)[0], axis=0)).mean()
    smooth = np.abs(np.diff(weather.plasma_fractal([np.random.default_rng(3)], size, 8.0)[0], axis=0)).mean()
    assert smooth < rough


def test_fog_formula_on_one_image(cifar):
    a, decay = PARAMS["cifar"]["fog"][2]
    out = corrupt(cifar[:1], "fog", 3, seed=5)
    plasma = weather.plasma_fractal(image_generators(5, "fog", 3, 0, 1), 32, decay)[0]
    p = cifar[0] / 255.0
    expected = np.uint8(np.clip((p + a * plasma[..., None]) * p.max() / (p.max() + a), 0, 1) * 255)
    np.testing.assert_array_equal(out[0], expected)


# ------------------------------------------------------------------------------------------ frost
def test_frost_textures_are_loaded_once_per_call(cifar, frost_dir, monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return frost_mod.frost_textures(*args, **kwargs)

    monkeypatch.setattr(weather, "frost_textures", counting)
    out = corrupt(cifar, "frost", 3, seed=2, frost_dir=str(frost_dir), batch_size=2)
    assert len(calls) == 1  # 3 batches, one folder check
    np.testing.assert_array_equal(out, corrupt(cifar, "frost", 3, seed=2, frost_dir=str(frost_dir)))


def test_frost_draws_only_frost1_to_5(frost_dir):
    textures = frost_mod.frost_textures(str(frost_dir), table="cifar")
    assert len(textures) == 6
    picks = {weather.frost_draw(np.random.default_rng(s), textures, 32, 32)[0] for s in range(300)}
    assert picks == {0, 1, 2, 3, 4}


def test_frost_blends_the_drawn_crop(frost_dir):
    black = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    out = corrupt(black, "frost", 2, seed=11, frost_dir=str(frost_dir))
    textures = frost_mod.frost_textures(str(frost_dir), table="cifar")
    weight = PARAMS["cifar"]["frost"][1][1]
    for i, rng in enumerate(image_generators(11, "frost", 2, 0, 3)):
        k, top, left = weather.frost_draw(rng, textures, 32, 32)
        np.testing.assert_array_equal(out[i], np.uint8(weight * textures[k][top : top + 32, left : left + 32]))


def test_cifar_textures_are_cv2_linear_0_2_subsamples(frost_dir):
    full = np.asarray(Image.open(frost_dir / "frost1.png").convert("RGB"))
    small = frost_mod.frost_textures(str(frost_dir), table="cifar")[0]
    # cv2.resize(fx=0.2) samples source position (d + 0.5) * 5 - 0.5 = 5d + 2 exactly: no interpolation
    assert small.shape == (120, 180, 3)
    np.testing.assert_array_equal(small, full[2::5, 2::5].astype(np.float32))
    assert frost_mod.frost_textures(str(frost_dir), table="imagenet")[0].shape == (600, 900, 3)


def test_frost_download_to_cache_and_checksum(frost_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("SMOOTHBENCH_FROST_DIR", raising=False)
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache"))
    got = frost_mod.frost_textures(base_url=frost_dir.as_uri())
    assert sorted(p.name for p in (tmp_path / "cache" / "frost").iterdir()) == sorted(frost_mod.FROST_FILES)
    want = frost_mod.frost_textures(str(frost_dir))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))

    bad_src = tmp_path / "bad"
    bad_src.mkdir()
    for name in frost_mod.FROST_FILES:
        shutil.copyfile(frost_dir / name, bad_src / name)
    data = bytearray((bad_src / "frost3.png").read_bytes())
    data[5000] ^= 0xFF
    (bad_src / "frost3.png").write_bytes(bytes(data))
    monkeypatch.setenv("SMOOTHBENCH_CACHE", str(tmp_path / "cache2"))
    with pytest.raises(UserError, match="frost3.png"):
        frost_mod.frost_textures(base_url=bad_src.as_uri())
    left = sorted(p.name for p in (tmp_path / "cache2" / "frost").iterdir())
    assert left == ["frost1.png", "frost2.png"]  # the bad file (and its temp file) were not kept
    # a tampered file in an explicit folder is refused too
    with pytest.raises(UserError, match="not the reference file"):
        frost_mod.frost_textures(str(bad_src))
    monkeypatch.setenv("SMOOTHBENCH_FROST_DIR", str(tmp_path))
    with pytest.raises(UserError, match="lacks frost1.png"):
        frost_mod.frost_textures()


# ------------------------------------------------------------------------------------------ snow
def test_snow_on_black_image_is_symmetric_with_hand_floor():
    black = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    out = corrupt(black, "snow", 1, seed=3)
    weight = PARAMS["cifar"]["snow"][0][6]
    floor = int(float(np.float32(1 - weight)) * 0.5 * 255)  # q = (1-c) * max(0, 0 * 1.5 + 0.5), float32
    assert out.min() == floor and out.max() > floor + 20
    # base is constant and the flakes are S + rot180(S): the image equals its own 180° rotation
    np.testing.assert_array_equal(out, out[:, ::-1, ::-1])
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


@pytest.mark.parametrize("table,side", [("cifar", 32), ("imagenet", 224)])
def test_snow_zoom_is_scipy_zoom_bit_for_bit(table, side):
    layers = np.random.default_rng(side).normal(0.3, 0.3, (4 if side == 32 else 1, side, side))
    for params in PARAMS[table]["snow"]:
        factor = params[2]
        crop = int(np.ceil(side / factor))
        top = (side - crop) // 2
        zoomed = ndi.zoom(layers[:, top : top + crop, top : top + crop], (1, factor, factor), order=1)
        trim = (zoomed.shape[1] - side) // 2
        expected = zoomed[:, trim : trim + side, trim : trim + side]
        np.testing.assert_array_equal(kernels.clipped_zoom_scipy(torch.from_numpy(layers), factor).numpy(), expected)


# ------------------------------------------------------------------------------------------ spatter
def test_spatter_water_only_brightens_and_mud_pulls_towards_brown(cifar):
    water = corrupt(cifar, "spatter", 2, seed=0).astype(int)
    assert (water >= cifar.astype(int) - 1).all() and (water > cifar).any()
    mud = corrupt(cifar, "spatter", 5, seed=0).astype(int)
    brown = np.array(weather.MUD_RGB)
    changed = (mud != cifar).any(axis=-1)
    assert 0 < changed.mean() < 0.9
    assert (np.abs(mud - brown) <= np.abs(cifar.astype(int) - brown) + 1)[changed].all()


def test_canny_step_edge_by_hand():
    img = torch.zeros(1, 12, 32, dtype=torch.int64)
    img[:, :, 16:] = 200
    edges = weather.canny(img, 50, 150)[0]
    # dx = 4 * 200 at columns 15 and 16; non-maximum suppression keeps the left one (> left, >= right)
    expected = torch.zeros(12, 32, dtype=torch.bool)
    expected[:, 15] = True
    assert torch.equal(edges, expected)
    faint = weather.canny(img // 5, 50, 150)[0]  # magnitude 160 > 150: still an edge
    assert torch.equal(faint, expected)
    assert not weather.canny(img // 8, 50, 150).any()  # magnitude 100: candidate but never strong


def test_chamfer_distance_by_hand():
    edges = torch.zeros(1, 9, 9, dtype=torch.bool)
    edges[0, 4, 4] = True
    d = weather.chamfer_distance(edges, 20.0)[0]
    f = np.float32
    assert d[4, 5] == 1 and d[5, 5] == f(1.4) and d[5, 6] == f(2.1969) and d[4, 6] == 2
    assert d[6, 6] == f(1.4) + f(1.4)  # two diagonal steps beat a knight move plus a step
    assert d[4, 8] == 4 and d[0, 0] == f(1.4) + f(1.4) + f(1.4) + f(1.4)  # accumulated step by step
    assert torch.equal(weather.chamfer_distance(edges, 2.0)[0].amax(), torch.tensor(2.0))
    assert (weather.chamfer_distance(torch.zeros(1, 5, 5, dtype=torch.bool), 20.0) == 20).all()


def _literal_chamfer(edges: np.ndarray, cap: float) -> np.ndarray:
    """The two raster passes pixel by pixel: each pixel takes its 7 neighbours of the two rows before it
    (float32 steps), then the in-row run min(d[j], d[j-1] + 1) (exact), then the mirrored pass."""
    f = np.float32
    steps = {(-2, -1): f(2.1969), (-2, 1): f(2.1969), (-1, -2): f(2.1969), (-1, -1): f(1.4), (-1, 0): f(1.0),
             (-1, 1): f(1.4), (-1, 2): f(2.1969)}
    limit = f(np.ceil(cap) + 3)
    h, w = edges.shape
    d = np.where(edges, f(0), limit).astype(np.float32)
    for rows, cols, sign in ((range(h), range(w), 1), (range(h - 1, -1, -1), range(w - 1, -1, -1), -1)):
        for y in rows:
            for x in cols:
                for (dy, dx), step in steps.items():
                    yy, xx = y + sign * dy, x + sign * dx
                    if 0 <= yy < h and 0 <= xx < w:
                        d[y, x] = min(d[y, x], f(d[yy, xx] + step))
            run = np.inf
            for x in cols:
                run = min(float(d[y, x]), run + 1.0)
                d[y, x] = min(f(run), limit)
    return np.minimum(d, f(cap))


def test_chamfer_distance_equals_literal_two_passes():
    edges = np.random.default_rng(3).random((3, 11, 14)) < 0.04
    edges[2] = False
    edges[2, 0, 13] = True  # a single far corner: long runs in both passes
    ours = weather.chamfer_distance(torch.from_numpy(edges), 5.0).numpy()
    for i in range(3):
        np.testing.assert_array_equal(ours[i], _literal_chamfer(edges[i], 5.0))


def test_equalize_hist_box_and_emboss_by_hand():
    v = torch.tensor([[[0, 0], [1, 2]]])
    # hist 2, 1, 1; scale 255 / (4 - 2) = 127.5; lut = 0, round(127.5) = 128, round(255) = 255
    assert weather.equalize_hist(v).tolist() == [[[0, 0], [128, 255]]]
    assert weather.equalize_hist(torch.full((1, 2, 2), 7)).tolist() == [[[7, 7], [7, 7]]]
    ramp = torch.arange(9).reshape(1, 3, 3)
    # reflect-101 border: the centre window is the whole ramp (sum 36 -> 4); corner (0, 0) sees rows 1 0 1 and
    # columns 1 0 1: 4 3 4 / 1 0 1 / 4 3 4 (sum 24 -> round(2.67) = 3)
    box = weather.box3_uint8(ramp)
    assert box[0, 1, 1] == 4 and box[0, 0, 0] == 3
    assert torch.equal(weather.box3_float(ramp.float())[0, 1, 1], torch.tensor(4.0))
    kernel = [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]
    # centre: -2*0 - 1*1 + 0*2 - 1*3 + 4 + 5 + 0*6 + 7 + 2*8 = 28; on the flipped ramp -20 saturates to 0,
    # on 40 x ramp 1120 saturates to 255
    assert weather.filter2d_uint8(ramp, kernel)[0, 1, 1] == 28
    assert weather.filter2d_uint8(8 - ramp, kernel)[0, 1, 1] == 0
    assert weather.filter2d_uint8(40 * ramp, kernel)[0, 1, 1] == 255
