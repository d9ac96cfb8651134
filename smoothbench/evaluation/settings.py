"""``EvalSettings``: how predictions are drawn and scored, shared by eval, corruption sweeps and consistency."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch

from smoothbench.errors import UserError, param
from smoothbench.evaluation.ensembles import parse_sizes
from smoothbench.schema import CALIBRATIONS, PRECISIONS, ROW_ECE_MODES

#: ECE bins when none are asked for: 15 (the usual choice), or the paper code's 10 with ``reference`` binning.
DEFAULT_ECE_BINS = {"standard": 15, "reference": 10}


@dataclass
class EvalSettings:
    """The options every evaluation shares.

    ``ensembles``: the ensemble sizes to report (``"1,5,50"`` or a list; one pass draws the largest and
    snapshots the others). ``mc_samples``: MC-dropout samples per member of a deep ensemble. ``seed``
    keys the MC-dropout masks. ``ece_mode`` / ``ece_bins``: the binning of the ``ece`` column
    (``ece_bins=None`` means 15, or 10 with ``reference``).

    Which images: ``subset_file`` evaluates only the images a published list names (one position, or for an
    image folder one relative path ``<class folder>/<file>``, per line;
    :func:`~smoothbench.data.subset.read_subset_file`), in the file's order; its SHA-256 is ``subset_sha256`` (read when the settings are made). ``subset``
    evaluates N images: a class-balanced random sample (every class ``N // K`` images, the first ``N mod K``
    classes one more), kept in the original order and drawn from the fixed
    :data:`~smoothbench.data.subset.EVAL_SUBSET_SEED`, not from ``seed``, so that every command and every MC
    seed sees the same images; with ``subset_file`` it samples N of the listed images.
    ``seed``, ``precision``, ``ece_bins``, ``ece_mode``, ``subset`` and ``subset_sha256`` are recorded in the
    rows' provenance (and key them).
    ``class_mask``: score only these output columns (ImageNet-A/R's 200 of 1000 classes; the softmax runs over
    them).

    Post-hoc calibration (:mod:`smoothbench.evaluation.calibration`): ``calibrate`` is ``None``,
    ``temperature`` (scale every member's logits) or ``temperature-mean`` (scale log p̄), fitted per ensemble
    size on the last ``calibration_split`` training images, or on ``calibration_data`` (an image folder with
    one sub-folder per class) when given. Rows then carry ``*_ts`` twins of the calibration metrics, the
    fitted ``temperature`` and the ``calibration`` they used.

    Speed only (results equal up to float rounding, not recorded): ``batch_size`` images per forward,
    ``mc_chunk`` MC samples per forward (``None``: 1 on a CPU, 8 on a GPU), ``device`` (``auto``, ``cpu``,
    ``cuda``), ``channels_last``, ``compile`` (``torch.compile`` each model). ``profile`` times the
    sections of the work (synchronising a GPU at their boundaries).
    """

    ensembles: Sequence[int] | str = (1,)
    mc_samples: int | None = None
    seed: int = 0
    batch_size: int = 256
    mc_chunk: int | None = None
    device: str | torch.device = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    ece_bins: int | None = None
    ece_mode: str = "standard"
    subset: int | None = None
    subset_file: str | os.PathLike | None = None
    profile: bool = False
    class_mask: tuple[int, ...] | None = None
    calibrate: str | None = None
    calibration_split: int = 5000
    calibration_data: str | None = None
    #: SHA-256 (hex) of ``subset_file``, ``""`` without one: set from the file, not given.
    subset_sha256: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ensembles = parse_sizes(self.ensembles)
        if self.ece_mode not in ROW_ECE_MODES:
            raise UserError(f"{param('ece_mode')} must be one of {', '.join(ROW_ECE_MODES)}, got {self.ece_mode!r}")
        if self.ece_bins is None:
            self.ece_bins = DEFAULT_ECE_BINS[self.ece_mode]
        if self.ece_bins < 1:
            raise UserError(f"{param('ece_bins')} must be at least 1, got {self.ece_bins}")
        if self.precision not in PRECISIONS:
            raise UserError(f"{param('precision')} must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.batch_size < 1:
            raise UserError(f"{param('batch_size')} must be at least 1, got {self.batch_size}")
        if self.subset is not None and self.subset < 1:
            raise UserError(f"{param('subset')} must be at least 1, got {self.subset}")
        if self.subset_file is not None:
            from smoothbench.data.subset import subset_file_sha256

            self.subset_file = str(self.subset_file)
            self.subset_sha256 = subset_file_sha256(self.subset_file)
        if self.calibrate not in (None, *CALIBRATIONS):
            raise UserError(f"{param('calibrate')} must be one of {', '.join(CALIBRATIONS)}, got {self.calibrate!r}")
        if self.calibration_split < 1:
            raise UserError(f"{param('calibration_split')} must be at least 1, got {self.calibration_split}")
        if self.calibration_data is not None and self.calibrate is None:
            raise UserError(f"{param('calibration_data')} is for {param('calibrate')}; add {param('calibrate')} "
                            "temperature")
        if self.class_mask is not None:
            self.class_mask = tuple(int(i) for i in self.class_mask)

    @property
    def largest(self) -> int:
        """The largest requested ensemble size (the number of steps one pass draws)."""
        return max(self.ensembles)

    def on_device(self) -> "EvalSettings":
        """These settings with ``device`` resolved to a ``torch.device``; under torchrun this joins the
        process group and picks this process's GPU (:func:`smoothbench.distributed.setup`)."""
        if isinstance(self.device, torch.device):
            return self
        from smoothbench.distributed import setup

        return replace(self, device=setup(self.device))

    def with_(self, **changes) -> "EvalSettings":
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)
