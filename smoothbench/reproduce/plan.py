"""``reproduce --plan``: the grid with an estimated time per run, from a short timed probe.

The probe builds each of the four models at the scale's width on the chosen device and times a few training
steps of the recipe's batch and one evaluation batch on random images (reading the data is not timed: CIFAR
sits in memory, so it costs little). Each run's estimate is its training images × epochs, the validation
after every epoch, and the evaluation the figure needs (MC dropout: the largest N forward passes per image;
Fig. 9: per corruption cell, generating the corrupted images not counted), charged at the probed rates.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch

from smoothbench.device import autocast, resolve_device, to_channels_last
from smoothbench.models.registry import create_model
from smoothbench.reproduce.grid import MODELS, TEST_IMAGES, TRAIN_IMAGES, Cell, Figure, Scale, train_config
from smoothbench.training.config import model_spec, resolve_config
from smoothbench.training.loop import make_optimizer, train_step
from smoothbench.training.run_folder import CHECKPOINT_FILENAME, LOG_FILENAME, MODEL_FILENAME

#: Training steps the probe times per model, after one untimed step (allocations, kernel selection).
PROBE_STEPS = 2
#: Images of the probe's evaluation batch.
PROBE_EVAL_BATCH = 256


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(cfg_of: dict[tuple[str, str], object], device: str, precision: str,
          channels_last: bool) -> dict[tuple[str, str], tuple[float, float]]:
    """Seconds per training image and per evaluation forward of one image, per model of :data:`MODELS`.

    ``cfg_of`` maps each model to a :class:`~smoothbench.training.config.TrainConfig` of the scale."""
    where = resolve_device(device)
    rates = {}
    for model_key in MODELS:
        cfg = resolve_config(cfg_of[model_key])
        spec = model_spec(cfg)
        torch.manual_seed(0)
        model = to_channels_last(create_model(spec).to(where), channels_last)
        optimizer, scheduler = make_optimizer(model, cfg, iters_per_epoch=PROBE_STEPS + 1)
        x = to_channels_last(torch.randn(max(cfg.batch_size, PROBE_EVAL_BATCH), 3, spec.image_size, spec.image_size,
                                         device=where), channels_last)
        y = torch.randint(0, spec.num_classes, (cfg.batch_size,), device=where)
        model.train()
        for step in range(PROBE_STEPS + 1):
            if step == 1:
                _sync(where)
                start = time.perf_counter()
            train_step(model, optimizer, scheduler, x[:cfg.batch_size], y, precision=precision)
        _sync(where)
        per_train_image = (time.perf_counter() - start) / (PROBE_STEPS * cfg.batch_size)
        model.eval()
        model.mc(model_key[0] == "mcdo")
        batch = x[:PROBE_EVAL_BATCH]
        with torch.inference_mode(), autocast(where, precision):
            model(batch)
            _sync(where)
            start = time.perf_counter()
            model(batch)
            _sync(where)
        rates[model_key] = (per_train_image, (time.perf_counter() - start) / PROBE_EVAL_BATCH)
    return rates


def _status(run_dir: Path, total_epochs: int) -> tuple[str, int]:
    """What the run folder holds: ``(text, epochs still to train)``."""
    if (run_dir / MODEL_FILENAME).exists():
        return "trained", 0
    log = run_dir / LOG_FILENAME
    if (run_dir / CHECKPOINT_FILENAME).exists() and log.exists():
        done = max(len(log.read_text().splitlines()) - 1, 0)
        return f"epoch {done}/{total_epochs}", total_epochs - done
    return "to train", total_epochs


def plan_table(cells: list[Cell], run_dirs: list[Path], figure: Figure, scale: Scale, *, dataset: str,
               test_images: int, corrupt_images: int, n_cells: int, device: str, precision: str,
               channels_last: bool) -> pd.DataFrame:
    """One row per run: its status and the estimated seconds of training, evaluation and both.

    ``test_images`` / ``corrupt_images``: images per clean evaluation / per corruption cell; ``n_cells``:
    corruption cells of Fig. 9 (clean included)."""
    cfgs = {(c.method, c.smoothing): train_config(c, scale, dataset=dataset, data_dir=None, run_dir=d)
            for c, d in zip(cells, run_dirs)}
    rates = probe(cfgs, device, precision, channels_last)
    rows = []
    for cell, run_dir in zip(cells, run_dirs):
        cfg = resolve_config(cfgs[(cell.method, cell.smoothing)])
        total = cfg.warmup_epochs + cfg.epochs
        status, left = _status(run_dir, total)
        per_train_image, per_forward = rates[(cell.method, cell.smoothing)]
        validation = (scale.test_subset or TEST_IMAGES) * per_forward  # after every epoch
        train = left * ((scale.train_subset or TRAIN_IMAGES) * per_train_image + validation)
        passes = max(figure.sizes) if cell.method == "mcdo" else 1
        evaluated = n_cells * corrupt_images if figure.corrupted else test_images
        evaluation = evaluated * passes * per_forward
        rows.append({"run": run_dir.name, "method": cell.method, "smoothing": cell.smoothing, "seed": cell.seed,
                     "status": status, "train_s": train, "eval_s": evaluation, "total_s": train + evaluation})
    return pd.DataFrame(rows)
