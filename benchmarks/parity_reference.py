"""Parity of smoothbench's corruptions with the reference creation scripts (hendrycks/robustness).

    python benchmarks/parity_reference.py --reference-dir PATH/robustness \
        --reference-python /tmp/refenv/bin/python [--n-cifar 200] [--seeds 4]

The reference functions run in a *second* interpreter (``--reference-python``) that has their
dependencies (numpy, scipy, scikit-image, opencv-python-headless, Pillow, Wand + ImageMagick); this
file is the worker there too (it needs no torch there). The worker reads ``make_cifar_c.py`` and
``make_imagenet_c.py`` from the checkout, keeps the function definitions (everything before
"End Distortions"), applies in memory the edits they need on today's stack (see
docs: corruption-notes "Running them today") and runs them per image, as the scripts do. Nothing of the
checkout is copied into smoothbench. scikit-image >= 0.19 draws impulse noise from its own generator; the
worker hands it numpy's global stream instead, as the reference era did.

Three comparisons on real CIFAR-10 test images (``--n-cifar``, CIFAR table) and 224x224 photos
(scikit-image sample photos through ``imagenet_preprocess``, ImageNet table):

- ``exact``: corruptions without random draws; per-pixel |ours - reference| (goal: <= 1).
- ``replay``: random corruptions whose draws we can replay: the reference draws from
  ``np.random.seed(s)``; we draw the same arrays from ``RandomState(s)`` in the same order and feed
  them to our ``*_apply`` function; per-pixel |diff| (goal: <= 1).
- ``dist``: every random corruption, our seeded generators vs reference seeds: mean and std of the
  per-pixel change (output - clean) per seed; ``z`` = |our mean - reference mean| / reference
  seed-to-seed sd (goal: within the spread, z <= 3, or |diff| <= 0.02 grey levels).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
          "elastic_transform", "snow", "frost", "fog", "spatter")
REPLAYABLE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
              "elastic_transform")
SCRIPTS = {"cifar": "make_cifar_c.py", "imagenet": "make_imagenet_c.py"}
# Edits the 2018 scripts need to run on numpy 2 / scipy 1.17 / scikit-image 0.26 (corruption-notes.md).
EDITS = (
    ("from scipy.ndimage.interpolation import map_coordinates", "from scipy.ndimage import map_coordinates"),
    ("np.float_", "np.float64"),
    ("multichannel=True", "channel_axis=-1"),
    ("np.fromstring", "np.frombuffer"),
)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "retina", "hubble_deep_field", "immunohistochemistry", "colorwheel")


# ---------------------------------------------------------------- worker (reference interpreter)
class _Stub:
    """Stand-in for torch/torchvision, which the scripts import for their data loops only."""

    Dataset = object

    def __getattr__(self, name):
        return _Stub()


def _import_without_torch(name, globals=None, locals=None, fromlist=(), level=0):
    if name.split(".")[0] in ("torch", "torchvision"):
        return _Stub()
    return __import__(name, globals, locals, fromlist, level)


def _load_reference(create_c: Path, table: str) -> dict:
    """Exec the distortion functions of the reference script into a namespace."""
    import builtins
    src = (create_c / SCRIPTS[table]).read_text()
    src = src.split("# /////////////// End Distortions ///////////////")[0]
    for old, new in EDITS:
        src = src.replace(old, new)
    ns: dict = {"__name__": f"reference_{table}", "__builtins__": dict(vars(builtins), __import__=_import_without_torch)}
    exec(compile(src, str(create_c / SCRIPTS[table]), "exec"), ns)
    original = ns["sk"].util.random_noise

    def random_noise_global(image, mode, amount):
        global_stream = np.random.Generator(np.random.mtrand._rand._bit_generator)
        return original(image, mode=mode, amount=amount, rng=global_stream)

    ns["sk"] = _SkProxy(ns["sk"], random_noise_global)
    return ns


class _SkProxy:
    """``sk`` with ``sk.util.random_noise`` drawing from numpy's global state."""

    def __init__(self, sk, random_noise):
        self._sk = sk
        self.util = type("util", (), {"random_noise": staticmethod(random_noise)})

    def __getattr__(self, name):
        return getattr(self._sk, name)


def worker(spec_file: str) -> None:
    from PIL import Image

    spec = json.loads(Path(spec_file).read_text())
    create_c = Path(spec["reference_dir"]) / "ImageNet-C" / "create_c"
    if spec["mode"] == "photos":
        import skimage.data

        photos = {p: np.asarray(getattr(skimage.data, p)()) for p in PHOTOS}
        with open(spec["out"], "wb") as fh:
            pickle.dump(photos, fh)
        return
    images = dict(np.load(spec["images"]))
    os.chdir(create_c)  # frost reads ./frostN.png
    tables = {t: _load_reference(create_c, t) for t in {job[0] for job in spec["jobs"]}}
    results = {}
    for k, (table, name, severity, seed) in enumerate(spec["jobs"]):
        fn = tables[table][name]
        np.random.seed(seed)
        start = time.process_time()
        outs = [np.uint8(fn(Image.fromarray(img), severity)) for img in images[table]]
        cpu_ms = (time.process_time() - start) / len(outs) * 1000
        results[f"{table}/{name}/{severity}/{seed}"] = np.array(cpu_ms) if spec["mode"] == "time" else np.stack(outs)
        print(f"[reference] {k + 1}/{len(spec['jobs'])} {table} {name} s{severity} seed {seed}", file=sys.stderr, flush=True)
    np.savez_compressed(spec["out"], **results)


def reference_cpu_ms(python: str, reference_dir: str, images: dict, jobs: list) -> dict:
    """CPU milliseconds per image of the reference functions (one process) for ``jobs``
    ``(table, name, severity, seed)`` on ``images[table]``; used by corrupt_throughput.py."""
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(os.path.join(tmp, "images.npz"), **images)
        out = os.path.join(tmp, "times.npz")
        _run_worker(python, {"mode": "time", "reference_dir": reference_dir, "images": os.path.join(tmp, "images.npz"),
                             "jobs": jobs, "out": out})
        return {k: float(v) for k, v in np.load(out).items()}


def _run_worker(python: str, spec: dict) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(spec, fh)
    subprocess.run([python, __file__, "--_worker", fh.name], check=True)
    os.unlink(fh.name)


# ---------------------------------------------------------------- main (smoothbench interpreter)
def _cifar_images(cifar_dir: Path, n: int) -> np.ndarray:
    with open(cifar_dir / "cifar-10-batches-py" / "test_batch", "rb") as fh:
        batch = pickle.load(fh, encoding="bytes")
    return batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)[:n].copy()


def _replay(name: str, c, imgs: np.ndarray, seed: int) -> np.ndarray:
    """Our ``*_apply`` on the arrays the reference draws after ``np.random.seed(seed)``."""
    import torch

    from smoothbench.corruptions import blur, digital, noise

    rs = np.random.RandomState(seed)
    n, s = imgs.shape[0], imgs.shape[1]
    x = torch.from_numpy(imgs).float() / 255

    def per_image(draw):
        return [draw(i) for i in range(n)]

    t = lambda arrs: torch.as_tensor(np.stack(arrs), dtype=torch.float64)  # noqa: E731
    if name == "gaussian_noise":
        y = noise.gaussian_noise_apply(x, c, t(per_image(lambda i: rs.standard_normal((s, s, 3)))))
    elif name == "speckle_noise":
        y = noise.speckle_noise_apply(x, c, t(per_image(lambda i: rs.standard_normal((s, s, 3)))))
    elif name == "shot_noise":
        y = noise.shot_noise_apply(c, t(per_image(lambda i: rs.poisson(imgs[i] / 255.0 * c))))
    elif name == "impulse_noise":
        pairs = per_image(lambda i: (rs.random_sample((s, s, 3)), rs.random_sample((s, s, 3))))
        y = noise.impulse_noise_apply(x, c, t([a for a, _ in pairs]), t([b for _, b in pairs]))
    elif name == "glass_blur":
        sigma, d, iters = c
        shifts = np.stack(per_image(lambda i: rs.randint(-d, d, size=(iters, s - 2 * d, s - 2 * d, 2))))
        y = blur.glass_blur_apply(x, sigma, d, shifts)
    elif name == "motion_blur":
        y = blur.motion_blur_apply(x, c[0], c[1], np.array(per_image(lambda i: rs.uniform(-45, 45))))
    elif name == "elastic_transform":
        draws = per_image(lambda i: (rs.uniform(-c[2], c[2], size=(3, 2)), rs.uniform(-1, 1, (s, s)), rs.uniform(-1, 1, (s, s))))
        y = digital.elastic_apply(x, c, *(np.stack([d[k] for d in draws]) for k in range(3)))
    else:
        raise ValueError(name)
    return torch.floor(y).clamp(0, 255).to(torch.uint8).numpy()


def _diff_stats(ours: np.ndarray, ref: np.ndarray) -> dict:
    d = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    return {"max": int(d.max()), "frac_gt0": float((d > 0).mean()), "frac_gt1": float((d > 1).mean()),
            "mean_signed": float((ours.astype(np.float64) - ref).mean())}


def _change(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    d = out.astype(np.float64) - clean
    return float(d.mean()), float(d.std())


def _spread(ref: np.ndarray, ours: np.ndarray) -> dict:
    """Seed-to-seed spread of the per-seed (mean, std) of the change, pooled over both sides (same
    distribution under the null), and whether our averages lie within 3 spreads of the reference's."""
    sd = np.sqrt((ref.var(axis=0, ddof=1) + ours.var(axis=0, ddof=1)) / 2) if len(ref) > 1 else np.zeros(2)
    gap = np.abs(ours.mean(axis=0) - ref.mean(axis=0))
    z = np.where(sd > 0, gap / np.where(sd > 0, sd, 1), np.where(gap > 0, np.inf, 0))
    return {"seed_sd_mean": float(sd[0]), "z": float(z[0]), "z_std": float(z[1]),
            "dist_ok": bool(np.all((gap <= 3 * sd) | (gap <= 0.02)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference-dir", help="checkout of hendrycks/robustness (required)")
    ap.add_argument("--reference-python", default=sys.executable, help="interpreter with the reference's dependencies")
    ap.add_argument("--cifar-dir", default=os.environ.get("SMOOTHBENCH_CIFAR10_DIR"), help="folder holding cifar-10-batches-py/")
    ap.add_argument("--n-cifar", type=int, default=200)
    ap.add_argument("--n-imagenet", type=int, default=4, help="224-px photos (at most %d)" % len(PHOTOS))
    ap.add_argument("--seeds", type=int, default=4, help="seeds per side for the distribution comparison")
    ap.add_argument("--imagenet-seeds", type=int, default=2)
    ap.add_argument("--corruptions", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--tables", default="cifar,imagenet")
    ap.add_argument("--severities", default="1,2,3,4,5")
    ap.add_argument("--json", help="also write all numbers to this JSON file")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        return worker(args._worker)

    if not args.reference_dir:
        ap.error("--reference-dir is required")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from smoothbench.corruptions import PARAMS, corrupt, imagenet_preprocess, names
    from smoothbench.corruptions.registry import get_corruption
    from smoothbench.errors import UserError

    def available(name: str) -> bool:
        try:
            return get_corruption(name) is not None
        except UserError:
            return False

    if not args.cifar_dir:
        sys.exit("set --cifar-dir or SMOOTHBENCH_CIFAR10_DIR to a folder holding cifar-10-batches-py/")
    tables = args.tables.split(",")
    sevs = [int(s) for s in args.severities.split(",")]
    wanted = names("all") if args.corruptions == "all" else args.corruptions.split(",")
    wanted = [n for n in wanted if available(n)]
    images = {}
    if "cifar" in tables:
        images["cifar"] = _cifar_images(Path(args.cifar_dir), args.n_cifar)
    with tempfile.TemporaryDirectory() as tmp:
        if "imagenet" in tables:
            photos_file = os.path.join(tmp, "photos.pkl")
            _run_worker(args.reference_python, {"mode": "photos", "reference_dir": args.reference_dir, "out": photos_file})
            with open(photos_file, "rb") as fh:
                photos = pickle.load(fh)
            images["imagenet"] = np.stack([imagenet_preprocess(photos[p]) for p in PHOTOS[: args.n_imagenet]])
        n_seeds = {"cifar": args.seeds, "imagenet": args.imagenet_seeds}
        jobs = []
        for table in tables:
            for name in wanted:
                for sev in sevs:
                    seeds = [0] if name not in RANDOM else ([0] if name in REPLAYABLE else []) + [1000 + k for k in range(n_seeds[table])]
                    jobs += [(table, name, sev, seed) for seed in seeds]
        np.savez(os.path.join(tmp, "images.npz"), **images)
        ref_file = os.path.join(tmp, "ref.npz")
        _run_worker(args.reference_python, {"mode": "run", "reference_dir": args.reference_dir, "images": os.path.join(tmp, "images.npz"),
                                            "jobs": jobs, "out": ref_file})
        ref = dict(np.load(ref_file))

    report = []
    print(f"{'table':8} {'corruption':18} sev {'kind':6} {'max|d|':>6} {'%>0':>7} {'%>1':>7}   change (output - clean): reference / ours")
    for table in tables:
        clean = images[table]
        for name in wanted:
            for sev in sevs:
                c = PARAMS[table][name][sev - 1]
                row = {"table": table, "corruption": name, "severity": sev}
                if name not in RANDOM or name in REPLAYABLE:
                    key = f"{table}/{name}/{sev}/0"
                    ours = _replay(name, c, clean, 0) if name in RANDOM else corrupt(clean, name, sev, params=table)
                    row.update(kind="replay" if name in RANDOM else "exact", **_diff_stats(ours, ref[key]))
                if name in RANDOM:
                    rs = np.array([_change(ref[f"{table}/{name}/{sev}/{1000 + k}"], clean) for k in range(n_seeds[table])])
                    os_ = np.array([_change(corrupt(clean, name, sev, params=table, seed=k), clean) for k in range(n_seeds[table])])
                    row.update(ref_mean=rs[:, 0].mean(), our_mean=os_[:, 0].mean(), ref_std=rs[:, 1].mean(), our_std=os_[:, 1].mean(),
                               **_spread(rs, os_))
                report.append(row)
                exact = f"{row['max']:6d} {100 * row['frac_gt0']:6.3f}% {100 * row['frac_gt1']:6.3f}%" if "max" in row else " " * 22
                dist = (f"  mean {row['ref_mean']:+7.3f} / {row['our_mean']:+7.3f} (seed sd {row['seed_sd_mean']:.3f}, z={row['z']:4.1f})"
                        f"  std {row['ref_std']:6.2f} / {row['our_std']:6.2f} (z={row['z_std']:4.1f}) {'ok' if row['dist_ok'] else 'OUT'}") if "z" in row else ""
                print(f"{table:8} {name:18} {sev:3d} {row.get('kind', 'dist'):6} {exact}{dist}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
