"""Training throughput: smoothbench's fast path against a loop in the style of the paper's code.

Both loops train ``resnet18`` with MC dropout and tanh-blur smoothing (SGD, batch 128, same device) and
report training images per second over ``--steps`` optimiser steps, after ``--warmup`` untimed steps:

- **baseline**: fp32; a torchvision-style dataset that hands out PIL images, per-image
  RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize, batched by a torch
  ``DataLoader`` (shuffle, ``--workers`` processes), then copied to the device (as the paper's code does);
  the paper's blur layer (``AvgPool2d``, see ``paper_style.with_paper_blur``);
- **fast**: smoothbench's training step (:func:`smoothbench.training.loop.train_step`) fed by the data layer's
  device-resident batches (crop/flip/normalise batched on the device); on a GPU also bf16 autocast,
  channels-last and ``torch.compile``.

Usage::

    python benchmarks/train_throughput.py --device cpu --steps 10 --width 16
    python benchmarks/train_throughput.py --device cuda --steps 200 --data-dir .cache/cifar10

``--data-dir`` is a folder holding ``cifar-10-batches-py/``; without it the synthetic set stands in.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from smoothbench.data import NORMALIZATION, get_dataset
from smoothbench.device import resolve_device, to_channels_last
from smoothbench.models.registry import create_model
from smoothbench.training.loop import train_step
from paper_style import PILImages, with_paper_blur  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

BATCH = 128


def make_model(width: int | None, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=width, num_classes=10).to(device)


def sgd(model: torch.nn.Module):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def timed(step: Callable[[torch.Tensor, torch.Tensor], object], batches: Iterator, warmup: int, steps: int,
          device: torch.device) -> float:
    """Images per second of ``step`` over ``steps`` batches, after ``warmup`` untimed ones."""
    for x, y in itertools.islice(batches, warmup):
        step(x, y)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    images, start = 0, time.perf_counter()
    for x, y in itertools.islice(batches, steps):
        step(x, y)
        images += y.shape[0]
    sync()
    return images / (time.perf_counter() - start)


def forever(epochs: Callable[[int], Iterable]) -> Iterator:
    """Batches of epoch 0, 1, 2, ... back to back."""
    for epoch in itertools.count():
        yield from epochs(epoch)


def baseline(source, args, device: torch.device) -> float:
    """The paper-style loop: fp32, PIL transforms per image in DataLoader workers, host-to-device copies."""
    mean, std = NORMALIZATION[source.name]
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    dataset = PILImages(source.numpy_nhwc(), source.labels.cpu().numpy(), transform)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=args.workers,
                        pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    model = with_paper_blur(make_model(args.width, device)).train()
    optimizer, scheduler = sgd(model)

    def step(x, y):
        train_step(model, optimizer, scheduler, x.to(device), y.to(device), precision="fp32")

    return timed(step, forever(lambda epoch: loader), args.warmup, args.steps, device)


def fast(source, args, device: torch.device) -> float:
    """smoothbench's path: device-resident data and batched augmentation; bf16/channels-last/compile on GPU."""
    gpu = device.type == "cuda"
    resident = source.to(device)
    model = to_channels_last(make_model(args.width, device), gpu).train()
    net = torch.compile(model) if gpu else model
    optimizer, scheduler = sgd(model)

    def step(x, y):
        train_step(net, optimizer, scheduler, x, y, precision="bf16" if gpu else "fp32")

    def epochs(epoch: int):
        return resident.train_batches(BATCH, None, device=device, seed=0, epoch=epoch, channels_last=gpu)

    return timed(step, forever(epochs), args.warmup, args.steps, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--steps", type=int, default=50, help="timed optimiser steps per loop")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, worker start-up)")
    parser.add_argument("--data-dir", default=None, help="folder with cifar-10-batches-py/ (default: synthetic set)")
    parser.add_argument("--width", type=int, default=None, help="ResNet base width (default 64, the full model)")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the baseline (paper: 4)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.data_dir:
        source = get_dataset("cifar10", args.data_dir, "train")
    else:
        source = get_dataset("synthetic", None, "train")
    print(f"device {device}, {source!r}, resnet18 mcdo tanh-blur width {args.width or 64}, batch {BATCH}, "
          f"{args.steps} timed steps after {args.warmup}")
    slow = baseline(source, args, device)
    print(f"baseline (fp32, PIL transforms, DataLoader x{args.workers}): {slow:10.1f} images/s")
    quick = fast(source, args, device)
    extras = ", bf16 + channels-last + compile" if device.type == "cuda" else ""
    print(f"smoothbench (resident data, batched aug{extras}): {quick:10.1f} images/s")
    print(f"speed-up: {quick / slow:.2f}x")


if __name__ == "__main__":
    main()
