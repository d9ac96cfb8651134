"""Throughput of ``smoothbench.corruptions.corrupt``: images/s per corruption and the two speed goals.

    python benchmarks/corrupt_throughput.py [--threads 1] [--device cpu] [--n32 2000] [--n224 16]
        [--severities 1,2,3,4,5] [--repeats 2] [--ic-python /tmp/icvenv/bin/python [--n-ic 8] [--ic-raw]]
        [--reference-dir PATH/robustness --reference-python /tmp/refenv/bin/python --n-reference 200]

Random-pixel images (as in the reference timings of peers.md section 4): ``--n32`` 32x32 images with
the CIFAR table, ``--n224`` 224x224 images with the ImageNet table. torch runs on one thread unless
``--threads`` says otherwise (the goals are for one core). Each (corruption, severity) is timed
``--repeats`` times and the fastest run kept (the machine is shared). Printed per corruption:
images/s and ms/image (wall and CPU time of this process); then totals for all 19 (and the 15
common) against the reference scripts measured on one core of a 2-core VM (peers.md: make_cifar_c.py
23.4 ms/img at severity 3, 34.9 at severity 5, full CIFAR-10-C ~25 min; make_imagenet_c.py 1.43 s/img
at severity 3); with ``--reference-dir``/``--reference-python``, against the reference functions
timed here, on the same machine and images, by CPU time of one process (see parity_reference.py for
how they are loaded); and with ``--ic-python`` (an interpreter where ``imagecorruptions`` is
installed: ``python3 -m venv /tmp/icvenv && /tmp/icvenv/bin/pip install imagecorruptions``), against
imagecorruptions' ``corrupt(image, corruption_name=..., severity=...)`` on the first ``--n-ic`` of the same
224-px images, in a subprocess of that interpreter (ImageNet parameters, one image per call as its API
takes them, every library on one thread, CPU time; see ``_IC_WORKER`` for the compatibility shims, off with
``--ic-raw``; corruptions that still fail are reported as such), per corruption and in total. Last, the
two goals, by CPU time:

- ``CIFAR-10-C full set projected``: 10,000 images x 19 corruptions x 5 severities at the measured
  32-px rates (the mean of the severities timed stands in for missing ones), against the reference's
  ~1500 s (or its rate measured here); goal >= 20x, i.e. <= 75 s.
- ``ImageNet common 15``: ms per 224-px image for the 15 common corruptions, mean over the
  severities timed; goal <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE_MS_32 = {3: 23.4, 5: 34.9}  # make_cifar_c.py, all 19, one core (peers.md section 4)
REFERENCE_MS_224 = {3: 1430.0}  # make_imagenet_c.py functions, all 19, severity 3
REFERENCE_FULL_CIFAR_C_S = 1500.0  # make_cifar_c.py, 50,000 images x 19, one core: ~25 min (peers.md)
GOAL_CIFAR_SPEEDUP = 20.0
GOAL_IMAGENET_COMMON_MS = 50.0

# Runs in the imagecorruptions interpreter (no torch needed there): one thread for every library, as ours.
# PyPI imagecorruptions 1.1.2 calls skimage's gaussian(multichannel=True) (deprecated in scikit-image 0.19 for
# channel_axis, gone by 0.20) and np.float_ (removed in numpy 2), so glass_blur, gaussian_blur and fog fail on
# today's stack (peers.md section 4). Unless --ic-raw, the worker maps both to their successors before importing it.
_IC_WORKER = r"""
import inspect, json, sys, time
import numpy as np
spec = json.load(open(sys.argv[1]))
shims = []
if spec["shims"]:
    if not hasattr(np, "float_"):
        np.float_ = np.float64
        shims.append("np.float_ -> np.float64")
    import skimage.filters
    _gaussian = skimage.filters.gaussian
    if "multichannel" not in inspect.signature(_gaussian).parameters:
        def gaussian(image, *args, multichannel=None, **kwargs):
            if multichannel is not None:
                kwargs.setdefault("channel_axis", -1 if multichannel else None)
            return _gaussian(image, *args, **kwargs)
        skimage.filters.gaussian = gaussian
        shims.append("skimage gaussian(multichannel=) -> channel_axis")
try:
    import cv2
    cv2.setNumThreads(1)
except ImportError:
    pass
from imagecorruptions import corrupt, get_corruption_names
imgs = np.load(spec["images"])
out = {"shims": shims, "ms": {}}
for name in get_corruption_names("all"):
    for sev in spec["severities"]:
        try:
            corrupt(imgs[0], corruption_name=name, severity=sev)  # warm-up (lazy imports, caches)
            t, c = time.perf_counter(), time.process_time()
            for img in imgs:
                corrupt(img, corruption_name=name, severity=sev)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            out["ms"][f"{name}/{sev}"] = {"wall": wall / len(imgs) * 1000, "cpu": cpu / len(imgs) * 1000}
        except Exception as exc:
            out["ms"][f"{name}/{sev}"] = f"fails: {type(exc).__name__}: {str(exc)[:80]}"
json.dump(out, open(spec["out"], "w"))
"""

_LEFT_OUT: set[str] = set()  # corruptions that cannot run here (frost without its textures), filled by main()


def _names(subset: str) -> list[str]:
    """The engine's corruption names of ``subset`` (see ``smoothbench.corruptions.names``), minus those left out."""
    from smoothbench.corruptions import names

    return [n for n in names(subset) if n not in _LEFT_OUT]


ONE_THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}


def _time_ours(images: np.ndarray, table: str, severities: list[int], device: str, frost_dir: str | None,
               repeats: int) -> tuple[dict, dict]:
    """Wall-clock and CPU (process) milliseconds per image for every corruption and severity (best of
    ``repeats`` runs each)."""
    from smoothbench.corruptions import corrupt

    times, cpu = {}, {}
    for name in _names("all"):
        for sev in severities:
            corrupt(images[:2], name, sev, params=table, device=device, frost_dir=frost_dir)  # warm caches
            for _ in range(repeats):
                t, c = time.perf_counter(), time.process_time()
                corrupt(images, name, sev, params=table, device=device, frost_dir=frost_dir)
                if device.startswith("cuda"):
                    import torch

                    torch.cuda.synchronize()
                key = f"{name}/{sev}"
                times[key] = min(times.get(key, np.inf), (time.perf_counter() - t) / len(images) * 1000)
                cpu[key] = min(cpu.get(key, np.inf), (time.process_time() - c) / len(images) * 1000)
    return times, cpu


def _time_ic(python: str, images: np.ndarray, severities: list[int], shims: bool) -> dict:
    """imagecorruptions' wall and CPU ms/image per ``name/severity`` (or ``"fails: ..."``), and the shims used."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "imgs.npy"), images)
        spec = {"images": os.path.join(tmp, "imgs.npy"), "severities": severities, "out": os.path.join(tmp, "out.json"),
                "shims": shims}
        Path(tmp, "spec.json").write_text(json.dumps(spec))
        Path(tmp, "worker.py").write_text(_IC_WORKER)
        subprocess.run([python, "-W", "ignore", os.path.join(tmp, "worker.py"), os.path.join(tmp, "spec.json")],
                       check=True, env={**os.environ, **ONE_THREAD_ENV})
        return json.loads(Path(spec["out"]).read_text())


def _time_reference(args, images: np.ndarray, table: str, severities: list[int]) -> dict:
    """Per-corruption CPU ms/image of the reference functions on this machine; summed as ``total/<sev>``."""
    from parity_reference import reference_cpu_ms

    jobs = [(table, name, s, 0) for name in _names("all") for s in severities]
    times = reference_cpu_ms(args.reference_python, args.reference_dir, {table: images}, jobs)
    return {f"{name}/{s}": times[f"{table}/{name}/{s}/0"] for name in _names("all") for s in severities}


def _report(title: str, wall: dict, cpu: dict, severities: list[int], n: int, ic: dict | None, reference: dict,
            measured_ref: dict | None = None) -> dict:
    """Print per-corruption rates and totals; ratios use CPU time (fair on a shared machine) and wall time."""
    print(f"\n== {title}: {n} images per call; ms/img as wall-clock and CPU (process) time")
    print(f"{'corruption':18}" + "".join(f" | s{s} img/s  wall ms   cpu ms" + (" ref cpu  ratio" if measured_ref else "")
                                         + (" IC cpu  ratio" if ic else "") for s in severities))
    totals = {}
    for name in _names("all"):
        line = f"{name:18}"
        for s in severities:
            w, c = wall[f"{name}/{s}"], cpu[f"{name}/{s}"]
            line += f" | {1000 / w:8.0f} {w:8.3f} {c:8.3f}"
            if measured_ref:
                r = measured_ref[f"{name}/{s}"]
                line += f" {r:7.2f} {r / c:5.0f}x"
            if ic:
                v = ic.get(f"{name}/{s}")
                line += f" {v['cpu']:7.2f} {v['cpu'] / c:5.1f}x" if isinstance(v, dict) else f" {'fails':>7} {'':6}"
        print(line)
    for s in severities:
        tot = {k: sum(d[f"{n_}/{s}"] for n_ in _names(subset)) for k, d, subset in
               [("all19_wall_ms", wall, "all"), ("all19_cpu_ms", cpu, "all"), ("common15_wall_ms", wall, "common"),
                ("common15_cpu_ms", cpu, "common")]}
        totals[s] = tot
        n_all, n_common = len(_names("all")), len(_names("common"))  # 19 and 15 unless some are left out
        msg = (f"severity {s}: all {n_all} = {tot['all19_wall_ms']:.3f} ms/img wall, {tot['all19_cpu_ms']:.3f} ms/img CPU; "
               f"{n_common} common = {tot['common15_wall_ms']:.3f} wall, {tot['common15_cpu_ms']:.3f} CPU")
        if s in reference:
            msg += (f"\n   reference (peers.md, one core, unloaded) {reference[s]} ms/img: {reference[s] / tot['all19_cpu_ms']:.1f}x faster by CPU time, "
                    f"{reference[s] / tot['all19_wall_ms']:.1f}x by wall time")
        if measured_ref:
            ref_all = sum(measured_ref[f"{n_}/{s}"] for n_ in _names("all"))
            ref_common = sum(measured_ref[f"{n_}/{s}"] for n_ in _names("common"))
            tot.update(reference_all19_cpu_ms=ref_all, reference_common15_cpu_ms=ref_common)
            msg += (f"\n   reference measured here (CPU time): all {n_all} {ref_all:.2f} ms/img -> {ref_all / tot['all19_cpu_ms']:.1f}x; "
                    f"{n_common} common {ref_common:.2f} ms/img -> {ref_common / tot['common15_cpu_ms']:.1f}x")
        if ic:
            for subset in ("common", "all"):
                ok = [n_ for n_ in _names(subset) if isinstance(ic.get(f"{n_}/{s}"), dict)]
                ic_cpu, our_cpu = sum(ic[f"{n_}/{s}"]["cpu"] for n_ in ok), sum(cpu[f"{n_}/{s}"] for n_ in ok)
                ic_wall, our_wall = sum(ic[f"{n_}/{s}"]["wall"] for n_ in ok), sum(wall[f"{n_}/{s}"] for n_ in ok)
                msg += (f"\n   imagecorruptions, {len(ok)} of the {len(_names(subset))} {subset} that run: {ic_cpu:.1f} vs ours "
                        f"{our_cpu:.2f} CPU ms/img -> {ic_cpu / our_cpu:.1f}x (wall {ic_wall:.1f} vs {our_wall:.2f}: "
                        f"{ic_wall / our_wall:.1f}x)")
        print(msg)
    return totals


def _ic_summary(cpu: dict, ic: dict, severities: list[int]) -> None:
    """Per corruption, mean over ``severities`` of CPU ms/image: ours, imagecorruptions, and their ratio."""
    print(f"\n== ours vs imagecorruptions, 224 px, CPU ms/img (one thread each), mean of severities "
          f"{','.join(map(str, severities))}")
    print(f"{'corruption':18} {'ours':>8} {'IC':>9} {'IC/ours':>8}")
    for subset in ("common", "extra"):
        for name in _names(subset):
            ours = float(np.mean([cpu[f"{name}/{s}"] for s in severities]))
            runs = [ic[f"{name}/{s}"] for s in severities if isinstance(ic.get(f"{name}/{s}"), dict)]
            if len(runs) < len(severities):
                print(f"{name:18} {ours:8.3f} {'fails':>9}")
                continue
            theirs = float(np.mean([r["cpu"] for r in runs]))
            print(f"{name:18} {ours:8.3f} {theirs:9.2f} {theirs / ours:7.1f}x")
        ok = [n_ for n_ in _names(subset) if all(isinstance(ic.get(f"{n_}/{s}"), dict) for s in severities)]
        ours = sum(np.mean([cpu[f"{n_}/{s}"] for s in severities]) for n_ in ok)
        theirs = sum(np.mean([ic[f"{n_}/{s}"]["cpu"] for s in severities]) for n_ in ok)
        print(f"{'total ' + subset + f' ({len(ok)})':18} {ours:8.3f} {theirs:9.2f} {theirs / ours:7.1f}x")


def _goal_lines(result: dict, sevs: list[int]) -> list[str]:
    """The two goal figures (CPU time): CIFAR-10-C full-set projection and ImageNet common-15 ms/img."""
    lines = []
    if "cifar" in result:
        totals = result["cifar"]["totals"]
        per_severity = np.mean([totals[s]["all19_cpu_ms"] for s in sevs])  # ms per image, all 19
        ours = per_severity * 5 * 10_000 / 1000
        ref = REFERENCE_FULL_CIFAR_C_S
        source = "peers.md, one core"
        if result["cifar"]["reference_cpu_ms"]:
            ref = np.mean([totals[s]["reference_all19_cpu_ms"] for s in sevs]) * 5 * 10_000 / 1000
            source = "measured here"
        lines.append(f"CIFAR-10-C full set projected: {ours:.1f} s vs reference {ref:.0f} s ({ref / ours:.1f}x; "
                     f"reference {source}; goal >= {GOAL_CIFAR_SPEEDUP:.0f}x = {ref / GOAL_CIFAR_SPEEDUP:.0f} s)")
        result["goals"] = {"cifar10c_full_s": ours, "cifar10c_reference_s": ref, "cifar10c_speedup": ref / ours}
    if "imagenet" in result:
        totals = result["imagenet"]["totals"]
        ms = float(np.mean([totals[s]["common15_cpu_ms"] for s in sevs]))
        lines.append(f"ImageNet common 15: {ms:.1f} ms/img (goal {GOAL_IMAGENET_COMMON_MS:.0f}; "
                     f"mean of severities {','.join(map(str, sevs))})")
        result.setdefault("goals", {})["imagenet_common15_ms"] = ms
    if "frost" in _LEFT_OUT:  # the totals cover 18 / 14 corruptions: not comparable with the goals
        lines = [f"{line} [frost LEFT OUT: 18/14 corruptions, NOT comparable with the goal]" for line in lines]
        result.setdefault("goals", {})["frost_left_out"] = True
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the goals are per core)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n32", type=int, default=2000)
    ap.add_argument("--n224", type=int, default=16)
    ap.add_argument("--severities", default="1,2,3,4,5")
    ap.add_argument("--repeats", type=int, default=2, help="runs per corruption and severity; the fastest counts")
    ap.add_argument("--frost-dir", default=os.environ.get("SMOOTHBENCH_FROST_DIR"))
    ap.add_argument("--ic-python", help="interpreter with imagecorruptions installed (optional)")
    ap.add_argument("--n-ic", type=int, default=8, help="224-px images timed through imagecorruptions")
    ap.add_argument("--ic-raw", action="store_true", help="run imagecorruptions without the compatibility shims")
    ap.add_argument("--reference-dir", help="hendrycks/robustness checkout, to time the reference here (optional)")
    ap.add_argument("--reference-python", help="interpreter with the reference's dependencies")
    ap.add_argument("--n-reference", type=int, default=100, help="32-px images for the reference timing (224-px: n224 // 4)")
    ap.add_argument("--json", help="write all timings to this JSON file")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    torch.set_num_threads(args.threads)
    from smoothbench.corruptions.frost import resolve_frost_dir
    from smoothbench.errors import UserError

    try:
        resolve_frost_dir(args.frost_dir)
    except UserError as err:
        _LEFT_OUT.add("frost")
        print(f"frost LEFT OUT of every total below (they cover 18 and 14 corruptions): {err}")
    sevs = [int(s) for s in args.severities.split(",")]
    rng = np.random.default_rng(0)
    result = {"threads": torch.get_num_threads(), "device": args.device, "severities": sevs, "repeats": args.repeats}
    print(f"torch threads: {torch.get_num_threads()}, device {args.device}, severities {sevs}, best of {args.repeats}")
    if args.n32:
        imgs = rng.integers(0, 256, size=(args.n32, 32, 32, 3), dtype=np.uint8)
        w32, c32 = _time_ours(imgs, "cifar", sevs, args.device, args.frost_dir, args.repeats)
        ref32 = _time_reference(args, imgs[: args.n_reference], "cifar", sevs) if args.reference_dir else None
        totals = _report("32 px, CIFAR table", w32, c32, sevs, args.n32, None, REFERENCE_MS_32, ref32)
        result["cifar"] = {"wall_ms": w32, "cpu_ms": c32, "reference_cpu_ms": ref32, "totals": totals}
    if args.n224:
        imgs = rng.integers(0, 256, size=(args.n224, 224, 224, 3), dtype=np.uint8)
        w224, c224 = _time_ours(imgs, "imagenet", sevs, args.device, args.frost_dir, args.repeats)
        ic_run = _time_ic(args.ic_python, imgs[: args.n_ic], sevs, not args.ic_raw) if args.ic_python else None
        ic = ic_run["ms"] if ic_run else None
        if ic_run:
            print(f"imagecorruptions on {min(args.n_ic, len(imgs))} images; shims: {', '.join(ic_run['shims']) or 'none'}")
        ref224 = _time_reference(args, imgs[: max(1, args.n224 // 4)], "imagenet", sevs) if args.reference_dir else None
        result["imagenet"] = {"wall_ms": w224, "cpu_ms": c224, "imagecorruptions_ms": ic, "reference_cpu_ms": ref224,
                              "totals": _report("224 px, ImageNet table", w224, c224, sevs, args.n224, ic, REFERENCE_MS_224, ref224)}
        if ic:
            _ic_summary(c224, ic, sevs)
    print()
    for line in _goal_lines(result, sevs):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
