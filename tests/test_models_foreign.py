"""Models from elsewhere: torchvision, timm and the user's builders, with MC dropout and spatial smoothing
plugged in (smoothbench.models.sources, .foreign, .surgery). Everything offline: random weights saved as
state dicts stand in for trained ones."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision

from conftest import assert_one_line_error, run_cli
from smoothbench import metrics
from smoothbench.data import get_dataset
from smoothbench.data.augment import normalize
from smoothbench.data.info import NORMALIZATION
from smoothbench.errors import UserError
from smoothbench.evaluation.ensembles import predict
from smoothbench.models.layers import MCDropout
from smoothbench.models.sources import ModelOptions, _hub_recipe, resolve_model
from smoothbench.models.surgery import plan_smoothing

CPU = torch.device("cpu")
CIFAR = ModelOptions(dataset="cifar10", kwargs=(("num_classes", 10),))


def torchvision_weights(path, name="resnet18", seed=0, **kwargs):
    """A torchvision model with random weights, saved as a plain state dict (as a user would)."""
    torch.manual_seed(seed)
    net = torchvision.models.get_model(name, num_classes=10, **kwargs)
    torch.save(net.state_dict(), path)
    return net.eval()


def reference_summary(net, cifar10_dir, n=64):
    """The metrics of a bare module on the first ``n`` CIFAR-10 test images, computed here by hand."""
    source = get_dataset("cifar10", str(cifar10_dir), "test", subset=n)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATION["cifar10"])
    with torch.no_grad():
        probs = torch.softmax(net(normalize(source.images, mean, std)), -1).numpy()
    return metrics.summarize(probs, source.labels.numpy())


# ----------------------------------------------------------------------------------------------------------
# sources: the same numbers as the bare module, from the CLI
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torchvision", "timm"])
def test_a_saved_state_dict_evaluates_to_the_rows_of_the_module_itself(kind, cifar10_dir, tmp_path):
    weights = tmp_path / "weights.pt"
    if kind == "torchvision":
        net = torchvision_weights(weights)
        ref = "torchvision:resnet18"
    else:
        timm = pytest.importorskip("timm", reason="timm is the optional extra smoothbench[timm]")
        torch.manual_seed(0)
        net = timm.create_model("resnet18", num_classes=10).eval()
        torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, weights)
        ref = "timm:resnet18"
    out = tmp_path / "eval.csv"
    run_cli("eval", ref, "--weights", weights, "--model-kwargs", "num_classes=10", "--dataset", "cifar10",
            "--data-dir", cifar10_dir, "--subset", "64", "--out", out, "--quiet")
    row = pd.read_csv(out).iloc[0]
    want = reference_summary(net, cifar10_dir)
    for metric in ("acc", "top5", "nll", "brier", "ece", "auroc_misclf"):
        assert row[metric] == pytest.approx(want[metric], rel=1e-5, abs=1e-7), metric
    assert row["arch"] == ref and row["method"] == "dnn"
    assert row["preprocess"] == "crop=32 bilinear mean=0.4914,0.4822,0.4465 std=0.2023,0.1994,0.201"


def test_user_builders_from_a_file_and_a_module(tmp_path, monkeypatch):
    (tmp_path / "mine.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        def make(width=8, num_classes=10):
            return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Dropout(0.25), nn.Linear(width, num_classes))
        def broken():
            raise RuntimeError("my builder is broken")
    """))
    options = ModelOptions(dataset="cifar10", kwargs=(("width", 4),), mc_dropout="auto")
    model = resolve_model(f"py:{tmp_path / 'mine.py'}:make", options)
    assert model.spec.num_classes == 10 and model.spec.method == "mcdo" and model.spec.dropout_rate == 0.25
    assert model.net[0].out_channels == 4
    monkeypatch.syspath_prepend(str(tmp_path))
    same = resolve_model("mine:make", options)  # module:function, from PYTHONPATH
    assert same.spec.arch == "py:mine:make"
    with pytest.raises(UserError, match="building py:.*:broken with no arguments failed: RuntimeError: my builder"):
        resolve_model(f"py:{tmp_path / 'mine.py'}:broken", ModelOptions(dataset="cifar10"))


@pytest.mark.parametrize("ref, options, message", [
    ("torchvision:resnet1800", CIFAR, "torchvision has no model 'resnet1800'"),
    ("timm:no_such_net", CIFAR, "timm has no model 'no_such_net'"),
    ("torchvision:resnet18", ModelOptions(kwargs=(("num_classes", 10),)), "give the dataset this model is for"),
    ("torchvision:resnet18", ModelOptions(dataset="cifar10", mc_dropout="auto"), "has no dropout modules"),
    ("torchvision:vit_b_16", ModelOptions(dataset="imagenet", smoothing="tanh-blur"), "is it a CNN"),
])
def test_bad_model_references_are_one_line(ref, options, message):
    if ref.startswith("timm:"):
        pytest.importorskip("timm", reason="timm is the optional extra smoothbench[timm]")
    with pytest.raises(UserError, match=message):
        resolve_model(ref, options)


def test_bad_model_options_are_one_line():
    with pytest.raises(UserError, match=r"mc_dropout is auto or a rate in \(0, 1\), got '2'"):
        ModelOptions(dataset="cifar10", mc_dropout="2")
    with pytest.raises(UserError, match="mc_dropout_where must be one of head, blocks, all"):
        ModelOptions(mc_dropout_where="everywhere")


@pytest.mark.slow
def test_bad_inputs_from_the_command_line(tmp_path, cifar10_dir):
    not_state = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_state)
    evil = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({"conv1.weight": Evil()}, evil)  # a zip torch file whose pickle would call print
    common = ("--model-kwargs", "num_classes=10", "--dataset", "cifar10", "--data-dir", cifar10_dir, "--subset",
              "8", "--quiet")
    cases = [(("torchvision:resnet18", "--weights", not_state), "is not a state dict"),
             (("torchvision:resnet18", "--weights", evil), "loading it would run code"),
             (("torchvision:resnet18@" + str(not_state),), "is not a state dict"),
             (("torchvision:resnet18", "--weights", tmp_path / "absent.pt"), "IMAGENET1K"),
             (("torchvision:resnet18", "--model-kwargs", "num_classes=7"), "predicts 7 classes but cifar10 has 10"),
             (("py:" + str(tmp_path / "none.py") + ":make",), "no builder file")]
    for args, message in cases:
        assert_one_line_error(run_cli("eval", args[0], *common, *args[1:], check=False), message)  # later flags win


def test_timm_without_the_extra_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # as if timm were not installed
    with pytest.raises(UserError, match=r"timm models need the timm package: pip install 'smoothbench\[timm\]'"):
        resolve_model("timm:resnet18", CIFAR)


def test_recipes_come_with_hub_weights_offline():
    """torchvision weights carry their transforms and timm models their data config (no download needed)."""
    recipe = _hub_recipe("torchvision", None, "IMAGENET1K_V1", "resnet18")
    assert (recipe.resize, recipe.crop, recipe.interpolation) == (256, 224, "bilinear")
    assert recipe.mean == (0.485, 0.456, 0.406)
    v2 = _hub_recipe("torchvision", None, "IMAGENET1K_V2", "resnet50")
    assert (v2.resize, v2.crop) == (232, 224)
    timm = pytest.importorskip("timm", reason="timm is the optional extra smoothbench[timm]")
    net = timm.create_model("resnet18")
    recipe = _hub_recipe("timm", net, "pretrained", "resnet18")
    assert (recipe.crop, recipe.interpolation) == (224, "bicubic") and recipe.resize == 235  # floor(224 / 0.95)


def test_class_indices_keep_a_subset_of_the_outputs():
    full = resolve_model("torchvision:resnet18", ModelOptions(dataset="imagenet"))
    subset = resolve_model("torchvision:resnet18", ModelOptions(dataset="imagenet", class_indices=(5, 1, 900)))
    subset.load_state_dict(full.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(subset(x), full(x)[:, [5, 1, 900]])
    assert subset.spec.num_classes == 3


# ----------------------------------------------------------------------------------------------------------
# MC dropout for any model: the guarantees of our own models hold
@pytest.mark.parametrize("name, options", [
    ("vgg11", ModelOptions(dataset="cifar10", kwargs=(("num_classes", 10),), mc_dropout="auto")),
    ("resnet18", ModelOptions(dataset="cifar10", kwargs=(("num_classes", 10),), mc_dropout="0.3",
                              mc_dropout_where="all", cifar_stem=True, smoothing="tanh-blur")),
])
def test_mc_dropout_masks_are_batch_invariant_and_snapshots_equal_separate_runs(name, options):
    from conftest import random_images
    from smoothbench.data import ResidentImages

    model = resolve_model(f"torchvision:{name}", options)
    source = ResidentImages.from_numpy("cifar10", "test", random_images(12), np.arange(12) % 10,
                                       [str(i) for i in range(10)])
    a = predict([model], source, [1, 4], seed=3, batch_size=12, mc_chunk=4, device=CPU)
    b = predict([model], source, [1, 4], seed=3, batch_size=5, mc_chunk=1, device=CPU)
    separate = predict([model], source, [4], seed=3, batch_size=7, device=CPU)
    for k in (1, 4):  # the masks are the same; a large Linear layer may sum in another order per batch size
        np.testing.assert_allclose(a.probs[k], b.probs[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.probs[4], separate.probs[4], rtol=1e-6, atol=1e-7)
    assert not np.allclose(a.probs[1], a.probs[4])  # the samples differ: MC dropout is on
    ids = [m.layer_id for m in model.modules() if isinstance(m, MCDropout)]
    assert ids == list(range(len(ids))) and len(ids) >= 2


def test_functional_dropout_is_caught_or_handled():
    """timm's head dropout is F.dropout in forward_head (not a module): auto moves it into MC dropout; a
    model whose only dropout is functional elsewhere is refused instead of giving identical samples."""
    timm = pytest.importorskip("timm", reason="timm is the optional extra smoothbench[timm]")
    model = resolve_model("timm:resnet18", ModelOptions(dataset="cifar10", kwargs=(("num_classes", 10),
                                                                                  ("drop_rate", 0.2)),
                                                        mc_dropout="auto"))
    assert model.net.drop_rate == 0.0 and model.spec.dropout_rate == 0.2
    assert [i.row()["module"] for i in model.insertions] == ["fc"]
    assert timm is not None


# ----------------------------------------------------------------------------------------------------------
# spatial smoothing for any CNN
def test_auto_placement_on_torchvision_resnets_equals_smoothbenchs_own():
    from smoothbench import create_model

    for depth in (18, 50):
        net = torchvision.models.get_model(f"resnet{depth}")
        plan = plan_smoothing(net, torch.zeros(1, 3, 224, 224))
        ours = create_model(f"resnet{depth}", smoothing="tanh-blur", stem="imagenet", num_classes=1000)
        slots = [name for name, _ in ours.named_children() if name.startswith("smooth")]
        # our slot k follows layer k (ResNet.forward), and holds the channels layer k puts out
        channels = [getattr(ours, f"layer{k}")[-1].bn2.num_features * 1 if depth == 18 else
                    getattr(ours, f"layer{k}")[-1].bn3.num_features for k in range(1, 5)]
        assert [name for name, _, _ in plan] == [f"layer{k}" for k in range(1, len(slots) + 1)]
        assert [c for _, c, _ in plan] == channels


@pytest.mark.parametrize("name, expected", [
    ("vgg11_bn", [("features.2", 64), ("features.6", 128), ("features.13", 256), ("features.20", 512),
                  ("features.27", 512)]),
    ("densenet121", [("features.denseblock1", 256), ("features.denseblock2", 512), ("features.denseblock3", 1024),
                     ("features.norm5", 1024)]),
    ("mobilenet_v2", [("features.1", 16), ("features.3", 24), ("features.6", 32), ("features.13", 96),
                      ("features.18", 1280)]),
    ("mobilenet_v3_small", [("features.1", 16), ("features.3", 24), ("features.8", 48), ("features.12", 576)]),
    ("efficientnet_b0", [("features.1", 16), ("features.2", 24), ("features.3", 40), ("features.5", 112),
                         ("features.8", 1280)]),
    ("convnext_tiny", [("features.1", 96), ("features.3", 192), ("features.5", 384), ("features.7", 768)]),
])
def test_placement_tables_of_common_cnns(name, expected):
    """The stage boundaries found: before every downsampling (VGG: before each max-pool; DenseNet: before each
    transition; ConvNeXt: before each downsampling layer) and before global pooling."""
    plan = plan_smoothing(torchvision.models.get_model(name), torch.zeros(1, 3, 224, 224))
    assert [(n, c) for n, c, _ in plan] == expected


def test_placement_of_a_timm_resnet_and_the_smooth_api():
    import smoothbench

    timm = pytest.importorskip("timm", reason="timm is the optional extra smoothbench[timm]")
    net = timm.create_model("resnet18")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model, table = smoothbench.smooth(net, smoothing="tanh-blur", tau=5.0)
    assert table["module"].tolist() == ["layer1", "layer2", "layer3", "layer4"]
    assert table["channels"].tolist() == [64, 128, 256, 512]
    assert model.state_dict().keys() == before.keys()  # hooks: no new state-dict keys
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        smoothed = model(x)
        plain = timm.create_model("resnet18").eval()
        plain.load_state_dict(before)
        assert not torch.allclose(smoothed, plain(x))  # the layers act
    _, explicit = smoothbench.smooth(timm.create_model("resnet18"), placement=["layer2"])
    assert explicit["module"].tolist() == ["layer2"]


@pytest.mark.slow
def test_train_a_torchvision_model_with_smoothing_and_mc_dropout_and_load_it_back(tmp_path):
    import smoothbench

    out = tmp_path / "run"
    run_cli("train", "--model", "torchvision:resnet18", "--cifar-stem", "--smoothing", "tanh-blur", "--mc-dropout",
            "0.3", "--dataset", "synthetic", "--epochs", "1", "--subset", "100", "--eval-subset", "40",
            "--batch-size", "50", "--out", out, "--quiet")
    model = smoothbench.load(out)
    source = model.spec.source
    assert (model.spec.arch, model.spec.method, model.spec.dropout_rate) == ("torchvision:resnet18", "mcdo", 0.3)
    assert source.cifar_stem and source.smoothing == "tanh-blur" and dict(source.kwargs)["num_classes"] == 10
    assert [i.row()["module"] for i in model.insertions] == ["fc", "layer1", "layer2", "layer3", "layer4"]
    saved = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert model.net.conv1.kernel_size == (3, 3)
    rows = pd.read_csv(out / "train_log.csv")
    assert len(rows) == 1 and rows["train_loss"].notna().all()


@pytest.mark.slow
def test_a_mixed_deep_ensemble_of_our_model_and_a_torchvision_one(trained_synthetic_mcdo, tmp_path):
    out = tmp_path / "eval.csv"
    run_cli("eval", trained_synthetic_mcdo, "torchvision:resnet18", "--cifar-stem", "--model-kwargs", "num_classes=10",
            "--ensembles", "1,2", "--subset", "40", "--out", out, "--quiet")
    rows = pd.read_csv(out)
    assert rows["members"].tolist() == [1, 2] and rows["dataset"].tolist() == ["synthetic"] * 2
    assert rows["arch"].iloc[0] == "resnet18+torchvision:resnet18" and "+" in rows["checkpoint_sha256"].iloc[0]
    assert rows["model"].iloc[0] == f"ensemble({trained_synthetic_mcdo.name}+torchvision:resnet18)"


def test_image_folders_apply_the_models_resize_and_crop(tmp_path, cifar10_test):
    """An ImageNet-style folder through a torchvision model with a 72 px resize and 64 px crop: the same
    probabilities as torchvision's own PIL transforms computed here, and the recipe in the row."""
    from PIL import Image
    from torchvision.transforms import v2

    from smoothbench.data import ImageFolderSource
    from smoothbench.evaluation.members import Members
    from smoothbench.evaluation.scoring import evaluate
    from smoothbench.evaluation.settings import EvalSettings

    images, labels = cifar10_test
    for i in range(6):
        folder = tmp_path / "val" / f"n0{labels[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).resize((96, 80), Image.BILINEAR).save(folder / f"{i}.png")
    source = ImageFolderSource("imagenet", "test", tmp_path / "val", workers=0)
    classes = tuple(range(source.num_classes))
    model = resolve_model("torchvision:resnet18", ModelOptions(dataset="imagenet", resize=72, crop=64,
                                                               class_indices=classes))
    rows, predictions = evaluate(Members([model], ["torchvision:resnet18"]), source,
                                 EvalSettings(batch_size=4, device="cpu").on_device())
    assert rows[0]["preprocess"] == "resize=72 crop=64 bilinear mean=0.485,0.456,0.406 std=0.229,0.224,0.225"
    steps = v2.Compose([v2.Resize(72, antialias=True), v2.CenterCrop(64), v2.PILToTensor(),
                        v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.485, 0.456, 0.406],
                                                                             [0.229, 0.224, 0.225])])
    x = torch.stack([steps(Image.open(path).convert("RGB")) for path, _ in source.samples])
    with torch.no_grad():
        want = torch.softmax(model.net(x)[:, list(classes)], -1).numpy()
    np.testing.assert_allclose(predictions.probs[1], want, rtol=1e-5, atol=1e-6)


def test_imagenet_c_keeps_its_224_px_images_whatever_the_model_resizes(tmp_path):
    from smoothbench.data import ImageFolderSource
    from smoothbench.data.preprocess import Preprocess

    from PIL import Image

    (tmp_path / "fog" / "n0").mkdir(parents=True)
    Image.new("RGB", (224, 224)).save(tmp_path / "fog" / "n0" / "a.png")
    hendrycks = ImageFolderSource("imagenet", "test", tmp_path / "fog", resize=None)
    recipe = Preprocess((0.5,) * 3, (0.2,) * 3, resize=235, crop=224, interpolation="bicubic")
    assert hendrycks.effective(recipe).resize is None and hendrycks.effective(recipe).crop == 224
    paper = ImageFolderSource("imagenet", "test", tmp_path / "fog", resize=256)
    assert paper.effective(recipe).resize == 256
