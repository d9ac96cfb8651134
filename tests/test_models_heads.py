"""Classifier heads (``ModelSpec.head``, ``--head gap|mlp``): the paper code's GAP/MLP ablation for every family."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothbench import EvalSettings, create_model
from smoothbench.errors import UserError
from smoothbench.models.base import GAPHead, MLPHead
from smoothbench.models.registry import get_entry
from smoothbench.models.spec import ModelSpec
from smoothbench.models.store import load, save_model
from smoothbench.models.table import model_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def test_resnet_mlp_head_is_the_paper_codes():
    gap = create_model("resnet18", width=8)
    mlp = create_model("resnet18", width=8, head="mlp")
    pool, head = mlp.classifier
    assert isinstance(pool, nn.AdaptiveAvgPool2d) and pool.output_size == (7, 7) and isinstance(head, MLPHead)
    channels, hidden = 512 * 8 // 64, 4096 * 8 // 64
    assert head.dense1.in_features == 7 * 7 * channels and head.dense1.out_features == hidden
    linear = channels * 10 + 10
    mlp_params = (49 * channels + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * 10
    assert mlp.num_parameters() - gap.num_parameters() == mlp_params - linear
    assert "classifier.1.dense1.weight" in mlp.state_dict()  # the paper code's key
    assert mlp.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert mlp.spec.name == "resnet18-dnn-mlp-head" and gap.spec.head is None


def test_vgg_and_alexnet_gap_heads_and_own_heads_spelled_once():
    vgg = create_model("vgg11", width=8, head="gap")
    assert len(vgg.classifier) == 1 and isinstance(vgg.classifier[0], GAPHead)
    assert vgg.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert create_model("alexnet", width=8, head="gap").eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert create_model("vgg11", head="mlp", width=8).spec.head is None  # VGG's own head
    assert create_model("preact_resnet18", head="gap", width=8).spec.head is None  # its BN-ReLU-GAP head
    with pytest.raises(UserError, match="unknown head 'avg'"):
        create_model("resnet18", head="avg")


def test_old_model_files_without_a_head_load_and_new_ones_round_trip(tmp_path):
    data = ModelSpec("resnet18", width=4).to_dict()
    del data["head"]  # a model file written before heads could be chosen
    assert ModelSpec.from_dict(data).head is None
    model = create_model("resnet18", width=4, head="mlp").eval()
    save_model(model, tmp_path / "m.pt")
    loaded = load(tmp_path / "m.pt")
    assert loaded.spec.head == "mlp"
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))


def test_models_table_lists_the_head():
    rows = {(r["arch"], r["method"], r["smoothing"]): r for r in model_rows(head="mlp")}
    assert rows[("resnet18", "dnn", "none")]["head"] == "mlp"
    assert rows[("resnet18", "dnn", "none")]["params"] > 100_000_000
    assert get_entry("vgg16").head == "mlp" and get_entry("resnet18").head == "gap"  # the families' own heads
    with pytest.raises(UserError, match="head"):
        model_rows(head="avg")


def test_the_analyses_take_a_model_with_another_head(tmp_path, cifar10_dir):
    from analysis_models import cifar_model
    from smoothbench.pipelines.analyze import FeaturesRequest, run_features

    model = create_model(cifar_model().spec.with_(head="mlp")).eval()
    save_model(model, tmp_path / "mlp.pt")
    result = run_features(FeaturesRequest(tmp_path / "mlp.pt", EvalSettings(subset=4, device="cpu"),
                                          data_dir=cifar10_dir, out=tmp_path))
    assert result.rows["smoothing"].sum() == 4 and (result.rows["mc_variance"] == 0).all()
