"""CUDA-only checks (skipped without a GPU; benchmarks/gpu_suite.sh runs them on the device machine).

- The hot loops do not synchronise the GPU with the host: training batches + SGD steps and keyed MC-dropout
  forwards run under ``torch.cuda.set_sync_debug_mode("error")``, which raises at any synchronising call.
- Keyed MC masks and ensemble predictions do not depend on the device (the GPU hashes masks in large
  blocks, the CPU in cache-sized ones).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_images
from smoothbench.data.preprocess import Preprocess
from smoothbench import create_model
from smoothbench.data import ResidentImages
from smoothbench.evaluation.ensembles import predict
from smoothbench.models.layers import keyed_keep_mask, mc_row_keys
from smoothbench.training.loop import train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
CUDA = torch.device("cuda")


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=8, num_classes=10,
                        dataset="synthetic", mean=MEAN, std=STD)


def source(n: int = 96) -> ResidentImages:
    return ResidentImages.from_numpy("synthetic", "test", random_images(n, seed=2), np.arange(n) % 10,
                                     [str(i) for i in range(10)], source="test")


def test_training_batches_and_steps_do_not_synchronise():
    model = tiny_model().to(CUDA).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = source().to(CUDA).train_batches(32, Preprocess(MEAN, STD), device=CUDA, seed=0, epoch=0, channels_last=True)
    x, y = next(batches)  # the epoch's setup (order, draws, statistics to the device) may synchronise once
    train_step(model, optimizer, scheduler, x, y, precision="bf16")  # lazy CUDA/cuDNN initialisation
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        sums = torch.zeros(2, device=CUDA)
        for x, y in batches:
            loss, correct = train_step(model, optimizer, scheduler, x, y, precision="bf16")
            sums += torch.stack([loss, correct.float()])
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(sums).all()


def test_keyed_mc_forward_does_not_synchronise():
    model = tiny_model().to(CUDA).eval()
    model.mc(True)
    x = torch.randn(64, 3, 32, 32, device=CUDA)
    idx = torch.arange(64, device=CUDA)
    model.set_mc_keys(mc_row_keys(0, idx, torch.zeros_like(idx)))
    with torch.inference_mode():
        model(x)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            model.set_mc_keys(mc_row_keys(0, idx.repeat(2), torch.arange(2, device=CUDA).repeat_interleave(64)))
            out = model(x.repeat(2, 1, 1, 1))
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert out.shape == (128, 10) and not torch.equal(out[:64], out[64:])  # two samples, two masks


def test_masks_and_predictions_do_not_depend_on_the_device():
    keys = mc_row_keys(5, torch.arange(300), torch.arange(300) % 7)
    assert torch.equal(keyed_keep_mask(keys, 3, 4096, 0.3), keyed_keep_mask(keys.to(CUDA), 3, 4096, 0.3).cpu())
    model, data = tiny_model(), source(40)
    cpu = predict([model], data, [1, 4], seed=1, batch_size=16, device=torch.device("cpu"))
    gpu = predict([model], data.to(CUDA), [1, 4], seed=1, batch_size=16, device=CUDA)
    for k in (1, 4):  # float32 on both; cuDNN may use TF32 convolutions, hence the tolerance
        np.testing.assert_allclose(gpu.probs[k], cpu.probs[k], atol=2e-2)
    assert (gpu.probs[4].argmax(1) == cpu.probs[4].argmax(1)).mean() >= 0.9
