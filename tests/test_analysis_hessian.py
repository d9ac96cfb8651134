"""The Hessian analysis against the exact Hessian of a tiny float64 model (torch.autograd.functional.hessian)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from smoothbench.analysis.hessian import (HessianOperator, batch_loss, eigenvalue_histogram, hessian_spectra,
                                          hutchinson_trace, top_eigenvalues)
from smoothbench.analysis.objective import l2_term
from smoothbench.models.base import Classifier
from smoothbench.models.layers import MCDropout, Smoothing, mc_row_keys
from smoothbench.models.spec import ModelSpec

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: a second thread only adds waiting


class Tiny(Classifier):
    """Two convolutions with tanh (a Hessian with curvature everywhere), a tanh-blur smoothing layer, optional keyed
    MC dropout, global pooling and a linear head: 275 parameters."""

    def __init__(self, method: str = "dnn") -> None:
        super().__init__(ModelSpec("tiny", method=method, dropout_rate=0.3 if method == "mcdo" else 0.0,
                                   num_classes=3))
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.smooth = Smoothing("tanh-blur", "box2-pad1", 2.0)
        self.dropout = MCDropout(0.3) if method == "mcdo" else nn.Identity()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.smooth(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))))
        return self.head(self.dropout(x).mean(dim=(-2, -1)))


def tiny(method: str = "dnn", seed: int = 0) -> tuple[Tiny, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = Tiny(method).double().eval()
    x = torch.randn(8, 3, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    return model, x, y, torch.arange(8)


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor, weight_decay: float) -> torch.Tensor:
    """The full Hessian of the batch loss over every parameter, flattened in ``model.parameters()`` order."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, (t.view(s) for t, s in zip(theta.split([s.numel() for s in shapes]), shapes))))
        nll = F.cross_entropy(functional_call(model, params, (x,)), y)
        return nll + weight_decay * l2_term(params.values())

    return torch.autograd.functional.hessian(loss, flat)


def by_magnitude(hessian: torch.Tensor) -> np.ndarray:
    values = torch.linalg.eigvalsh(hessian).numpy()
    return values[np.argsort(-np.abs(values), kind="stable")]


@pytest.mark.parametrize("weight_decay, k", [(0.0, 3), (5e-2, 2)])  # the l2 term crowds the 3rd and 4th
def test_power_iteration_finds_the_exact_top_eigenvalues_and_trace(weight_decay, k):
    model, x, y, _ = tiny()
    params = list(model.parameters())
    assert 200 <= sum(p.numel() for p in params) <= 400
    hessian = exact_hessian(model, x, y, weight_decay)
    exact = by_magnitude(hessian)
    assert abs(exact[1]) < 0.95 * abs(exact[0])  # a spectral gap: power iteration is well posed here
    loss, _ = batch_loss(model, x, y, params, weight_decay)
    hvp = HessianOperator(loss, params)
    generator = torch.Generator().manual_seed(0)
    values, spent = top_eigenvalues(hvp, k, iterations=5000, tol=1e-13, generator=generator)
    assert values == pytest.approx(exact[:k].tolist(), rel=1e-6)
    assert all(n < 5000 for n in spent)
    trace, error = hutchinson_trace(hvp, 500, generator)
    assert 0 < error < abs(float(hessian.trace())) + 1.0
    assert abs(trace - float(hessian.trace())) <= 4 * error


def test_hessian_vector_products_equal_the_exact_hessian_times_v():
    model, x, y, _ = tiny()
    params = list(model.parameters())
    hvp = HessianOperator(batch_loss(model, x, y, params, 1e-2)[0], params)
    v = hvp.random_like(torch.Generator().manual_seed(1))
    flat = torch.cat([t.reshape(-1) for t in hvp(v)])
    expected = exact_hessian(model, x, y, 1e-2) @ torch.cat([t.reshape(-1) for t in v])
    torch.testing.assert_close(flat, expected, rtol=1e-10, atol=1e-12)


def test_mc_model_uses_one_fixed_keyed_mask_per_batch():
    """An MC-dropout model's batch loss is a deterministic function (sample 0's keyed mask), so reruns agree and
    the eigenvalue is that of the exact Hessian with the same mask."""
    model, x, y, ids = tiny("mcdo")
    batches = [(x, y, ids)]
    first = hessian_spectra(model, batches, iterations=3000, tol=1e-13, seed=4)
    again = hessian_spectra(model, batches, iterations=3000, tol=1e-13, seed=4)
    assert first["eigenvalue_1"].item() == again["eigenvalue_1"].item()
    assert not model.mc_enabled  # MC state restored
    with model.mc_sampling(mc_row_keys(4, ids, torch.zeros_like(ids))):
        exact = by_magnitude(exact_hessian(model, x, y, 0.0))
        masked_nll = F.cross_entropy(model(x), y).item()
    assert first["eigenvalue_1"].item() == pytest.approx(exact[0], rel=1e-6)
    assert first["nll"].item() == pytest.approx(masked_nll, rel=1e-12)
    assert model(x).sub(model(x)).abs().max() == 0  # MC off again: deterministic
    other_seed = hessian_spectra(model, batches, iterations=3000, tol=1e-13, seed=5)
    assert other_seed["nll"].item() != first["nll"].item()  # another mask


def test_spectra_rows_and_histogram():
    model, x, y, ids = tiny()
    batches = [(x[:4], y[:4], ids[:4]), (x[4:], y[4:], ids[4:])]
    rows = hessian_spectra(model, batches, top_k=2, trace_samples=4, iterations=50, weight_decay=1e-3)
    assert list(rows["batch"]) == [0, 1] and list(rows["n_images"]) == [4, 4]
    for column in ("nll", "loss", "eigenvalue_1", "eigenvalue_2", "iterations_1", "iterations_2", "trace", "trace_se"):
        assert rows[column].notna().all(), column
    assert (rows["loss"] > rows["nll"]).all()  # the l2 term
    assert (rows["eigenvalue_1"].abs() >= rows["eigenvalue_2"].abs() * (1 - 1e-3)).all()
    histogram = eigenvalue_histogram(rows["eigenvalue_1"], bins=3)
    assert list(histogram.columns) == ["lower", "upper", "count", "density"]
    assert histogram["count"].sum() == 2
    assert (histogram["density"] * (histogram["upper"] - histogram["lower"])).sum() == pytest.approx(1.0)
