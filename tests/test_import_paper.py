"""Import of the paper's checkpoints: names, key layout parity against a hand-written reference, refusals.

The checkpoints here are built in the authors' layout: key names written out from reading
``xxxnell/spatial-smoothing`` (``models/resnet.py``, ``preresnet.py``, ``alexnet.py``, ``vggnet.py`` and
their ``*_block.py``), saved as ``{"name", "state_dict" (DataParallel ``module.`` prefix), "optimizer"}``.
The reference forwards are functional re-statements of those files, independent of smoothbench's modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from smoothbench.errors import UserError
from smoothbench.models.import_paper import import_paper_checkpoint, parse_paper_name
from smoothbench.models.store import load, load_model_file

BN_FIELDS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class Weights:
    """An authors'-layout state dict filled with random, well-scaled values."""

    def __init__(self, seed: int) -> None:
        self.sd: dict[str, torch.Tensor] = {}
        self.gen = torch.Generator().manual_seed(seed)

    def conv(self, key: str, cin: int, cout: int, k: int, groups: int = 1) -> None:
        fan_in = cin // groups * k * k
        self.sd[f"{key}.weight"] = torch.randn(cout, cin // groups, k, k, generator=self.gen) * (2 / fan_in) ** 0.5

    def bn(self, key: str, c: int) -> None:
        g = self.gen
        self.sd.update({f"{key}.weight": torch.rand(c, generator=g) + 0.5, f"{key}.bias": torch.randn(c, generator=g) * 0.1,
                        f"{key}.running_mean": torch.randn(c, generator=g) * 0.1,
                        f"{key}.running_var": torch.rand(c, generator=g) + 0.5,
                        f"{key}.num_batches_tracked": torch.tensor(1000)})

    def dense(self, key: str, fin: int, fout: int) -> None:
        self.sd[f"{key}.weight"] = torch.randn(fout, fin, generator=self.gen) * (1 / fin) ** 0.5
        self.sd[f"{key}.bias"] = torch.randn(fout, generator=self.gen) * 0.1


def conv(sd, key, x, stride=1, padding=0):
    return F.conv2d(x, sd[f"{key}.weight"], None, stride, padding)


def bn(sd, key, x):
    return F.batch_norm(x, sd[f"{key}.running_mean"], sd[f"{key}.running_var"], sd[f"{key}.weight"],
                        sd[f"{key}.bias"], False, 0.0, 1e-5)


def smooth(x, tau=10.0):
    """TanhBlurBlock: AvgPool2d(2, 1, 1)(ReLU(τ tanh(x/τ)))."""
    return F.avg_pool2d(F.relu(tau * torch.tanh(x / tau)), 2, 1, 1)


def mlp(sd, key, x):
    x = F.relu(F.linear(torch.flatten(x, 1), sd[f"{key}.dense1.weight"], sd[f"{key}.dense1.bias"]))
    x = F.relu(F.linear(x, sd[f"{key}.dense2.weight"], sd[f"{key}.dense2.bias"]))
    return F.linear(x, sd[f"{key}.dense3.weight"], sd[f"{key}.dense3.bias"])


# ---------------------------------------------------------------------- ResNet-18 (resnet_mcdo_smoothing_18)
def resnet18_weights(num_classes: int, scale: int = 1) -> dict:
    """Full size for ``scale=1``; channels divided by ``scale`` for the cheap tests (import with width 64/scale)."""
    w = Weights(1)
    widths = [c // scale for c in (64, 128, 256, 512)]
    w.conv("layer0.0", 3, widths[0], 3)
    w.bn("layer0.1", widths[0])
    cin = widths[0]
    for s, planes in enumerate(widths, start=1):
        for b in range(2):
            p = f"layer{s}.{b}"
            if b == 0 and s > 1:
                w.conv(f"{p}.shortcut.0", cin, planes, 1)
                w.bn(f"{p}.shortcut.1", planes)
            w.conv(f"{p}.conv1", cin, planes, 3)
            w.bn(f"{p}.bn1", planes)
            w.conv(f"{p}.conv2", planes, planes, 3)
            w.bn(f"{p}.bn2", planes)
            cin = planes
    w.dense("classifier.0.dense", cin, num_classes)
    return w.sd


def resnet18_reference(sd, x, smoothing=True):
    x = F.relu(bn(sd, "layer0.1", conv(sd, "layer0.0", x, 1, 1)))
    for s in range(1, 5):
        for b in range(2):
            p = f"layer{s}.{b}"
            stride = 2 if b == 0 and s > 1 else 1
            skip = bn(sd, f"{p}.shortcut.1", conv(sd, f"{p}.shortcut.0", x, stride)) if f"{p}.shortcut.0.weight" in sd else x
            h = F.relu(bn(sd, f"{p}.bn1", conv(sd, f"{p}.conv1", x, stride, 1)))
            h = bn(sd, f"{p}.bn2", conv(sd, f"{p}.conv2", h, 1, 1))
            x = F.relu(skip + h)
        x = smooth(x) if smoothing else x
    return F.linear(x.mean((2, 3)), sd["classifier.0.dense.weight"], sd["classifier.0.dense.bias"])


# ------------------------------- PreAct ResNet-50 with MC dropout (shortcut BN quirk), narrowed to width 8
def preresnet50_weights(num_classes: int, scale: int) -> dict:
    w = Weights(2)
    widths = [c // scale for c in (64, 128, 256, 512)]
    w.conv("layer0.0", 3, widths[0], 3)
    cin = widths[0]
    for s, (planes, n) in enumerate(zip(widths, [3, 4, 6, 3]), start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            if b == 0:
                w.conv(f"{p}.shortcut.0", cin, planes * 4, 1)
                w.bn(f"{p}.shortcut.1", planes * 4)  # only preresnet_mcdo_block.Bottleneck has it
            w.bn(f"{p}.bn1", cin)
            w.conv(f"{p}.conv1", cin, planes, 1)
            w.bn(f"{p}.bn2", planes)
            w.conv(f"{p}.conv2", planes, planes, 3)
            w.bn(f"{p}.bn3", planes)
            w.conv(f"{p}.conv3", planes, planes * 4, 1)
            cin = planes * 4
    w.bn("classifier.0.bn", cin)
    w.dense("classifier.0.dense", cin, num_classes)
    return w.sd


def preresnet50_reference(sd, x, smoothing):
    x = conv(sd, "layer0.0", x, 1, 1)
    for s, n in enumerate([3, 4, 6, 3], start=1):
        for b in range(n):
            p = f"layer{s}.{b}"
            stride = 2 if b == 0 and s > 1 else 1
            if b == 0:
                x = F.relu(bn(sd, f"{p}.bn1", x))
                skip = bn(sd, f"{p}.shortcut.1", conv(sd, f"{p}.shortcut.0", x, stride))
            else:
                skip, x = x, F.relu(bn(sd, f"{p}.bn1", x))
            h = F.relu(bn(sd, f"{p}.bn2", conv(sd, f"{p}.conv1", x)))
            h = F.relu(bn(sd, f"{p}.bn3", conv(sd, f"{p}.conv2", h, stride, 1)))
            x = skip + conv(sd, f"{p}.conv3", h)
        if smoothing and s < 4:
            x = smooth(x)
    x = F.relu(bn(sd, "classifier.0.bn", x)).mean((2, 3))
    return F.linear(x, sd["classifier.0.dense.weight"], sd["classifier.0.dense.bias"])


# ---------------------------------------------------- AlexNet, CIFAR (alexnet_mcdo_smoothing), narrowed to width 16
def alexnet_weights(num_classes: int, scale: int) -> dict:
    w = Weights(3)
    c1, c2, c3, c4, c5, hidden = (c // scale for c in (64, 192, 384, 256, 256, 4096))
    w.conv("layer0.0.conv", 3, c1, 3)
    w.conv("layer1.1.conv", c1, c2, 5)
    w.conv("layer2.1.conv", c2, c3, 3)
    w.conv("layer2.2.conv", c3, c4, 3)
    w.conv("layer2.3.conv", c4, c5, 3)
    w.dense("classifier.2.dense1", 2 * 2 * c5, hidden)
    w.dense("classifier.2.dense2", hidden, hidden)
    w.dense("classifier.2.dense3", hidden, num_classes)
    return w.sd


def alexnet_reference(sd, x):
    x = smooth(F.relu(conv(sd, "layer0.0.conv", x, 2, 1)))
    x = smooth(F.relu(conv(sd, "layer1.1.conv", F.max_pool2d(x, 2, 2), 1, 2)))
    x = F.max_pool2d(x, 2, 2)
    for i in (1, 2, 3):
        x = F.relu(conv(sd, f"layer2.{i}.conv", x, 1, 1))
    x = F.adaptive_avg_pool2d(F.max_pool2d(smooth(x), 2, 2), 2)
    return mlp(sd, "classifier.2", x)


# --------------------------------------------------------- VGG-16 (vgg_mcdo_smoothing_16), narrowed to width 8
VGG16 = [2, 2, 3, 3, 3]


def vgg16_weights(num_classes: int, scale: int) -> tuple[dict, list[int]]:
    w = Weights(4)
    widths = [c // scale for c in (64, 128, 256, 512, 512)]
    cin = 3
    for s, (c, n) in enumerate(zip(widths, VGG16)):
        for b in range(n):
            i = b + (1 if s > 0 else 0)  # stages 1-4 open with a MaxPool at index 0
            w.conv(f"layer{s}.{i}.conv", cin, c, 3)
            w.bn(f"layer{s}.{i}.bn", c)
            cin = c
    hidden = 4096 // scale
    w.dense("classifier.2.dense1", 49 * cin, hidden)
    w.dense("classifier.2.dense2", hidden, hidden)
    w.dense("classifier.2.dense3", hidden, num_classes)
    return w.sd, widths


def vgg16_reference(sd, x):
    for s, n in enumerate(VGG16):
        if s > 0:
            x = F.max_pool2d(x, 2, 2)
        for b in range(n):
            i = b + (1 if s > 0 else 0)
            x = F.relu(bn(sd, f"layer{s}.{i}.bn", conv(sd, f"layer{s}.{i}.conv", x, 1, 1)))
        x = smooth(x)
    x = F.adaptive_avg_pool2d(F.max_pool2d(x, 2, 2), 7)
    return mlp(sd, "classifier.2", x)


def write_checkpoint(path, name, sd, prefix="module.", optimizer=True):
    payload = {"name": name, "state_dict": {prefix + k: v for k, v in sd.items()}}
    if optimizer:
        payload["optimizer"] = {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}
    torch.save(payload, path)
    return path


def imported_logits(tmp_path, name, sd, x, dataset="cifar100", overrides=None):
    src = write_checkpoint(tmp_path / f"{name}.pth.tar", name, sd)
    out = import_paper_checkpoint(src, dataset=dataset, out_dir=tmp_path / name, overrides=overrides)
    model = load(out)
    with torch.no_grad():
        return model(x), model


def test_parse_paper_name():
    assert parse_paper_name("resnet_mcdo_smoothing_18") == {"arch": "resnet18", "method": "mcdo", "smoothing": "tanh-blur"}
    assert parse_paper_name("preresnet_dnn_50") == {"arch": "preact_resnet50", "method": "dnn", "smoothing": "none"}
    assert parse_paper_name("prevgg_mcdo_smoothing_19")["arch"] == "preact_vgg19"
    assert parse_paper_name("alexnet_dnn_smoothing") == {"arch": "alexnet", "method": "dnn", "smoothing": "tanh-blur"}
    assert parse_paper_name("resnext_dnn_101")["arch"] == "resnext101_32x8d"
    assert parse_paper_name("wideresnet_mcdo_50")["arch"] == "wide_resnet50_2"
    for bad in ("resnet_dnn_20", "alexnet_dnn_18", "vgg_dnn", "densenet_dnn_121", "resnet_smoothing_18", ""):
        with pytest.raises(UserError, match="unknown model name"):
            parse_paper_name(bad)


def test_resnet18_mcdo_smoothing_parity(tmp_path):
    sd = resnet18_weights(100)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits, model = imported_logits(tmp_path, "resnet_mcdo_smoothing_18", sd, x)
    torch.testing.assert_close(logits, resnet18_reference(sd, x), rtol=1e-4, atol=1e-4)
    spec = model.spec
    assert (spec.arch, spec.method, spec.smoothing, spec.dropout_rate) == ("resnet18", "mcdo", "tanh-blur", 0.3)
    assert (spec.num_classes, spec.stem, spec.image_size, spec.dataset) == (100, "cifar", 32, "cifar100")
    assert spec.mean == (0.5071, 0.4867, 0.4408) and spec.std == (0.2675, 0.2565, 0.2761)
    config = json.loads((tmp_path / "resnet_mcdo_smoothing_18" / "config.json").read_text())
    assert config["paper_name"] == "resnet_mcdo_smoothing_18" and config["dataset"] == "cifar100"
    assert len(config["source_sha256"]) == 64 and config["optimizer_dropped"] is True
    with torch.no_grad():
        assert not torch.allclose(model.mc(True)(x), logits, atol=1e-3)  # MC dropout is there when asked


def test_preresnet50_mcdo_smoothing_parity(tmp_path):
    sd = preresnet50_weights(10, scale=8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits, model = imported_logits(tmp_path, "preresnet_mcdo_smoothing_50", sd, x, dataset="cifar10",
                                    overrides={"width": 8})
    torch.testing.assert_close(logits, preresnet50_reference(sd, x, smoothing=True), rtol=1e-4, atol=1e-4)
    assert model.spec.method == "mcdo" and model.layer1[0].shortcut[1].num_features == 32


def test_alexnet_mcdo_smoothing_parity(tmp_path):
    sd = alexnet_weights(10, scale=4)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    logits, model = imported_logits(tmp_path, "alexnet_mcdo_smoothing", sd, x, dataset="cifar10",
                                    overrides={"width": 16})
    torch.testing.assert_close(logits, alexnet_reference(sd, x), rtol=1e-4, atol=1e-4)
    assert model.spec.dropout_rate == 0.1


def test_vgg16_parity_with_width_override(tmp_path):
    sd, widths = vgg16_weights(10, scale=8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    logits, model = imported_logits(tmp_path, "vgg_mcdo_smoothing_16", sd, x, dataset="cifar10",
                                    overrides={"width": widths[0]})
    torch.testing.assert_close(logits, vgg16_reference(sd, x), rtol=1e-4, atol=1e-4)
    assert model.spec.width == 8


# ------------------------------------------------------------------------------------------------------ refusals
@dataclass
class Foreign:
    weights: torch.Tensor


def test_refuses_foreign_and_broken_files(tmp_path):
    out = tmp_path / "out"
    cases = {
        "list.pt": ([torch.zeros(2)], "not a checkpoint of the paper's code"),
        "noname.pt": ({"state_dict": {"a": torch.zeros(1)}}, "not a checkpoint of the paper's code"),
        "unknown.pt": ({"name": "densenet_dnn_121", "state_dict": {}}, "unknown model name"),
        "code.pt": ({"name": "resnet_dnn_18", "state_dict": {}, "extra": Foreign(torch.zeros(1))}, "run code"),
        "nontensor.pt": ({"name": "resnet_dnn_18", "state_dict": {"layer0.0.weight": [1, 2]}}, "not a tensor"),
    }
    for filename, (payload, message) in cases.items():
        torch.save(payload, tmp_path / filename)
        with pytest.raises(UserError, match=message):
            import_paper_checkpoint(tmp_path / filename, dataset="cifar10", out_dir=out)
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(UserError, match="garbage.pt"):
        import_paper_checkpoint(tmp_path / "garbage.pt", dataset="cifar10", out_dir=out)
    with pytest.raises(UserError, match="no such checkpoint"):
        import_paper_checkpoint(tmp_path / "missing.pt", dataset="cifar10", out_dir=out)
    assert not out.exists()


def test_refuses_mismatched_weights(tmp_path):
    sd = resnet18_weights(100, scale=8)
    narrow = {"width": 8}
    src = write_checkpoint(tmp_path / "c100.pt", "resnet_dnn_18", sd, prefix="")
    with pytest.raises(UserError, match=r"classifier\.0\.dense\.weight.*\(100, 64\).*\(10, 64\)"):
        import_paper_checkpoint(src, dataset="cifar10", out_dir=tmp_path / "a", overrides=narrow)
    with pytest.raises(UserError, match="'layer2.0.bn1.weight' has shape"):  # PreAct bn1 sees the block's input
        import_paper_checkpoint(write_checkpoint(tmp_path / "wrong.pt", "preresnet_dnn_18", sd), dataset="cifar100",
                                out_dir=tmp_path / "b", overrides=narrow)
    smaller = {k: v for k, v in sd.items() if k != "layer3.1.bn2.running_var"}
    with pytest.raises(UserError, match="layer3.1.bn2.running_var"):
        import_paper_checkpoint(write_checkpoint(tmp_path / "lack.pt", "resnet_dnn_18", smaller), dataset="cifar100",
                                out_dir=tmp_path / "c", overrides=narrow)
    extra = {**sd, "smooth1.0.blur.filter": torch.ones(8, 1, 3, 3)}
    with pytest.raises(UserError, match="smooth1.0.blur.filter"):
        import_paper_checkpoint(write_checkpoint(tmp_path / "extra.pt", "resnet_dnn_18", extra), dataset="cifar100",
                                out_dir=tmp_path / "d", overrides=narrow)
    with pytest.raises(UserError, match="unknown dataset"):
        import_paper_checkpoint(src, dataset="svhn", out_dir=tmp_path / "e")
    with pytest.raises(UserError, match="unknown override 'depth'"):
        import_paper_checkpoint(src, dataset="cifar100", out_dir=tmp_path / "e", overrides={"depth": 3})
    assert not any((tmp_path / d / "model.pt").exists() for d in "abcde")


def test_never_overwrites_without_force(tmp_path):
    sd = resnet18_weights(10, scale=8)
    src = write_checkpoint(tmp_path / "r18.pt", "resnet_dnn_18", sd)
    out = import_paper_checkpoint(src, dataset="cifar10", out_dir=tmp_path / "run", overrides={"width": 8})
    first = out.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        import_paper_checkpoint(src, dataset="cifar10", out_dir=tmp_path / "run", overrides={"width": 8})
    assert out.read_bytes() == first
    import_paper_checkpoint(src, dataset="cifar10", out_dir=tmp_path / "run", overrides={"width": 8, "tau": 5.0},
                            force=True)
    model, payload = load_model_file(tmp_path / "run")
    assert model.spec.tau == 5.0 and payload["meta"]["paper_name"] == "resnet_dnn_18"
