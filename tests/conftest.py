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

#: Fixtures that train a model or start processes: a test using one belongs to the slow tier.
SLOW_FIXTURES = {"trained_synthetic_mcdo", "trained_cifar10_mcdo", "spawned"}


def pytest_collection_modifyitems(config, items) -> None:
    """Mark tests that use a :data:`SLOW_FIXTURES` fixture ``slow`` (``make test-fast`` skips the slow tier)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


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
def cifar10_test(cifar10_dir) -> tuple[np.ndarray, np.ndarray]:
    """The real CIFAR-10 test set as uint8 images (10000, 32, 32, 3) and int64 labels (slice what you need)."""
    from smoothbench.data.unpickle import load_pickle

    batch = load_pickle(cifar10_dir / "cifar-10-batches-py" / "test_batch")
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(batch[b"labels"], dtype=np.int64)


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
    from smoothbench import ModelSpec, TrainConfig, run_training

    out = tmp_path_factory.mktemp("runs") / "tiny-mcdo"
    run_training(TrainConfig(model=ModelSpec("resnet18", method="mcdo", smoothing="tanh-blur", width=8),
                             dataset="synthetic", epochs=3, eval_subset=200, device="cpu", seed=0, out=str(out)))
    return out


@pytest.fixture(scope="session")
def trained_cifar10_mcdo(tmp_path_factory, cifar10_dir) -> Path:
    """A narrow MC-dropout + smoothing ResNet-18 trained briefly on a real CIFAR-10 subset (well above chance)."""
    from smoothbench import ModelSpec, TrainConfig, run_training

    out = tmp_path_factory.mktemp("runs") / "c10-mcdo"
    run_training(TrainConfig(model=ModelSpec("resnet18", method="mcdo", smoothing="tanh-blur", width=8),
                             dataset="cifar10", data_dir=str(cifar10_dir), subset=2000, eval_subset=500, epochs=3,
                             warmup_epochs=0, batch_size=32, lr=0.01, milestones=(2,), device="cpu", seed=0,
                             out=str(out)))
    return out


MODEL_FIELDS = ("arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width")


def train_config(**settings):
    """A :class:`TrainConfig` from flat settings, as the CLI takes them (model fields go into its ``ModelSpec``)."""
    from smoothbench import ModelSpec, TrainConfig

    model = {k: settings.pop(k) for k in MODEL_FIELDS if k in settings}
    return TrainConfig(model=ModelSpec(model.pop("arch", "resnet18"), **model), **settings)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (needs the right to mount: root on most CI machines); skipped, saying so, without it."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip() or 'not permitted'})")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


class RecordingProgress:
    """A :class:`smoothbench.progress.Progress` that records what it is told: ``starts`` (total, title) and
    ``advances`` (units, text); ``on_advance(units, text)``, if given, runs on every advance (e.g. to kill)."""

    def __init__(self, on_advance=None) -> None:
        self.starts: list[tuple[int, str]] = []
        self.advances: list[tuple[int, str]] = []
        self.on_advance = on_advance

    def start(self, total: int, title: str) -> None:
        self.starts.append((total, title))

    def advance(self, units: int, text: str = "") -> None:
        self.advances.append((units, text))
        if self.on_advance is not None:
            self.on_advance(units, text)

    @property
    def units(self) -> list[int]:
        return [units for units, _ in self.advances]


def assert_png(path: Path, min_side: int = 100) -> None:
    """``path`` is a real, non-blank PNG image of at least ``min_side`` pixels a side."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= min_side, (image.format, image.size)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 1.0, f"{path} is blank"


def random_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def assert_one_line_error(proc, fragment: str) -> None:
    """Exit status 2 and one ``error:`` line holding ``fragment`` (warnings about the data may come before it)."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0], lines[0]
