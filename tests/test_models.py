"""Model zoo: smoothing math, blur sizes, families (shapes, parameter counts), MC dropout, model table."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from smoothbench.errors import UserError
from smoothbench.models.base import mc_sampling
from smoothbench.models.layers import MCDropout, Smoothing, _fmix32_, keyed_keep_mask, make_blur, mc_row_keys
from smoothbench.models.registry import create_model, list_models
from smoothbench.models.table import model_rows

TAU = 10.0


def t(v: float) -> float:
    """ReLU(τ·tanh(v/τ)), by hand."""
    return max(0.0, TAU * math.tanh(v / TAU))


# ---------------------------------------------------------------------------------------------- smoothing math
def test_tanh_blur_box2_pad1_matches_hand_computation():
    a, b, c, d = 1.0, -2.0, 30.0, 4.0
    x = torch.tensor([[[[a, b], [c, d]]]])
    y = Smoothing("tanh-blur", "box2-pad1", TAU)(x)[0, 0]
    ta, tb, tc, td = t(a), t(b), t(c), t(d)
    expected = torch.tensor([
        [ta / 4, (ta + tb) / 4, tb / 4],
        [(ta + tc) / 4, (ta + tb + tc + td) / 4, (tb + td) / 4],
        [tc / 4, (tc + td) / 4, td / 4],
    ])
    assert y.shape == (3, 3)
    torch.testing.assert_close(y, expected)
    assert tb == 0.0 and t(c) < 10.0 < c  # ReLU zeroes negatives, tanh clips at τ


def test_tanh_clips_at_tau_and_relu6_clamps():
    big = torch.full((1, 2, 4, 4), 1e4)
    assert torch.allclose(Smoothing("tanh-blur", "box2-same", TAU)(big), torch.full_like(big, TAU))
    assert torch.allclose(Smoothing("tanh-blur", "box2-same", 2.0)(big), torch.full_like(big, 2.0))
    x = torch.tensor([[[[-3.0, 2.0], [9.0, 5.0]]]])
    y = Smoothing("relu6-blur", "box2-pad1", TAU)(x)[0, 0]
    assert y[1, 1].item() == pytest.approx((0 + 2 + 6 + 5) / 4)
    assert y[0, 0].item() == 0.0
    y = Smoothing("blur", "box2-pad1", TAU)(x)[0, 0]  # blur only: negatives and large values pass
    assert y[1, 1].item() == pytest.approx((-3 + 2 + 9 + 5) / 4)


@pytest.mark.parametrize("kind, grow", [("box2-pad1", 1), ("box2-same", 0), ("binomial3", 0)])
def test_blur_output_sizes(kind, grow):
    for h, w in [(1, 1), (5, 7), (32, 32)]:
        assert make_blur(kind)(torch.randn(2, 3, h, w)).shape == (2, 3, h + grow, w + grow)


def test_box2_pad1_equals_the_paper_avgpool_forward_and_backward():
    """box2-pad1 is computed as a depthwise conv; it must stay the paper's AvgPool2d(2, 1, 1)."""
    torch.manual_seed(0)
    blur, pool = make_blur("box2-pad1"), nn.AvgPool2d(2, stride=1, padding=1)
    assert list(blur.parameters()) == [] and blur.state_dict() == {}
    for shape, channels_last in (((3, 5, 7, 6), False), ((2, 16, 9, 9), True)):
        x = torch.randn(shape)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
        upstream = torch.randn(shape[0], shape[1], shape[2] + 1, shape[3] + 1)
        (blur(ours) * upstream).sum().backward()
        (pool(ref) * upstream).sum().backward()
        torch.testing.assert_close(blur(x), pool(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.grad, ref.grad, rtol=0, atol=1e-6)
    unbatched = torch.randn(4, 5, 6)
    torch.testing.assert_close(blur(unbatched), pool(unbatched), rtol=0, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert blur(torch.randn(1, 4, 6, 6)).dtype == torch.bfloat16


def test_box2_same_replicates_the_border():
    y = make_blur("box2-same")(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))[0, 0]
    torch.testing.assert_close(y, torch.tensor([[2.5, 3.0], [3.5, 4.0]]))


def test_binomial3_kernel_is_a_fixed_buffer():
    impulse = torch.zeros(1, 2, 5, 5)
    impulse[:, :, 2, 2] = 16.0
    y = make_blur("binomial3")(impulse)
    torch.testing.assert_close(y[0, 1, 1:4, 1:4], torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]))
    assert y.sum().item() == pytest.approx(32.0)
    const = torch.full((1, 3, 4, 6), 7.0)
    torch.testing.assert_close(make_blur("binomial3")(const), const)  # replicate padding keeps the border
    blur = make_blur("binomial3")
    assert list(blur.parameters()) == [] and blur.state_dict() == {}


def test_smoothing_adds_no_parameters_or_keys():
    counts, keys = set(), set()
    for smoothing in ("none", "tanh-blur", "blur", "relu6-blur"):
        for blur in ("box2-pad1", "box2-same", "binomial3"):
            model = create_model("resnet18", smoothing=smoothing, blur=blur, width=4)
            counts.add(model.num_parameters())
            keys.add(tuple(model.state_dict()))
    assert len(counts) == 1 and len(keys) == 1


# ----------------------------------------------------------------------------------------- families and shapes
EXPECTED_ARCHS = {
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "preact_resnet18", "preact_resnet34",
    "preact_resnet50", "preact_resnet101", "preact_resnet152", "vgg11", "vgg13", "vgg16", "vgg19",
    "preact_vgg11", "preact_vgg13", "preact_vgg16", "preact_vgg19", "alexnet", "resnext50_32x4d",
    "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2", "wrn28_10",
}


def test_registry_lists_every_architecture():
    assert set(list_models()) == EXPECTED_ARCHS


def meta_params(arch: str, **kwargs) -> int:
    with torch.device("meta"):
        return create_model(arch, **kwargs).num_parameters()


def test_parameter_counts_of_the_paper_code():
    assert create_model("resnet18").num_parameters() == 11_173_962
    assert meta_params("resnet18", num_classes=1000, stem="imagenet") == 11_689_512
    assert meta_params("alexnet") == 23_467_722
    assert meta_params("wrn28_10") == 36_479_194  # the usual WRN-28-10 count for 10 classes


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                                  "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"])
@pytest.mark.parametrize("method", ["dnn", "mcdo"])
def test_imagenet_resnets_count_like_torchvision(arch, method):
    with torch.device("meta"):
        reference = sum(p.numel() for p in getattr(torchvision.models, arch)(num_classes=1000).parameters())
    assert meta_params(arch, method=method, num_classes=1000, stem="imagenet") == reference


def test_preact_bottleneck_shortcut_bn_only_with_mc_dropout():
    # 4 projection shortcuts (256, 512, 1024, 2048 channels), BN weight + bias each: 2 * 3840 = 7680
    assert meta_params("preact_resnet50", method="mcdo") - meta_params("preact_resnet50") == 7680
    assert meta_params("preact_resnet18", method="mcdo") == meta_params("preact_resnet18")


SMALL = [("resnet18", 4), ("resnet50", 4), ("resnext50_32x4d", 16), ("wide_resnet50_2", 4), ("preact_resnet18", 4),
         ("preact_resnet50", 4), ("vgg11", 8), ("preact_vgg11", 8), ("alexnet", 8), ("wrn28_10", 8)]


@pytest.mark.parametrize("arch, width", SMALL)
@pytest.mark.parametrize("method, smoothing, blur", [("dnn", "none", "box2-pad1"), ("mcdo", "tanh-blur", "box2-pad1")])
def test_small_models_forward(arch, width, method, smoothing, blur):
    torch.manual_seed(0)
    model = create_model(arch, method=method, smoothing=smoothing, blur=blur, width=width, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    n_mc = sum(isinstance(m, MCDropout) for m in model.modules())
    assert (n_mc > 0) == (method == "mcdo")


@pytest.mark.parametrize("arch, width, size", [("resnet18", 4, 64), ("preact_resnet18", 4, 64), ("alexnet", 8, 80)])
def test_imagenet_stem_forward(arch, width, size):
    model = create_model(arch, stem="imagenet", smoothing="tanh-blur", width=width, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 5)


def stage_sizes(model: nn.Module, names: list[str], size: int = 32) -> list[int]:
    sizes = []
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for n in names]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    for h in hooks:
        h.remove()
    return sizes


def test_box2_pad1_grows_resnet18_maps_like_the_paper_code():
    smooth = ["smooth1", "smooth2", "smooth3", "smooth4"]
    assert stage_sizes(create_model("resnet18", width=4), smooth) == [32, 16, 8, 4]
    assert stage_sizes(create_model("resnet18", width=4, smoothing="tanh-blur"), smooth) == [33, 18, 10, 6]
    for blur in ("box2-same", "binomial3"):
        assert stage_sizes(create_model("resnet18", width=4, smoothing="tanh-blur", blur=blur), smooth) == [32, 16, 8, 4]


def test_smoothing_slots_per_family():
    def slots(arch, **kw):
        model = create_model(arch, smoothing="tanh-blur", **kw)
        return sorted(n for n, m in model.named_modules() if isinstance(m, Smoothing))

    assert slots("resnet18", width=4) == ["smooth1.0", "smooth2.0", "smooth3.0", "smooth4.0"]
    assert slots("preact_resnet18", width=4) == ["smooth1.0", "smooth2.0", "smooth3.0"]
    assert slots("vgg11", width=8) == [f"smooth{i}.0" for i in range(5)]
    assert slots("alexnet", width=8) == ["smooth0.0", "smooth1.0", "smooth2.0"]
    assert slots("wrn28_10", width=8) == ["smooth1.0", "smooth2.0", "smooth3.0"]


def test_width_scales_channels():
    model = create_model("resnet18", width=16)
    assert model.layer0[0].out_channels == 16 and model.classifier[0].dense.in_features == 128
    vgg = create_model("vgg16", width=8)
    assert vgg.layer0[0].conv.out_channels == 8 and vgg.classifier[2].dense1.in_features == 49 * 64
    assert vgg.classifier[2].dense1.out_features == 512
    wrn = create_model("wrn28_10", width=8)
    assert wrn.layer1[0].conv1.out_channels == 8 and wrn.classifier[0].dense.in_features == 32
    with pytest.raises(UserError, match="width"):
        create_model("resnext50_32x4d", width=4)


def test_mlp_head_dropout_respects_eval():
    model = create_model("vgg11", width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


# ---------------------------------------------------------------------------------------------------- MC dropout
def test_mcdo_eval_without_mc_equals_the_deterministic_model():
    torch.manual_seed(0)
    mcdo = create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=4).eval()
    dnn = create_model("resnet18", method="dnn", smoothing="tanh-blur", width=4).eval()
    dnn.load_state_dict(mcdo.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(mcdo(x), dnn(x), rtol=0, atol=0)
        torch.testing.assert_close(mcdo(x), mcdo(x), rtol=0, atol=0)
        mcdo.mc(True)
        assert mcdo.mc_enabled
        assert not torch.allclose(mcdo(x), mcdo(x))  # torch RNG: two different samples
        mcdo.mc(False)
        torch.testing.assert_close(mcdo(x), dnn(x), rtol=0, atol=0)


def test_training_mode_is_ordinary_dropout():
    layer = MCDropout(0.3).train()
    y = layer(torch.ones(100_000))
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.7))
    layer.eval()
    assert torch.equal(layer(torch.ones(10)), torch.ones(10))


def test_batchnorm_state_is_independent_of_mc():
    model = create_model("resnet18", method="mcdo", width=4)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval().mc(True)
    assert not any(bn.training for bn in bns)
    before = [bn.running_mean.clone() for bn in bns]
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(b, bn.running_mean) for b, bn in zip(before, bns))
    model.train()
    assert all(bn.training for bn in bns) and model.mc_enabled
    model.mc(False)
    assert all(bn.training for bn in bns)


def test_keyed_masks_are_reproducible_and_have_rate_p():
    keys = mc_row_keys(7, torch.arange(4), torch.zeros(4, dtype=torch.int64))
    mask = keyed_keep_mask(keys, layer_id=3, numel=25_000, p=0.3)
    assert mask.shape == (4, 25_000)
    assert abs(mask.float().mean().item() - 0.7) < 0.008  # 5 standard errors
    assert torch.equal(mask, keyed_keep_mask(keys, 3, 25_000, 0.3))
    assert torch.equal(mask[2:3], keyed_keep_mask(keys[2:3], 3, 25_000, 0.3))  # batch-independent
    other_layer = keyed_keep_mask(keys, 4, 25_000, 0.3)
    agree = (mask == other_layer).float().mean().item()
    assert abs(agree - (0.7**2 + 0.3**2)) < 0.01  # independent across layers
    assert not torch.equal(mask[0], mask[1])


def test_keyed_masks_do_not_depend_on_the_hashing_block(monkeypatch):
    """CPU-sized blocks (many per call here) and one GPU-sized block give the same mask and dropout output."""
    import smoothbench.models.layers as layers

    keys = mc_row_keys(3, torch.arange(40), torch.arange(40) % 3)
    layer = MCDropout(0.2).eval()
    layer.mc_enabled, layer.layer_id, layer.row_keys = True, 5, keys
    x = torch.randn(40, 7, 9, 9)
    outputs = []
    for block in (7 * 81 * 3 + 5, layers._GPU_BLOCK_ELEMENTS):  # 3 rows per block (14 blocks), then one block
        monkeypatch.setattr(layers, "_CPU_BLOCK_ELEMENTS", block)
        with torch.inference_mode():
            outputs.append((keyed_keep_mask(keys, 5, 7 * 81, 0.2), layer(x)))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    assert layers.mask_block_elements(torch.device("cuda")) == layers._GPU_BLOCK_ELEMENTS


def fmix32_python(h: int) -> int:
    """MurmurHash3's fmix32 on unbounded Python ints (the reference for the int64-tensor version)."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) % 2**32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) % 2**32
    return h ^ (h >> 16)


def test_fmix32_matches_python_reference():
    values = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF] + torch.randint(0, 2**32, (200,)).tolist()
    got = _fmix32_(torch.tensor(values, dtype=torch.int64)).tolist()
    assert got == [fmix32_python(v) for v in values]
    assert len(set(got)) == len(set(values))
    # the int32 form (same bits in two's complement), with a length that leaves a non-vectorised tail
    signed = [v - 2**32 if v >= 2**31 else v for v in values + [0xDEADBEEF] * 11]
    got32 = _fmix32_(torch.tensor(signed, dtype=torch.int32)).tolist()
    assert [g % 2**32 for g in got32] == [fmix32_python(v % 2**32) for v in signed]


def keep_mask_python(row_key: int, layer_id: int, numel: int, p: float) -> list[bool]:
    """keyed_keep_mask for one row on Python ints, straight from its docstring (the reference)."""
    sa = fmix32_python((row_key >> 32) ^ fmix32_python(layer_id ^ 0x243F6A88))
    sb = fmix32_python((row_key & 0xFFFFFFFF) ^ fmix32_python(layer_id ^ 0x85A308D3))
    threshold = round(p * 2**32)
    return [fmix32_python(fmix32_python((e * 0x9E3779B1) % 2**32 ^ sa) ^ sb) >= threshold for e in range(numel)]


def test_keyed_keep_mask_matches_python_reference():
    keys = mc_row_keys(5, torch.tensor([0, 1, 99, 123456]), torch.tensor([0, 3, 7, 49]))
    got = keyed_keep_mask(keys, layer_id=6, numel=1000, p=0.3)
    for row, key in enumerate(keys.tolist()):
        assert got[row].tolist() == keep_mask_python(key, 6, 1000, 0.3)
    assert keyed_keep_mask(keys, 6, 10, 0.0).all() and not keyed_keep_mask(keys, 6, 10, 1 - 2**-40).any()


def test_keyed_dropout_applies_the_mask_without_and_with_autograd():
    layer = MCDropout(0.3).eval()
    layer.mc_enabled, layer.layer_id = True, 2
    layer.row_keys = mc_row_keys(1, torch.arange(5), torch.zeros(5, dtype=torch.int64))
    x = torch.randn(5, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    expected = x * keyed_keep_mask(layer.row_keys, 2, 4 * 36, 0.3).view(x.shape) / 0.7
    with torch.inference_mode():
        fast = layer(x)
    torch.testing.assert_close(fast, expected, rtol=1e-6, atol=0)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    leaf = x.clone().requires_grad_()
    layer(leaf).sum().backward()
    torch.testing.assert_close(leaf.grad, (expected != 0).float() / 0.7)


def test_row_keys_mix_seed_image_and_sample():
    keys = mc_row_keys(0, torch.arange(100).repeat(50), torch.arange(50).repeat_interleave(100))
    assert keys.dtype == torch.int64 and (keys >= 0).all()
    assert keys.unique().numel() == 5000
    torch.testing.assert_close(mc_row_keys(0, torch.tensor([3]), torch.tensor([1])), keys[103:104])
    assert mc_row_keys(1, torch.tensor([3]), torch.tensor([1])).item() != keys[103].item()
    assert mc_row_keys(0, torch.tensor([3, 4]), torch.tensor(2)).shape == (2,)  # broadcasting


def test_mc_samples_do_not_depend_on_batch_composition():
    torch.manual_seed(0)
    model = create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=4).eval()
    images = torch.randn(7, 3, 32, 32)
    ids = torch.tensor([11, 12, 13, 5, 14, 15, 16])
    with torch.no_grad():
        with mc_sampling(model, mc_row_keys(42, torch.tensor([5]), torch.tensor([0]))):
            alone = model(images[3:4])
        with mc_sampling(model, mc_row_keys(42, ids, torch.zeros(7, dtype=torch.int64))):
            batch = model(images)
        samples = torch.arange(3).repeat_interleave(7)
        with model.mc_sampling(mc_row_keys(42, ids.repeat(3), samples)):
            repeated = model(images.repeat(3, 1, 1, 1)).view(3, 7, -1)
        with mc_sampling(model, mc_row_keys(42, torch.tensor([5]), torch.tensor([2]))):
            alone_sample2 = model(images[3:4])
        deterministic = model(images[3:4])
    torch.testing.assert_close(batch[3:4], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(repeated[0], batch, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(repeated[2, 3:4], alone_sample2, rtol=1e-5, atol=1e-5)
    # at init the logits hardly move; the masks show in the features: compare layer2's output
    features = []
    model.layer2.register_forward_hook(lambda m, i, o: features.append(o))
    with torch.no_grad():
        with mc_sampling(model, mc_row_keys(42, torch.tensor([5, 5]), torch.tensor([0, 1]))):
            model(images[3:4].repeat(2, 1, 1, 1))
        model(images[3:4])
    two_samples, plain = features[0], features[1]
    assert (two_samples[0] - two_samples[1]).abs().mean() > 0.05 * two_samples.abs().mean()
    assert (two_samples[0] - plain[0]).abs().mean() > 0.05 * plain.abs().mean()
    assert not torch.equal(alone, deterministic)
    assert not model.mc_enabled  # the context manager restored MC off


def test_mc_sampling_restores_state_and_validates_keys():
    model = create_model("vgg11", method="mcdo", width=8).eval().mc(True)
    with mc_sampling(model, mc_row_keys(0, torch.arange(2), torch.zeros(2, dtype=torch.int64))):
        with pytest.raises(ValueError, match="3"):
            model(torch.randn(3, 3, 32, 32))
    assert model.mc_enabled
    assert all(m.row_keys is None for m in model.modules() if isinstance(m, MCDropout))
    with pytest.raises(TypeError, match="1-D int64 tensor"):
        model.set_mc_keys(torch.zeros(2, dtype=torch.int32))


def test_mc_dropout_layers_are_numbered():
    model = create_model("vgg11", method="mcdo", width=8)
    ids = [m.layer_id for m in model.modules() if isinstance(m, MCDropout)]
    assert ids == list(range(8))
    assert {m.p for m in model.modules() if isinstance(m, MCDropout)} == {0.3}
    assert {m.p for m in create_model("alexnet", method="mcdo", width=8).modules() if isinstance(m, MCDropout)} == {0.1}


# ------------------------------------------------------------------------------------------------------- table
def test_model_rows():
    rows = model_rows(num_classes=10, stem="cifar")
    assert len(rows) == len(EXPECTED_ARCHS) * 2 * 4
    assert set(rows[0]) == {"arch", "family", "method", "smoothing", "head", "params"}
    by_key = {(r["arch"], r["method"], r["smoothing"]): r["params"] for r in rows}
    assert by_key[("resnet18", "dnn", "none")] == by_key[("resnet18", "mcdo", "tanh-blur")] == 11_173_962
    assert by_key[("alexnet", "mcdo", "blur")] == 23_467_722
    assert by_key[("preact_resnet50", "mcdo", "none")] - by_key[("preact_resnet50", "dnn", "none")] == 7680
    with pytest.raises(UserError, match="stem"):
        model_rows(stem="tiny")
