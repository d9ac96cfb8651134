"""What evaluating a torchvision model through smoothbench costs over the bare model (issue: at most ~5 %).

Both sides read the same batches from the same data path (CIFAR-10 test images resident in memory,
normalised in batches) and compute softmax probabilities for every image:

- **bare**: ``torch.softmax(net(x))`` on the torchvision ResNet-18 itself, under ``torch.inference_mode``;
- **smoothbench**: :func:`smoothbench.evaluation.ensembles.predict` on the same weights loaded through
  ``torchvision:resnet18`` (the ``ForeignClassifier`` wrapper, the running sums, the gathering of the
  probabilities), at ensemble size 1.

Prints the seconds of each (best of ``--repeats``, process CPU time by default so that a loaded machine
disturbs less) and the ratio smoothbench / bare.

    python benchmarks/foreign_overhead.py --images 512 --batch-size 128 --threads 1
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torchvision

from smoothbench.data import get_dataset
from smoothbench.data.synthetic import make_synthetic
from smoothbench.evaluation.ensembles import predict
from smoothbench.models.sources import ModelOptions, resolve_model

from best_of import best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cifar10", default=os.environ.get("SMOOTHBENCH_CIFAR10_DIR"),
                        help="CIFAR-10 folder (default: $SMOOTHBENCH_CIFAR10_DIR; the synthetic set without it)")
    parser.add_argument("--clock", choices=("process", "wall"), default="process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    dataset = "cifar10" if args.cifar10 else "synthetic"
    source = (get_dataset("cifar10", args.cifar10, "test", subset=args.images) if args.cifar10
              else make_synthetic("test", size=args.images))
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        net = torchvision.models.resnet18(num_classes=10).eval()
        weights = os.path.join(folder, "r18.pt")
        torch.save(net.state_dict(), weights)
        model = resolve_model("torchvision:resnet18", ModelOptions(dataset=dataset, weights=weights,
                                                                   kwargs=(("num_classes", 10),)))
    recipe = model.spec.preprocess

    def bare() -> None:
        with torch.inference_mode():
            for x, _, _ in source.eval_batches(args.batch_size, recipe, device=cpu):
                torch.softmax(net(x).float(), -1)

    def ours() -> None:
        predict([model], source, [1], batch_size=args.batch_size, device=cpu, announce=False)

    bare(), ours()  # warm up both (allocator, oneDNN primitives)
    t_bare, t_ours = best_of(bare, args.repeats, clock), best_of(ours, args.repeats, clock)
    print(f"torchvision resnet18, {len(source)} {dataset} images, batch {args.batch_size}, {args.threads} thread(s), "
          f"{args.clock} time, best of {args.repeats}")
    print(f"bare module:  {t_bare:.3f} s")
    print(f"smoothbench:  {t_ours:.3f} s")
    print(f"ratio smoothbench / bare: {t_ours / t_bare:.3f} (goal: at most about 1.05)")


if __name__ == "__main__":
    main()
