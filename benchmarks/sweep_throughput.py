"""Sweep throughput: a CIFAR-10-C sweep at ensemble sizes 1 and 50 in one pass, against the paper-style way.

The sweep is ``--corruptions`` (default the 15 common) x ``--severities`` (default 1..5) cells of ``--images``
test images (default all 10,000), scored at ensemble sizes 1 and 50 of a randomly initialised ResNet-18
mcdo tanh-blur (``--width``; or ``--checkpoint``):

- **ours**, per cell, as :func:`smoothbench.evaluation.corruption_cells.corruption_sweep` does it (without its result file): the
  cell's images are generated on the fly by the engine (:func:`smoothbench.corruptions.corrupt` on the eval
  device; with ``--cifar10c DIR`` they are read from that CIFAR-10-C folder instead), then
  :func:`smoothbench.evaluation.scoring.evaluate` draws sizes 1 and 50 in one MC pass (running sum, keyed masks, resident
  data; bf16 + channels-last on a GPU) and scores them. Wall time is split into generation (or loading) and
  evaluation (prediction + metrics).
- **paper-style** baseline, per cell: the same corrupted images as a torchvision-style dataset of PIL images
  (ToTensor + Normalize per image, ``DataLoader``), fp32, torch-RNG dropout, a size-1 pass and then 50 passes
  (the paper's ``test()`` called once per ensemble size: 51 passes per cell; see
  ``eval_throughput.paper_style``). Producing the corrupted images is *not* charged to the baseline (the
  paper's code reads the released files; writing them took the reference scripts ~25 min on one core,
  peers.md section 4), so the ratio is conservative for us.

The evaluation cost of a cell does not depend on its pixels, so the baseline runs on ``--baseline-cells`` cells
(default 1) of ``--baseline-images`` images (default ``--images``) and is projected to the sweep by its time per
(image, cell). Last, everything is projected to the **full sweep** (15 x 5 x 10,000): our evaluation and the
baseline from their time per (image, cell); our generation per corruption from its mean time per image over the
severities timed (a corruption not timed gets the mean of those timed). Lines that are projections say so.

Usage::

    PYTHONPATH=. python benchmarks/sweep_throughput.py --device cpu --images 64 --corruptions 2 --severities 1,3 --width 16
    PYTHONPATH=. python benchmarks/sweep_throughput.py --device cuda --baseline-images 2000

``--data-dir`` (default ``$SMOOTHBENCH_CIFAR10_DIR``, else ``.cache/cifar10``) holds ``cifar-10-batches-py/``;
without it the synthetic set stands in (``--images`` of its test images, generated at that size). Frost needs
the reference textures (``--frost-dir`` / ``$SMOOTHBENCH_FROST_DIR``); without them frost is left out and projected.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from smoothbench.corruptions import corrupt, names
from smoothbench.data import NORMALIZATION, ResidentImages, get_dataset
from smoothbench.data.synthetic import make_synthetic
from smoothbench.device import resolve_device
from smoothbench.errors import UserError
from smoothbench.models.registry import create_model
from smoothbench.models.store import save_model
from smoothbench.evaluation.members import load_members
from smoothbench.evaluation.scoring import evaluate
from smoothbench.evaluation.settings import EvalSettings
from eval_throughput import paper_style  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
FULL_IMAGES, FULL_SEVERITIES = 10_000, 5
SIZES = [1, 50]


def clean_source(args) -> ResidentImages:
    """The first ``--images`` CIFAR-10 test images, or that many synthetic test images."""
    data_dir = args.data_dir or os.environ.get("SMOOTHBENCH_CIFAR10_DIR") or ROOT / ".cache" / "cifar10"
    if (Path(data_dir) / "cifar-10-batches-py" / "test_batch").is_file():
        source = get_dataset("cifar10", data_dir, "test")
        return source.first(min(args.images, len(source)))
    return make_synthetic("test", size=args.images)


def pick_corruptions(text: str) -> list[str]:
    """``"2"`` → the first 2 common corruptions; ``"fog,frost"`` → those."""
    common = names("common")
    if text.isdigit():
        if not 1 <= int(text) <= len(common):
            raise UserError(f"--corruptions {text}: give 1..{len(common)} or a comma-separated list of names")
        return common[: int(text)]
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in names("all")]
    if unknown:
        raise UserError(f"--corruptions: unknown {', '.join(unknown)}; choose from {', '.join(names('all'))}")
    return chosen


def frost_available(frost_dir: str | None) -> str | None:
    """Why frost cannot run here (textures not found), or None when it can."""
    from smoothbench.corruptions.frost import resolve_frost_dir

    try:
        resolve_frost_dir(frost_dir)
    except UserError as err:
        return str(err)
    return None


def members_for(args, clean: ResidentImages, folder: str):
    """The evaluated model as sweep members: ``--checkpoint``, or a random ResNet-18 saved to ``folder``."""
    if args.checkpoint:
        return load_members([args.checkpoint])
    mean, std = NORMALIZATION[clean.name]
    torch.manual_seed(0)
    model = create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=args.width, num_classes=10,
                         dataset=clean.name, mean=mean, std=std)
    path = Path(folder) / "random-resnet18.pt"
    save_model(model, path)
    return load_members([path])


def cell_images(args, clean: ResidentImages, corruption: str, severity: int, device: torch.device) -> ResidentImages:
    """One cell's images: generated by the engine on ``device``, or read from ``--cifar10c``."""
    if args.cifar10c:
        from smoothbench.corruptions.released import load_cifar_c

        return load_cifar_c(args.cifar10c, corruption, severity, subset=len(clean))
    images = corrupt(clean.numpy_nhwc(), corruption, severity, params="cifar", device=device, frost_dir=args.frost_dir)
    return ResidentImages.from_numpy(clean.name, "test", images, clean.labels.numpy(), clean.classes,
                                     source="generated")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_ours(args, members, clean, cells, settings, device, label: str = "ours") -> tuple[dict, float]:
    """Generation seconds per cell and total evaluation seconds of our sweep over ``cells``."""
    generation, evaluation = {}, 0.0
    for corruption, severity in cells:
        sync(device)
        start = time.perf_counter()
        source = cell_images(args, clean, corruption, severity, device)
        middle = time.perf_counter()
        rows, _ = evaluate(members, source, settings, context={"corruption": corruption, "severity": severity})
        sync(device)
        end = time.perf_counter()
        generation[(corruption, severity)] = middle - start
        evaluation += end - middle
        acc = {r["ensemble_size"]: r["acc"] for r in rows}
        print(f"  {label} {corruption:18} s{severity}: {'load' if args.cifar10c else 'generate'} {middle - start:7.2f} s, "
              f"evaluate {end - middle:7.2f} s (accuracy size 1 {acc[1]:.3f}, size 50 {acc[50]:.3f})")
    return generation, evaluation


def run_baseline(args, model, sources: list[ResidentImages], device) -> float:
    """Seconds of the paper-style evaluation (a size-1 pass, then 50 passes) of every source."""
    total = 0.0
    for source in sources:
        for passes in SIZES:
            total += len(source) * passes / paper_style(model, source, args, device, passes)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--images", type=int, default=FULL_IMAGES, help="test images per cell (first N)")
    parser.add_argument("--corruptions", default="15", help="first N common corruptions, or a comma-separated list")
    parser.add_argument("--severities", default="1,2,3,4,5")
    parser.add_argument("--width", type=int, default=None, help="ResNet-18 base width (default 64)")
    parser.add_argument("--checkpoint", default=None, help="a model file / run folder instead of a random ResNet-18")
    parser.add_argument("--data-dir", default=None, help="folder with cifar-10-batches-py/")
    parser.add_argument("--cifar10c", default=None, help="read cells from this CIFAR-10-C folder instead of generating")
    parser.add_argument("--frost-dir", default=None, help="frost textures (default $SMOOTHBENCH_FROST_DIR)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per batch (both paths)")
    parser.add_argument("--mc-chunk", type=int, default=None, help="MC samples per forward (default: predict's)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                        help="our precision (auto: bf16 on GPU, fp32 on CPU); the baseline is always fp32")
    parser.add_argument("--baseline-cells", type=int, default=1, help="cells the baseline is timed on (0: none)")
    parser.add_argument("--baseline-images", type=int, default=None, help="images of those cells (default --images)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the baseline (default: 4 on GPU as the paper, 0 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    precision = ("bf16" if gpu else "fp32") if args.precision == "auto" else args.precision
    args.workers = (4 if gpu else 0) if args.workers is None else args.workers
    args.timer = time.perf_counter  # read by eval_throughput.paper_style
    corruptions = pick_corruptions(args.corruptions)
    severities = [int(s) for s in args.severities.split(",")]
    left_out = []
    if "frost" in corruptions and not args.cifar10c:
        reason = frost_available(args.frost_dir)
        if reason:
            corruptions.remove("frost")
            left_out.append("frost")
            print(f"frost left out (projected from the others): {reason}")
    cells = [(c, s) for c in corruptions for s in severities]
    clean = clean_source(args)
    settings = EvalSettings(ensembles=SIZES, batch_size=args.batch_size, mc_chunk=args.mc_chunk, device=device,
                            precision=precision, channels_last=gpu)
    name = torch.cuda.get_device_name(device) if gpu else f"cpu ({torch.get_num_threads()} threads)"
    with tempfile.TemporaryDirectory() as folder:
        members = members_for(args, clean, folder)
        baseline_model = members_for(args, clean, folder).models[0]  # same weights, its own copy
        print(f"device {name}; {members.name} width {members.spec.width or 64}; {len(clean)} {clean.name} test images "
              f"x {len(cells)} cells ({len(corruptions)} corruptions x severities {severities}); sizes 1,50; "
              f"ours {precision}{' channels-last' if gpu else ''}, cells "
              f"{'read from ' + args.cifar10c if args.cifar10c else 'generated on ' + str(device)}; "
              f"baseline fp32, {args.workers} DataLoader workers")
        warm = ResidentImages.from_numpy(clean.name, "test", clean.numpy_nhwc()[:8], clean.labels.numpy()[:8],
                                         clean.classes)
        run_ours(args, members, warm, cells[:1], settings, device, "warm-up")  # untimed: caches, kernels, frost textures
        run_baseline(args, baseline_model, [warm], device)
        print("timed:")
        generation, evaluation = run_ours(args, members, clean, cells, settings, device)
        base_cells = cells[: args.baseline_cells]
        n_base = min(args.baseline_images or len(clean), len(clean))
        sources = [cell_images(args, clean, c, s, device).first(n_base) for c, s in base_cells]
        baseline = run_baseline(args, baseline_model, sources, device) if sources else float("nan")
    n = len(clean)
    gen_total = sum(generation.values())
    ours_total = gen_total + evaluation
    base_per = baseline / max(1, len(base_cells) * n_base)  # seconds per (image, cell)
    base_sweep = base_per * n * len(cells)
    what = "load" if args.cifar10c else "generation"
    print(f"\n== measured: {len(cells)} cells x {n} images")
    print(f"ours: {what} {gen_total:.2f} s + evaluation {evaluation:.2f} s = {ours_total:.2f} s "
          f"({n * len(cells) * 50 / evaluation:.0f} sample-forwards/s in evaluation)")
    print(f"paper-style: {baseline:.2f} s on {len(base_cells)} cell(s) x {n_base} images = {base_per * 1e3:.3f} ms "
          f"per (image, cell); {'measured' if len(base_cells) == len(cells) and n_base == n else 'PROJECTED'} "
          f"for these {len(cells)} cells x {n} images: {base_sweep:.2f} s")
    print(f"ratio (paper-style / ours, these cells): {base_sweep / ours_total:.2f} with our {what} counted, "
          f"{base_sweep / evaluation:.2f} evaluation only")
    # Full-sweep projection: 15 common corruptions x 5 severities x 10,000 images.
    full_cells = len(names("common")) * FULL_SEVERITIES
    per_corruption = {c: np.mean([generation[(c, s)] for s in severities]) / n for c in corruptions}
    fallback = float(np.mean(list(per_corruption.values())))
    guessed = [c for c in names("common") if c not in per_corruption]
    gen_full = sum(per_corruption.get(c, fallback) for c in names("common")) * FULL_SEVERITIES * FULL_IMAGES
    eval_full = evaluation / (n * len(cells)) * FULL_IMAGES * full_cells
    base_full = base_per * FULL_IMAGES * full_cells
    exact = n == FULL_IMAGES and len(cells) == full_cells
    print(f"\n== full sweep, 15 corruptions x 5 severities x {FULL_IMAGES} images, sizes 1 and 50 "
          f"({'ours measured' if exact else 'PROJECTED from the per-image times above'})")
    print(f"ours: {what} {gen_full:.1f} s + evaluation {eval_full:.1f} s = {gen_full + eval_full:.1f} s"
          + (f" ({what} of {', '.join(guessed)} projected from the mean of the others)" if guessed else ""))
    print(f"paper-style evaluation: {base_full:.1f} s (PROJECTED from {len(base_cells)} cell(s) x {n_base} images; "
          f"producing the corrupted files not counted)")
    print(f"ratio: {base_full / (gen_full + eval_full):.2f} (paper-style / ours with {what}), "
          f"{base_full / eval_full:.2f} evaluation only; on {name}")
    if left_out:
        print(f"left out: {', '.join(left_out)}")


if __name__ == "__main__":
    main()
