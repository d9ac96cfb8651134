"""What the uncertainty metrics beyond the paper cost an evaluation (goal: at most 10 % more).

Both sides evaluate the same MC-dropout ResNet-18 (tanh-blur, width ``--width``) on the same images at
ensemble sizes 1, 5 and 50 in one pass:

- **paper metrics**: :func:`~smoothbench.evaluation.ensembles.predict` without the running diversity sums, then
  the paper's 14 columns (acc, top5, nll, brier, entropy, the four ECEs, AUROC, the 0.9 metrics, IoU);
- **all metrics**: the same pass keeping the members' entropy and vote sums, then every column of
  :data:`smoothbench.schema.ROW_METRICS` (adds MCE, RMSCE, the Brier decomposition, AURC, E-AURC, AUGRC,
  risk at 80 % coverage, coverage at 5 % risk, mutual information, expected entropy, disagreement,
  variation ratio).

Prints the seconds of each (best of ``--repeats``, process CPU time by default) and the ratio.

    python benchmarks/metrics_overhead.py --images 512 --width 16 --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from smoothbench import create_model, metrics
from smoothbench.data.info import NORMALIZATION
from smoothbench.data.synthetic import make_synthetic
from smoothbench.evaluation.ensembles import predict

from best_of import best_of  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SIZES = [1, 5, 50]


def paper_metrics(probs, labels) -> dict[str, float]:
    """The paper's columns only (what a row held before the uncertainty metrics)."""
    pr = metrics.as_predictions(probs, labels)
    return {"acc": metrics.accuracy(pr, None), "top5": metrics.top5(pr, None), "nll": metrics.nll(pr, None),
            "brier": metrics.brier(pr, None), "entropy": metrics.entropy(pr, None),
            "ece": metrics.ece(pr, None), "ece_signed": metrics.ece_signed(pr, None),
            "ece_adaptive": metrics.ece(pr, None, 15, "adaptive"), "ece_classwise": metrics.ece(pr, None, 15, "classwise"),
            "auroc": metrics.misclassification_auroc(pr, None), "acc_90": metrics.acc_90(pr, None),
            "unc_90": metrics.unc_90(pr, None), "freq_90": metrics.freq_90(pr, None), "iou": metrics.iou(pr, None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=("process", "wall"), default="process")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    source = make_synthetic("test", size=args.images)
    mean, std = NORMALIZATION["synthetic"]
    torch.manual_seed(0)
    model = create_model("resnet18", method="mcdo", smoothing="tanh-blur", width=args.width, num_classes=10,
                         dataset="synthetic", mean=mean, std=std).eval()
    cpu = torch.device("cpu")

    def paper() -> None:
        out = predict([model], source, SIZES, batch_size=args.batch_size, device=cpu, announce=False, diversity=False)
        for k in SIZES:
            paper_metrics(out.probs[k], out.labels)

    def everything() -> None:
        out = predict([model], source, SIZES, batch_size=args.batch_size, device=cpu, announce=False)
        for k in SIZES:
            metrics.summarize(out.probs[k], out.labels, members=out.diversity(k))

    t_paper, t_all = best_of(paper, args.repeats, clock), best_of(everything, args.repeats, clock)
    print(f"resnet18 mcdo tanh-blur width {args.width}, {args.images} images, sizes {SIZES}, {args.threads} thread(s), "
          f"{args.clock} time, best of {args.repeats}")
    print(f"paper metrics: {t_paper:.3f} s")
    print(f"all metrics:   {t_all:.3f} s")
    print(f"ratio all / paper: {t_all / t_paper:.3f} (goal: at most 1.10)")


if __name__ == "__main__":
    main()
