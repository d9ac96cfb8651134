"""What a reproduction trains and evaluates: the figures, the scales and the grid of runs.

The paper's Fig. 2 and Fig. 9 come from the same four ResNet-18s (deterministic / MC dropout, each with and
without spatial smoothing), so both figures share one grid of runs: ``reproduce paper-fig9`` into the folder
of an earlier ``paper-fig2`` (same dataset and scale) reuses its trained runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smoothbench.errors import UserError, param
from smoothbench.models.spec import ModelSpec
from smoothbench.schema import SEVERITIES
from smoothbench.training.config import TrainConfig

#: The paper's models: (method, smoothing), in the order of the figures' legends.
MODELS = (("dnn", "none"), ("dnn", "tanh-blur"), ("mcdo", "none"), ("mcdo", "tanh-blur"))
#: Images in the CIFAR-10/100 training and test splits (for plans made before any data is read).
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000
DATASETS = ("cifar10", "cifar100")


@dataclass(frozen=True)
class FigureMetric:
    """One panel of a figure: the result column, how it is labelled, and its unit in the paper's figure
    (``factor`` turns our fraction into that unit: 100 for percent)."""

    column: str
    label: str
    unit: str
    factor: float


@dataclass(frozen=True)
class Figure:
    """A figure of the paper to reproduce: what it measures and at which MC ensemble sizes."""

    name: str
    title: str
    corrupted: bool
    sizes: tuple[int, ...]
    metrics: tuple[FigureMetric, ...]


FIGURES = {
    # the paper's Fig. 2 has N = 30 where the notebook has 20; evaluating both costs nothing (one pass of 50)
    "paper-fig2": Figure("paper-fig2", "Fig. 2: NLL, accuracy and ECE against ensemble size", False,
                         (1, 2, 3, 4, 5, 10, 20, 30, 50),
                         (FigureMetric("nll", "NLL (nats)", "nats", 1.0),
                          FigureMetric("acc", "accuracy (%)", "%", 100.0),
                          FigureMetric("ece", "ECE (%, 10 bins)", "%", 100.0))),
    "paper-fig9": Figure("paper-fig9", "Fig. 9: corruption robustness against ensemble size", True,
                         (1, 2, 3, 4, 5, 10, 20, 50),
                         (FigureMetric("mCNLL", "mCNLL (% of AlexNet)", "%", 100.0),
                          FigureMetric("mCE", "mCE (% of AlexNet)", "%", 100.0),
                          FigureMetric("mCECE", "mCECE (% of AlexNet)", "%", 100.0))),
}


@dataclass(frozen=True)
class Scale:
    """How much of the paper's recipe a reproduction runs.

    ``None`` keeps the recipe's value: ``width`` (64), ``warmup_epochs`` + ``epochs`` (1 + 200),
    ``milestones`` (60, 120, 160), ``train_subset`` (all 50,000 images), ``test_subset`` (all 10,000 test
    images, also used for the per-epoch validation) and ``corrupt_subset`` (all 10,000 per corruption cell).
    ``corruptions`` and ``severities`` choose the corruption cells of Fig. 9. ``caveat``: what the scale's
    numbers can and cannot show (printed with them and on the figure).
    """

    name: str
    width: int | None = None
    warmup_epochs: int | None = None
    epochs: int | None = None
    milestones: tuple[int, ...] | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    corrupt_subset: int | None = None
    corruptions: str = "common"
    severities: tuple[int, ...] = SEVERITIES
    caveat: str | None = None

    def describe(self) -> str:
        """One line: what this scale trains and evaluates, against the paper's recipe."""
        width = self.width or 64
        warmup = 1 if self.warmup_epochs is None else self.warmup_epochs
        epochs = 200 if self.epochs is None else self.epochs
        milestones = (60, 120, 160) if self.milestones is None else self.milestones
        train = self.train_subset or TRAIN_IMAGES
        return (f"{self.name}: width {width}{_factor(width, 64)}, {warmup} + {epochs} epochs{_factor(epochs, 200)}, "
                f"milestones {','.join(map(str, milestones)) or 'none'}, {train:,} training images"
                f"{_factor(train, TRAIN_IMAGES)}, {self.test_subset or TEST_IMAGES:,} test images; corruptions "
                f"{self.corruptions} at severities {','.join(map(str, self.severities))} on "
                f"{self.corrupt_subset or TEST_IMAGES:,} images per cell")


def _factor(part: int, whole: int) -> str:
    """`` (x1/8)``: how much of the paper's ``whole`` a scale keeps (nothing when all of it)."""
    return "" if part == whole else f" (x1/{whole / part:g})"


SCALES = {
    "tiny": Scale("tiny", width=8, warmup_epochs=1, epochs=1, milestones=(), train_subset=1_000, test_subset=250,
                  corrupt_subset=100, corruptions="gaussian_noise,defocus_blur,fog,contrast", severities=(3,),
                  caveat="a check of the pipeline, not a result: nets 8 channels wide trained for 2 epochs on 1,000 "
                         "images cannot show the paper's effect"),
    "small": Scale("small", width=32, warmup_epochs=1, epochs=50, milestones=(15, 30, 40), train_subset=25_000,
                   corrupt_subset=2_000,
                   caveat="half-width nets trained for a quarter of the paper's epochs on half its images: compare "
                          "trends with the paper, not values"),
    "full": Scale("full"),
}


def resolve_scale(scale: str | Scale) -> Scale:
    """A :class:`Scale` from its name (or the scale itself)."""
    if isinstance(scale, Scale):
        return scale
    if scale not in SCALES:
        raise UserError(f"unknown {param('scale')} {scale!r}; choose {', '.join(SCALES)}")
    return SCALES[scale]


def resolve_figure(name: str) -> Figure:
    if name not in FIGURES:
        raise UserError(f"unknown {param('figure', cli='FIGURE')} {name!r}; choose {' or '.join(FIGURES)}")
    return FIGURES[name]


@dataclass(frozen=True)
class Cell:
    """One training run of the grid: a model of :data:`MODELS` trained with one seed."""

    method: str
    smoothing: str
    seed: int

    def name(self, dataset: str, scale: Scale) -> str:
        """The run folder's name, which is also the ``model`` column of its result rows."""
        return f"{dataset}-{scale.name}-resnet18-{self.method}-{self.smoothing}-seed{self.seed}"


def grid(seeds: int) -> list[Cell]:
    """Every run, seed by seed (so a partial grid already has every model of the first seeds)."""
    return [Cell(method, smoothing, seed) for seed in range(seeds) for method, smoothing in MODELS]


def train_config(cell: Cell, scale: Scale, *, dataset: str, data_dir: str | None, run_dir: Path,
                 download: bool = False, device: str = "auto", precision: str = "fp32",
                 channels_last: bool = False) -> TrainConfig:
    """The run of ``cell`` at ``scale``: the paper's recipe (the dataset's defaults) with the scale's
    changes; resumable (``resume=True``) so that a killed reproduction continues the run. BatchNorm statistics
    span the global batch (``sync_bn``) so that a run of several processes takes the one-GPU steps of the
    paper's training."""
    spec = ModelSpec("resnet18", method=cell.method, smoothing=cell.smoothing, width=scale.width)
    return TrainConfig(model=spec, dataset=dataset, data_dir=data_dir, download=download, epochs=scale.epochs,
                       warmup_epochs=scale.warmup_epochs, milestones=scale.milestones, subset=scale.train_subset,
                       eval_subset=scale.test_subset, seed=cell.seed, device=device, precision=precision,
                       channels_last=channels_last, sync_bn=True, out=str(run_dir), resume=True)
