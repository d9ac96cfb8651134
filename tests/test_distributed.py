"""Distributed training and sharded evaluation on the CPU (gloo, 2 processes) against one process.

The data are a tiny folder in the official CIFAR-10 python layout filled with smoothbench's synthetic
images (333 train, 100 test), so every process loads them in milliseconds through the real CIFAR loader.
Multi-process runs are real: one ``torch.multiprocessing`` spawn of 2 processes runs the library-level
checks inside a gloo group (collectives, SyncBatchNorm, two training runs, consistency), then
``smoothbench train --nproc 2`` and ``python -m torch.distributed.run ... -m smoothbench eval / corrupt``
subprocesses run the CLI. Every process start imports torch and torchvision (seconds on a busy machine),
so the checks are grouped into few launches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import smoothbench
from conftest import RecordingProgress, train_config
from smoothbench.data.preprocess import Preprocess
from smoothbench import distributed
from smoothbench.cli_options import without_option
from smoothbench.data import ResidentImages
from smoothbench.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.filterwarnings("ignore:cifar10 .* differ from the official files"),
              pytest.mark.usefixtures("one_thread")]

# One configuration for every training run: 333 images, global batch 100 -> steps of 100, 100, 100 and an
# uneven last batch of 33 (17 + 16 images on two ranks); the low rate keeps the narrow ResNet's BatchNorm
# from amplifying float rounding, so one and two processes stay within 1e-5 over an epoch (without
# --sync-bn they differ by ~3e-3).
TRAIN = dict(arch="resnet18", width=4, dataset="cifar10", epochs=2, warmup_epochs=0, batch_size=100, lr=0.002,
             eval_subset=50, seed=0, device="cpu")
# A streaming ImageNet-style folder run: 3 classes x 5 images, global batch 6 -> steps of 6, 6 and 3 (2 + 1).
FOLDER_TRAIN = dict(arch="resnet18", width=4, dataset="imagenet", epochs=1, warmup_epochs=0, batch_size=6, lr=0.002,
                    seed=0, device="cpu", workers=0, sync_bn=True)
EVAL_METRICS = ("nll", "brier", "entropy", "ece", "ece_signed", "ece_adaptive", "ece_classwise", "auroc_misclf")


class Killed(Exception):
    """Stands in for a crash right after an epoch's checkpoint."""


# ----------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory) -> Path:
    """A CIFAR-10 python folder (5 train batches, test batch, meta) holding synthetic images."""
    from smoothbench.data.synthetic import CLASSES, make_synthetic

    root = tmp_path_factory.mktemp("c10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    train, test = make_synthetic("train", seed=5, size=333), make_synthetic("test", seed=5, size=100)

    def dump(name: str, source: ResidentImages) -> None:
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": source.images.reshape(len(source), -1).numpy(), b"labels": source.labels.tolist()},
                        handle)

    for i, rows in enumerate(np.array_split(np.arange(len(train)), 5)):
        dump(f"data_batch_{i + 1}", train.select(rows))
    dump("test_batch", test)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES]}, handle)
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """``train/`` and ``val/`` WNID folders of small noise images (3 classes, 5 train and 2 val images each)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("val", 2)):
        for c in range(3):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (24 + i, 28 + c, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def mc_model(cifar_dir, tmp_path_factory) -> Path:
    """A freshly initialised MC-dropout + tanh-blur ResNet-18 (width 4) for CIFAR-10, as a model file."""
    from smoothbench.models.registry import create_model, resolve_spec
    from smoothbench.models.store import save_model
    from smoothbench.training.config import model_spec, resolve_config

    torch.manual_seed(1)
    cfg = resolve_config(train_config(arch="resnet18", method="mcdo", smoothing="tanh-blur", width=4, dataset="cifar10"))
    model = create_model(resolve_spec(model_spec(cfg)))
    path = tmp_path_factory.mktemp("model") / "mc.pt"
    save_model(model.eval(), path, extra={"dataset": "cifar10"})
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200", OMP_NUM_THREADS="1")


def torchrun(*args: object, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node 2 -m smoothbench ARGS`` (CPU, gloo)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(free_port()), "-m", "smoothbench", *map(str, args)]
    proc = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def train_args(out: Path, cifar_dir: Path, *extra: str) -> list[str]:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in TRAIN.items()]
    return ["train", *flags, f"--data-dir={cifar_dir}", f"--out={out}", "--sync-bn", *extra]


def eval_settings(**changes):
    from smoothbench import EvalSettings

    return EvalSettings(**({"ensembles": "1,3", "batch_size": 16, "subset": 60, "device": "cpu"} | changes)).on_device()


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a model file / run folder, or of a checkpoint's model."""
    if path.name == "checkpoint.pt":
        return torch.load(path, weights_only=True)["model"]
    return smoothbench.load(path).state_dict()


def numeric_close(ours: pd.DataFrame, reference: pd.DataFrame, columns, *, tol: float = 1e-5) -> None:
    for column in columns:
        np.testing.assert_allclose(ours[column].to_numpy(float), reference[column].to_numpy(float), rtol=tol, atol=tol,
                                   err_msg=column)


def counts_equal(ours: pd.DataFrame, reference: pd.DataFrame, column: str = "acc") -> None:
    """Accuracies as counts of images (hand rule: count = fraction x n_images), compared exactly."""
    n = reference["n_images"].to_numpy(int)
    np.testing.assert_array_equal(np.round(ours[column].to_numpy(float) * n), np.round(reference[column].to_numpy(float) * n))


# ----------------------------------------------------------------------------------------------------------
# one process: shards and helpers


def test_shards_partition_the_rows_in_order():
    for n in range(0, 12):
        for world in range(1, 5):
            bounds = [distributed.shard_bounds(n, r, world) for r in range(world)]
            assert [i for start, stop in bounds for i in range(start, stop)] == list(range(n))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_epoch_images_drops_only_a_tail_smaller_than_the_world():
    assert distributed.epoch_images(333, 100, 2) == 333  # tail 33 >= 2 ranks
    assert distributed.epoch_images(301, 100, 2) == 300  # tail 1 < 2 ranks
    assert distributed.epoch_images(10, 4, 3) == 8  # tail 2 < 3
    assert distributed.epoch_images(12, 4, 3) == 12  # no tail
    assert distributed.epoch_images(301, 100, 1) == 301  # one process keeps everything


@pytest.mark.parametrize("world", [2, 3, 8])
def test_rank_slices_of_train_batches_make_up_the_one_process_batches(world):
    rng = np.random.default_rng(0)
    source = ResidentImages.from_numpy("synthetic", "train", rng.integers(0, 256, (23, 8, 8, 3), dtype=np.uint8),
                                       rng.integers(0, 10, 23), [str(i) for i in range(10)])
    args = dict(device="cpu", seed=4, epoch=1)
    single = list(source.train_batches(8, Preprocess((0.5,) * 3, (0.25,) * 3), **args))
    ranks = [list(source.train_batches(8, Preprocess((0.5,) * 3, (0.25,) * 3), rank=r, world=world, **args)) for r in range(world)]
    steps = {len(batches) for batches in ranks}
    assert steps == {3 if world < 8 else 2}  # world 8: the tail of 7 images cannot feed 8 ranks and is left out
    for step in range(steps.pop()):
        assert torch.equal(torch.cat([ranks[r][step][0] for r in range(world)]), single[step][0])
        assert torch.equal(torch.cat([ranks[r][step][1] for r in range(world)]), single[step][1])


def test_scaled_progress_reports_the_whole_set():
    seen = RecordingProgress()
    report = distributed.scaled_progress(seen, 3, 10)
    for _ in range(3):
        report.advance(1, "")
    assert seen.units == [3, 3, 4] and sum(seen.units) == 10  # floor(1*10/3), floor(2*10/3) - 3, 10 - 6


def test_one_process_helpers_are_identities():
    rows = np.arange(6.0).reshape(3, 2)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    assert distributed.gather_rows(rows) is rows
    assert distributed.on_main(lambda: 7) == 7
    assert distributed.all_gather_objects("x") == ["x"]


def test_without_option_drops_the_flag_and_its_value():
    argv = ["train", "--nproc", "2", "--epochs", "3", "--nproc=4", "--nprocs-like", "x"]
    assert without_option(argv, "--nproc") == ["train", "--epochs", "3", "--nprocs-like", "x"]


def test_nproc_inside_torchrun_is_a_user_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="inside torchrun"):
        distributed.launch(2, ["train"])


# ----------------------------------------------------------------------------------------------------------
# two processes in one spawn: collectives, SyncBatchNorm, a training run killed after epoch 1


def _spawned(rank: int, port: int, folder: str, data_dir: str, model_path: str, image_dir: str) -> None:
    """Rank ``rank`` of 2: runs every in-group check and writes what it saw to ``folder/rank<r>.json``."""
    import smoothbench.training.loop as train_module
    from torch import nn

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    report: dict[str, object] = {}
    device = distributed.setup("cpu")

    # gather_rows: uneven shards (rank r holds r + 2 rows) come back whole, in rank order, on every rank
    local = np.arange(10 * rank, 10 * rank + rank + 2, dtype=np.int64)[:, None] * np.ones((1, 3), np.int64)
    report["gathered"] = distributed.gather_rows(local)[:, 0].tolist()
    report["gathered_uint8"] = distributed.gather_rows(local.astype(np.uint8))[:, 0].tolist()

    # on_main: rank 0's value, and rank 0's UserError, reach every rank
    report["on_main"] = distributed.on_main(lambda: f"from rank {distributed.rank()}")
    try:
        distributed.on_main(lambda: (_ for _ in ()).throw(UserError("rank 0 refused")))
    except UserError as err:
        report["on_main_error"] = str(err)

    # SyncBatchNorm on the CPU: each rank holds half of a batch; outputs, input gradients, summed weight
    # gradients and running statistics equal plain BatchNorm over the whole batch in one process.
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5) * 3 + 1
    upstream = torch.randn(8, 3, 5, 5)
    plain = nn.BatchNorm2d(3)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5)
        plain.bias.uniform_(-1, 1)
    synced = distributed.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm2d(3)), device)[0]
    synced.load_state_dict(plain.state_dict())
    whole = x.clone().requires_grad_()
    expected = plain(whole)
    (expected * upstream).sum().backward()
    half = x[4 * rank : 4 * rank + 4].clone().requires_grad_()
    out = synced(half)
    (out * upstream[4 * rank : 4 * rank + 4]).sum().backward()
    report["syncbn_type"] = type(synced).__name__
    report["syncbn_out"] = (out - expected[4 * rank : 4 * rank + 4]).abs().max().item()
    report["syncbn_grad_x"] = (half.grad - whole.grad[4 * rank : 4 * rank + 4]).abs().max().item()
    report["syncbn_grad_w"] = (distributed.all_reduce_sum(synced.weight.grad) - plain.weight.grad).abs().max().item()
    report["syncbn_running"] = max((synced.running_mean - plain.running_mean).abs().max().item(),
                                   (synced.running_var - plain.running_var).abs().max().item())

    # a global batch that the processes cannot share evenly is refused with one line
    cfg = train_config(**TRAIN, data_dir=data_dir, sync_bn=True, out=os.path.join(folder, "run"))
    try:
        train_module.run_training(dataclasses.replace(cfg, batch_size=33))
    except UserError as err:
        report["batch_error"] = str(err)

    # training: after every step all ranks hold bit-identical parameters and buffers
    real_step = train_module.train_step
    digests: list[list[str]] = []

    def checked_step(model, *args, **kwargs):
        result = real_step(model, *args, **kwargs)
        state = b"".join(t.detach().contiguous().numpy().tobytes() for t in model.module.state_dict().values())
        digests.append(distributed.all_gather_objects(hashlib.sha256(state).hexdigest()))
        return result

    train_module.train_step = checked_step
    train_module.run_training(dataclasses.replace(cfg, out=os.path.join(folder, "full")))
    report["digests"] = digests
    # the same from a streaming image folder, each rank decoding only its slice of every global batch
    digests = []
    train_module.run_training(train_config(**FOLDER_TRAIN, data_dir=image_dir, out=os.path.join(folder, "folder")))
    report["folder_digests"] = digests
    train_module.train_step = real_step

    # the same run killed right after epoch 1's checkpoint
    def kill(row):
        raise Killed

    try:
        train_module.run_training(cfg, on_epoch=kill)
    except Killed:
        pass

    # consistency (ensemble sizes + a generated CIFAR-10-P perturbation): every rank gets all rows
    from smoothbench.corruptions.perturbations import perturb_sequence
    from smoothbench.data import get_dataset
    from smoothbench.evaluation.consistency_rows import perturbation_rows, size_consistency_rows
    from smoothbench.evaluation.members import load_members

    members, settings = load_members([model_path]), eval_settings(subset=12)
    source = get_dataset("cifar10", data_dir, "test", subset=12)
    clean = source.numpy_nhwc()
    rows = size_consistency_rows(members, source, settings)
    rows += perturbation_rows(members, lambda p: perturb_sequence(clean, p, seed=0, device="cpu"), ["translate"],
                              settings, source_kind="generated")
    report["consistency"] = rows
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as handle:
        json.dump(report, handle)
    distributed.cleanup()


@pytest.fixture(scope="module")
def spawned(tmp_path_factory, cifar_dir, mc_model, image_folder) -> tuple[Path, list[dict]]:
    """Run :func:`_spawned` on 2 processes; returns (folder, [report of rank 0, report of rank 1]).

    ``folder/full`` holds an uninterrupted 2-epoch run, ``folder/run`` the same run killed after epoch 1,
    ``folder/folder`` a run on the image folder.
    """
    folder = tmp_path_factory.mktemp("spawn")
    torch.multiprocessing.spawn(_spawned, args=(free_port(), str(folder), str(cifar_dir), str(mc_model),
                                                str(image_folder)), nprocs=2)
    return folder, [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def test_gathers_and_broadcasts_inside_a_group(spawned):
    _, reports = spawned
    for report in reports:
        assert report["gathered"] == [0, 1, 10, 11, 12]
        assert report["gathered_uint8"] == [0, 1, 10, 11, 12]
        assert report["on_main"] == "from rank 0"
        assert report["on_main_error"] == "rank 0 refused"
        assert "batch_size 33" in report["batch_error"] and "multiple of 2" in report["batch_error"]


def test_cpu_sync_batchnorm_equals_batchnorm_over_the_global_batch(spawned):
    _, reports = spawned
    for report in reports:
        assert report["syncbn_type"] == "CPUSyncBatchNorm"
        for key in ("syncbn_out", "syncbn_grad_x", "syncbn_grad_w", "syncbn_running"):
            assert report[key] < 1e-5, (key, report[key])


def test_ranks_hold_identical_weights_after_every_step(spawned):
    _, reports = spawned
    digests = reports[0]["digests"]
    assert len(digests) == 8  # 333 images at a global batch of 100: 4 steps per epoch, 2 epochs
    assert all(d[0] == d[1] for d in digests)
    assert len({d[0] for d in digests}) == 8  # and the weights did change every step
    assert reports[1]["digests"] == digests


def test_two_processes_match_one_process_after_an_epoch(spawned, cifar_dir, tmp_path):
    """The same global batches with SyncBatchNorm give the one-process weights up to float rounding."""
    from smoothbench import run_training

    folder, _ = spawned

    def kill(row):
        raise Killed(f"killed after epoch {row['epoch']}")

    with pytest.raises(Killed, match="killed after epoch 1"):
        run_training(train_config(**TRAIN, data_dir=str(cifar_dir), out=str(tmp_path / "one")), on_epoch=kill)
    one, two = weights(tmp_path / "one" / "checkpoint.pt"), weights(folder / "run" / "checkpoint.pt")
    assert one.keys() == two.keys()
    worst = max((one[k].double() - two[k].double()).abs().max().item() for k in one)
    assert worst < 1e-5
    log_one = pd.read_csv(tmp_path / "one" / "train_log.csv")
    log_two = pd.read_csv(folder / "run" / "train_log.csv")
    numeric_close(log_two, log_one, ["lr", "train_loss", "train_acc", "test_acc", "test_nll"], tol=1e-5)


def test_image_folder_training_shards_images_and_matches_one_process(spawned, image_folder, tmp_path):
    """Streaming folders: ranks stay identical after every step and equal the one-process run (SyncBatchNorm)."""
    from smoothbench import run_training

    folder, reports = spawned
    digests = reports[0]["folder_digests"]
    assert len(digests) == 3 and all(d[0] == d[1] for d in digests)  # 15 images, global batch 6
    assert len({d[0] for d in digests}) == 3
    run_training(train_config(**FOLDER_TRAIN, data_dir=str(image_folder), out=str(tmp_path / "one")))
    one, two = weights(tmp_path / "one"), weights(folder / "folder")
    worst = max((one[k].double() - two[k].double()).abs().max().item() for k in one)
    assert worst < 1e-5
    assert json.loads((folder / "folder" / "config.json").read_text())["n_train"] == 15


def test_resume_with_another_process_count_is_refused(spawned, cifar_dir):
    from smoothbench import run_training

    folder, _ = spawned
    with pytest.raises(UserError, match="world_size was 2 and is now 1"):
        run_training(train_config(**TRAIN, data_dir=str(cifar_dir), sync_bn=True, out=str(folder / "run"), resume=True))


def test_two_process_training_learns_and_only_rank_0_writes(spawned):
    folder, _ = spawned
    out = folder / "full"
    log = pd.read_csv(out / "train_log.csv")
    assert log["epoch"].tolist() == [1, 2]
    assert log["train_loss"].iloc[1] < log["train_loss"].iloc[0]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["settings"]["sync_bn"] and config["iterations_per_epoch"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "model.pt", "train_log.csv"]


def test_sharded_consistency_equals_one_process(spawned, mc_model, cifar_dir):
    from smoothbench.corruptions.perturbations import perturb_sequence
    from smoothbench.data import get_dataset
    from smoothbench.evaluation.consistency_rows import perturbation_rows, size_consistency_rows
    from smoothbench.evaluation.members import load_members

    _, reports = spawned
    members, settings = load_members([mc_model]), eval_settings(subset=12)
    source = get_dataset("cifar10", str(cifar_dir), "test", subset=12)
    clean = source.numpy_nhwc()
    rows = size_consistency_rows(members, source, settings)
    rows += perturbation_rows(members, lambda p: perturb_sequence(clean, p, seed=0, device="cpu"), ["translate"],
                              settings, source_kind="generated")
    reference = pd.DataFrame(rows)
    assert reports[0]["consistency"] == reports[1]["consistency"]
    ours = pd.DataFrame(reports[0]["consistency"])
    assert ours[["kind", "perturbation", "ensemble_size"]].equals(reference[["kind", "perturbation", "ensemble_size"]])
    metrics = [c for c in reference.columns if pd.api.types.is_float_dtype(reference[c])]
    assert {"agreement", "seed_agreement", "consistency", "flip_prob"} <= set(metrics)
    numeric_close(ours, reference, metrics)


# ----------------------------------------------------------------------------------------------------------
# the CLI under torch's launcher


@pytest.mark.slow
def test_nproc_resume_of_a_killed_run_is_bit_identical(spawned, cifar_dir):
    """`smoothbench train --nproc 2 --resume` continues the run killed after epoch 1 to the uninterrupted weights."""
    folder, _ = spawned
    proc = subprocess.run([sys.executable, "-m", "smoothbench", *train_args(folder / "run", cifar_dir, "--resume"),
                           "--nproc", "2"], cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("resnet18-dnn on cifar10") == 1  # one table, from rank 0
    assert json.loads((folder / "run" / "config.json").read_text())["resumed_from_epoch"] == 1
    resumed, reference = weights(folder / "run"), weights(folder / "full")
    assert [k for k in reference if not torch.equal(resumed[k], reference[k])] == []
    assert pd.read_csv(folder / "run" / "train_log.csv")[["epoch", "train_loss"]].equals(
        pd.read_csv(folder / "full" / "train_log.csv")[["epoch", "train_loss"]])


@pytest.mark.slow
def test_torchrun_eval_equals_one_process(mc_model, cifar_dir, tmp_path):
    from smoothbench.data import get_dataset
    from smoothbench.evaluation.members import load_members
    from smoothbench.evaluation.scoring import evaluate

    members = load_members([mc_model])
    source = get_dataset("cifar10", str(cifar_dir), "test", subset=60)
    rows, predictions = evaluate(members, source, eval_settings(), context={"dataset": "cifar10", "split": "test"})
    proc = torchrun("eval", mc_model, "--data-dir", cifar_dir, "--ensembles", "1,3", "--batch-size", 16, "--subset", 60,
                    "--device", "cpu", "--out", tmp_path / "eval.csv", "--save-probs", tmp_path / "probs.npz",
                    "--quiet")
    assert proc.stdout.count("mc on cifar10/test") == 1  # one table, from rank 0
    ours, reference = pd.read_csv(tmp_path / "eval.csv"), pd.DataFrame(rows)
    assert ours["ensemble_size"].tolist() == [1, 3] and ours["n_images"].tolist() == [60, 60]
    counts_equal(ours, reference)
    counts_equal(ours, reference, "top5")
    numeric_close(ours, reference, EVAL_METRICS)
    assert ours["data_fingerprint"].tolist() == reference["data_fingerprint"].tolist()
    saved = np.load(tmp_path / "probs.npz")
    np.testing.assert_array_equal(saved["labels"], predictions.labels)
    for k in (1, 3):
        np.testing.assert_allclose(saved[f"probs_{k}"], predictions.probs[k], atol=1e-6)
    assert not np.allclose(predictions.probs[1], predictions.probs[3])  # MC samples differ: keys were exercised


@pytest.mark.slow
def test_torchrun_corruption_sweep_equals_one_process_and_resumes(mc_model, cifar_dir, tmp_path):
    """Generated cells are corrupted shard by shard; cells already in the file are skipped (rank 0 decides)."""
    from smoothbench.evaluation.corruption_cells import CorruptionSweep, corruption_sweep
    from smoothbench.evaluation.members import load_members

    members = load_members([mc_model])
    settings = eval_settings(subset=40)

    def sweep(corruptions):
        return CorruptionSweep(dataset="cifar10-c", data_dir=str(cifar_dir), clean_data_dir=None, generate=True,
                               corruptions=corruptions, severities=[2])

    reference = pd.DataFrame(corruption_sweep(members, sweep(["gaussian_noise", "contrast"]), settings,
                                              tmp_path / "ref.csv")[0])
    out = tmp_path / "sweep.csv"
    corruption_sweep(members, sweep([]), settings, out)  # the clean cell is done already...
    done = pd.read_csv(out)
    done.loc[done["ensemble_size"] == 1, "nll"] = 123.0  # ...and marked, so a recomputation would show
    done.to_csv(out, index=False)
    torchrun("corrupt", mc_model, "--dataset", "cifar10-c", "--generate", "--data-dir", cifar_dir, "--corruptions",
             "gaussian_noise,contrast", "--severities", 2, "--ensembles", "1,3", "--batch-size", 16, "--subset", 40,
             "--device", "cpu", "--out", out, "--quiet")
    ours = pd.read_csv(out)
    assert len(ours) == len(reference) == 6  # 3 cells x 2 sizes, no duplicates
    assert ours.loc[(ours["corruption"] == "clean") & (ours["ensemble_size"] == 1), "nll"].item() == 123.0
    ours = ours[ours["corruption"] != "clean"].reset_index(drop=True)
    reference = reference[reference["corruption"] != "clean"].reset_index(drop=True)
    assert ours[["corruption", "ensemble_size"]].equals(reference[["corruption", "ensemble_size"]])
    assert ours["data_fingerprint"].tolist() == reference["data_fingerprint"].tolist()  # same corrupted pixels
    counts_equal(ours, reference)
    numeric_close(ours, reference, EVAL_METRICS)
    summary = pd.read_csv(tmp_path / "sweep_summary.csv")  # rank 0 summarised every cell of the model
    assert summary["ensemble_size"].tolist() == [1, 3] and (summary["n_corruptions"] == 2).all()
    assert summary.loc[summary["ensemble_size"] == 3, "cAcc"].item() == pytest.approx(
        pd.read_csv(out).query("severity > 0 and ensemble_size == 3")["acc"].mean())


def test_nproc_reaches_the_launcher_in_every_command(monkeypatch, tmp_path):
    """`--nproc` goes through the one relaunch helper in eval, corrupt, consistency and train (inside torchrun
    the launcher refuses it, before anything is loaded)."""
    from smoothbench.cli import app

    monkeypatch.setenv("WORLD_SIZE", "2")
    model = str(tmp_path / "absent.pt")
    for argv in (["eval", model], ["corrupt", model, "--dataset", "cifar10-c"], ["consistency", model], ["train"]):
        with pytest.raises(UserError, match="inside torchrun"):
            app([*argv, "--nproc", "2"], standalone_mode=False)


def test_nproc_relaunches_the_same_command_without_the_flag(monkeypatch, tmp_path):
    """Each command hands the launcher N and its own arguments minus `--nproc` (either spelling), and exits
    with the launcher's status; the absent model is never opened."""
    import smoothbench.distributed as dist
    from smoothbench.cli import app

    launched = []
    monkeypatch.setattr(dist, "launch", lambda nproc, argv: launched.append((nproc, list(argv))) or 3)
    model = str(tmp_path / "absent.pt")
    for argv, flag in ((["eval", model], ["--nproc", "2"]), (["corrupt", model, "--dataset", "cifar10-c"], ["--nproc=2"]),
                       (["consistency", model], ["--nproc", "2"]), (["train"], ["--nproc=2"])):
        full = [*argv, *flag, "--seed", "1"]
        monkeypatch.setattr(sys, "argv", ["smoothbench", *full])
        assert app(full, standalone_mode=False) == 3
        assert launched[-1] == (2, [*argv, "--seed", "1"])
    assert len(launched) == 4


@pytest.mark.slow
def test_nproc_eval_equals_one_process(mc_model, cifar_dir, tmp_path):
    """`smoothbench eval --nproc 2` (two processes started by the CLI itself) gives the one-process rows."""
    from smoothbench.data import get_dataset
    from smoothbench.evaluation.members import load_members
    from smoothbench.evaluation.scoring import evaluate

    source = get_dataset("cifar10", str(cifar_dir), "test", subset=60)
    rows, _ = evaluate(load_members([mc_model]), source, eval_settings(), context={"dataset": "cifar10", "split": "test"})
    args = ["eval", mc_model, "--nproc", 2, "--data-dir", cifar_dir, "--ensembles", "1,3", "--batch-size", 16,
            "--subset", 60, "--device", "cpu", "--out", tmp_path / "eval.csv", "--quiet"]
    proc = subprocess.run([sys.executable, "-m", "smoothbench", *map(str, args)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("mc on cifar10/test") == 1  # one table, from rank 0
    ours, reference = pd.read_csv(tmp_path / "eval.csv"), pd.DataFrame(rows)
    assert ours["ensemble_size"].tolist() == [1, 3] and ours["n_images"].tolist() == [60, 60]
    assert ours["data_fingerprint"].tolist() == reference["data_fingerprint"].tolist()
    counts_equal(ours, reference)
    numeric_close(ours, reference, EVAL_METRICS)
