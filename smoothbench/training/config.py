"""``TrainConfig``: everything a training run needs, and how its unset fields take the dataset's recipe."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from smoothbench.data import DATASETS, NORMALIZATION
from smoothbench.data.preprocess import DATASET_RESIZE
from smoothbench.errors import UserError, param
from smoothbench.models.spec import ModelSpec
from smoothbench.recipes import RECIPES, SCHEDULES
from smoothbench.schema import PRECISIONS

#: The model-spec fields a user chooses; the dataset decides the others (classes, stem, image size,
#: normalisation) in :func:`model_spec`.
CHOSEN_SPEC_FIELDS = ("arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width", "head")
#: Run settings that change the trained weights: a resume must agree on all of them (and on the model's
#: :data:`CHOSEN_SPEC_FIELDS`).
TRAJECTORY_SETTINGS = ("dataset", "subset", "holdout", "epochs", "warmup_epochs", "batch_size", "lr", "momentum",
                       "weight_decay", "schedule", "milestones", "gamma", "seed", "precision", "sync_bn")


@dataclass
class TrainConfig:
    """One training run. ``None`` recipe fields take the dataset's recipe (:mod:`smoothbench.recipes`).

    ``milestones`` may be given as ``"60,120,160"``. ``model`` chooses the architecture, method, smoothing, blur, tau, dropout rate and width; the dataset
    fills in the classes, stem, image size and normalisation. ``batch_size`` is the global batch (all
    processes together); ``sync_bn`` synchronises BatchNorm statistics over the processes of a distributed
    run; ``subset``/``eval_subset`` limit the train and test images; ``holdout`` keeps the last N training
    images unseen (``eval --calibrate`` fits its temperature on them); ``device`` is auto/cpu/cuda,
    ``precision`` fp32/bf16 (autocast); ``compile`` wraps the model in ``torch.compile`` for training;
    ``out`` is the run folder (default ``runs/<dataset>/<model name>-seed<seed>``); ``resume`` continues
    the unfinished run in ``out``; ``force`` replaces a finished one; ``profile`` synchronises the CUDA
    device around the timed sections of :attr:`TrainResult.timings`.
    """

    model: ModelSpec = field(default_factory=lambda: ModelSpec("resnet18"))
    dataset: str = "cifar10"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    warmup_epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    milestones: tuple[int, ...] | str | None = None
    gamma: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    subset: int | None = None
    holdout: int = 0
    eval_subset: int | None = None
    workers: int = 4
    out: str | None = None
    resume: bool = False
    force: bool = False
    profile: bool = False

    def settings(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists; ``model`` a dict of its spec)."""
        return json.loads(json.dumps(asdict(self)))

    def trajectory(self) -> dict[str, Any]:
        """The settings a resume must keep (flat: the model's chosen fields and its source, then
        :data:`TRAJECTORY_SETTINGS`)."""
        settings = self.settings()
        return {**{k: settings["model"][k] for k in CHOSEN_SPEC_FIELDS}, "source": settings["model"]["source"],
                **{k: settings[k] for k in TRAJECTORY_SETTINGS}}


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """Fill ``None`` recipe fields from the dataset's recipe and validate; bad values raise UserError."""
    if cfg.dataset not in DATASETS:
        raise UserError(f"unknown {param('dataset')} {cfg.dataset!r}; choose one of {', '.join(DATASETS)}")
    recipe = RECIPES[DATASETS[cfg.dataset].recipe]
    filled = {f.name: getattr(recipe, f.name) for f in fields(recipe) if getattr(cfg, f.name) is None}
    cfg = replace(cfg, **filled)
    milestones = _milestones(cfg.milestones)
    cfg = replace(cfg, milestones=milestones, lr=float(cfg.lr), momentum=float(cfg.momentum),
                  weight_decay=float(cfg.weight_decay), gamma=float(cfg.gamma),
                  model=cfg.model.with_(tau=float(cfg.model.tau)))
    checks = (
        (cfg.epochs >= 1, f"{param('epochs')} must be at least 1, got {cfg.epochs}"),
        (cfg.warmup_epochs >= 0, f"{param('warmup_epochs')} must be 0 or more, got {cfg.warmup_epochs}"),
        (cfg.batch_size >= 1, f"{param('batch_size')} must be at least 1, got {cfg.batch_size}"),
        (cfg.lr > 0, f"{param('lr')} must be positive, got {cfg.lr}"),
        (0 <= cfg.momentum < 1, f"{param('momentum')} must be in [0, 1), got {cfg.momentum}"),
        (cfg.weight_decay >= 0, f"{param('weight_decay')} must be 0 or more, got {cfg.weight_decay}"),
        (cfg.schedule in SCHEDULES, f"unknown {param('schedule')} {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}"),
        (all(m >= 1 for m in milestones) and all(a < b for a, b in zip(milestones, milestones[1:])),
         f"{param('milestones')} must be positive and strictly increasing main-epoch numbers, got {list(milestones)}"),
        (0 < cfg.gamma <= 1, f"{param('gamma')} must be in (0, 1], got {cfg.gamma}"),
        (cfg.seed >= 0, f"{param('seed')} must be 0 or more, got {cfg.seed}"),
        (cfg.precision in PRECISIONS, f"unknown {param('precision')} {cfg.precision!r}; choose one of {', '.join(PRECISIONS)}"),
        (cfg.subset is None or cfg.subset >= 1, f"{param('subset')} must be at least 1, got {cfg.subset}"),
        (cfg.holdout >= 0, f"{param('holdout')} must be 0 or more, got {cfg.holdout}"),
        (cfg.eval_subset is None or cfg.eval_subset >= 1,
         f"{param('eval_subset')} must be at least 1, got {cfg.eval_subset}"),
        (cfg.workers >= 0, f"{param('workers')} must be 0 or more, got {cfg.workers}"),
    )
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if cfg.out is None:
        cfg = replace(cfg, out=str(Path("runs") / cfg.dataset / f"{cfg.model.name}-seed{cfg.seed}"))
    return cfg


def _milestones(value: tuple[int, ...] | str) -> tuple[int, ...]:
    """Milestones as a tuple of ints (``"60,120,160"`` or a sequence)."""
    try:
        return tuple(int(m) for m in (value.split(",") if isinstance(value, str) else value) if str(m).strip())
    except ValueError:
        raise UserError(f"{param('milestones')} needs comma-separated integers, got {value!r}") from None


def model_spec(cfg: TrainConfig) -> ModelSpec:
    """The model spec of a run: the chosen fields plus the dataset's classes, stem, size and normalisation.

    A model from elsewhere (``cfg.model.source``) also gets the dataset's number of classes as its
    builder's ``num_classes`` (unless the builder arguments name it) and the dataset's evaluation recipe."""
    info = DATASETS[cfg.dataset]
    mean, std = NORMALIZATION[cfg.dataset]
    spec = cfg.model.with_(num_classes=info.num_classes, stem=info.stem, dataset=cfg.dataset,
                           image_size=info.image_size, mean=tuple(mean), std=tuple(std))
    source = spec.source
    if source is None:
        return spec
    kwargs = dict(source.kwargs)
    kwargs.setdefault("num_classes", info.num_classes)
    return spec.with_(source=replace(source, kwargs=tuple(kwargs.items())),
                      stem="cifar" if source.cifar_stem else "imagenet", resize=DATASET_RESIZE.get(cfg.dataset))
