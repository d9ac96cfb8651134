"""Shared fixtures: the real CIFAR-10 copy, tiny real models, and a subprocess CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (as in every launched process): two are slower on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """Folder holding ``cifar-10-batches-py`` (the shared JPEG-lossy copy, materialised by ``make test``)."""
    path = os.environ.get("SMOOTHBENCH_CIFAR10_DIR")
    if not path or not (Path(path) / "cifar-10-batches-py" / "test_batch").exists():
        pytest.skip("SMOOTHBENCH_CIFAR10_DIR is not set to a materialised CIFAR-10 copy (run `make test`)")
    return Path(path)


@pytest.fixture(scope="session")
def frost_dir() -> Path:
    path = os.environ.get("SMOOTHBENCH_FROST_DIR", str(SHARED / "data" / "frost"))
    if not (Path(path) / "frost1.png").exists():
        pytest.skip("no frost textures (set SMOOTHBENCH_FROST_DIR)")
    return Path(path)


def run_cli(*args: str, cwd: Path | None = None, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m smoothbench ARGS`` in a real subprocess; returns the completed process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", OMP_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-m", "smoothbench", *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"smoothbench {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def trained_synthetic_mcdo(tmp_path_factory) -> Path:
    """A narrow MC-dropout + smoothing ResNet-18 trained for 3 epochs on the synthetic set (a real run folder)."""
    from smoothbench.train import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny-mcdo"
    train(TrainConfig(arch="resnet18", method="mcdo", smoothing="tanh-blur", width=8, dataset="synthetic",
                      epochs=3, eval_subset=200, device="cpu", seed=0, out=str(out)))
    return out


@pytest.fixture(scope="session")
def trained_cifar10_mcdo(tmp_path_factory, cifar10_dir) -> Path:
    """A narrow MC-dropout + smoothing ResNet-18 trained briefly on a real CIFAR-10 subset (well above chance)."""
    from smoothbench.train import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "c10-mcdo"
    train(TrainConfig(arch="resnet18", method="mcdo", smoothing="tanh-blur", width=8, dataset="cifar10",
                      data_dir=str(cifar10_dir), subset=2000, eval_subset=500, epochs=3, warmup_epochs=0,
                      batch_size=32, lr=0.01, milestones=(2,), device="cpu", seed=0, out=str(out)))
    return out


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
