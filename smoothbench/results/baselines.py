"""Corruption baselines: the denominators of mCE, relative mCE, mCNLL and mCECE, in the long format of
corruption rows (one row per corruption and severity)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from smoothbench.errors import UserError
from smoothbench.results.store import PathLike, keys_of, read_table
from smoothbench.schema import ROW_METRICS, SEVERITIES

#: Published per-corruption ImageNet-C AlexNet errors, each the mean over severities 1..5
#: (hendrycks/robustness, as circulated in google-research/augmix ``ALEXNET_ERR``).
ALEXNET_IMAGENET_C_ERR = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640, "defocus_blur": 0.819880,
    "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360, "snow": 0.866816, "frost": 0.826572,
    "fog": 0.819324, "brightness": 0.564592, "contrast": 0.853204, "elastic_transform": 0.646056,
    "pixelate": 0.717840, "jpeg_compression": 0.606500,
}
#: Clean top-1 error of torchvision's ``AlexNet_Weights.IMAGENET1K_V1`` (acc@1 56.522 %).
ALEXNET_IMAGENET_CLEAN_ERR = 0.43478

#: Built-in baseline names → the paper code's AlexNet CSV, packaged in ``smoothbench/results/data`` (its
#: README names the sources, both Apache-2.0).
PAPER_BASELINE_FILES = {"paper-alexnet-cifar10": "cifar10_alexnet_dnn_corrupted.csv",
                        "paper-alexnet-cifar100": "cifar100_alexnet_dnn_corrupted.csv",
                        "paper-alexnet-imagenet": "imagenet_alexnet_dnn_corrupted.csv"}
#: The 16 columns of the paper code's header-less corruption CSV (xxxnell/spatial-smoothing).
PAPER_CSV_COLUMNS = ("severity", "corruption", "nll", "cutoff_0", "cutoff_1", "acc", "acc_90", "unc", "unc_90",
                     "iou", "iou_90", "freq", "freq_90", "top5", "brier", "ece")
#: The later layout adds a 17th column, ``ecse`` (the signed ECE; xxxnell/how-do-vits-work's CIFAR-10 file),
#: read as smoothbench's ``ece_signed``.
PAPER_CSV_COLUMNS_SIGNED = PAPER_CSV_COLUMNS + ("ece_signed",)


def load_baseline(spec: str | os.PathLike, *, model: str | None = None, ensemble_size: int = 1,
                  baseline_dir: PathLike | None = None) -> pd.DataFrame:
    """A corruption baseline in the long format of corruption rows.

    Columns: ``corruption``, ``severity`` (0 = clean row, if known), ``acc``, ``nll``, ``ece``, ``brier``
    (NaN where unknown), further metrics where the source has them, ``ece_mode``/``ece_bins`` where
    known, and ``baseline_name``. ``spec`` is one of:

    - ``"alexnet-imagenet-c"``: the published ImageNet-C AlexNet errors (:data:`ALEXNET_IMAGENET_C_ERR`).
      Only the mean over severities is published, so that mean error is written to all five severities:
      CE_c needs only Σ_s E^base = 5 × mean, which this preserves; per-severity ratios against it are not
      meaningful. Clean row: torchvision AlexNet error 0.43478 (so relative mCE works). NLL and ECE are
      unknown (NaN), so mCNLL and mCECE are NaN against it.
    - ``"paper-alexnet-cifar10"`` / ``"paper-alexnet-cifar100"`` / ``"paper-alexnet-imagenet"``: the paper
      code's AlexNet CSV (:data:`PAPER_BASELINE_FILES`), packaged with smoothbench; ``baseline_dir`` or
      ``$SMOOTHBENCH_BASELINE_DIR`` names a folder to read it from instead.
    - a file: the paper's header-less 16-column CSV (:data:`PAPER_CSV_COLUMNS`, or 17 columns with the signed
      ECE last; ECE there uses the paper's 10-bin reference binning; it has no clean row, so relative mCE is
      NaN), or a smoothbench corruption table (CSV/JSON) holding one model at ``ensemble_size`` (pick it with
      ``model`` if there are several).
      The format is detected from the content; anything else raises UserError.
    """
    text = os.fspath(spec)
    if text == "alexnet-imagenet-c":
        return _alexnet_imagenet_c()
    if text in PAPER_BASELINE_FILES:
        return _paper_csv(_packaged(text, baseline_dir))
    path = Path(text)
    if not path.is_file():
        raise UserError(f"baseline {text!r} is neither a built-in (alexnet-imagenet-c, "
                        f"{', '.join(PAPER_BASELINE_FILES)}) nor an existing file")
    if path.suffix.lower() != ".json":
        with open(path, encoding="utf-8", errors="replace") as handle:
            fields = [f.strip() for f in handle.readline().split(",")]
        if len(fields) in (len(PAPER_CSV_COLUMNS), len(PAPER_CSV_COLUMNS_SIGNED)) and fields[0].isdigit():
            return _paper_csv(path)
        if not {"corruption", "severity"} <= set(fields):
            raise UserError(f"{path} is neither the paper's 16- or 17-column AlexNet CSV nor a smoothbench "
                            "corruption table; give one of those")
    return _sweep_baseline(path, model, ensemble_size)


def _alexnet_imagenet_c() -> pd.DataFrame:
    """The built-in ImageNet-C AlexNet baseline (see :func:`load_baseline`)."""
    rows = [{"corruption": "clean", "severity": 0, "acc": 1.0 - ALEXNET_IMAGENET_CLEAN_ERR}]
    rows += [{"corruption": c, "severity": s, "acc": 1.0 - err} for c, err in ALEXNET_IMAGENET_C_ERR.items()
             for s in SEVERITIES]
    frame = pd.DataFrame(rows).assign(nll=math.nan, ece=math.nan, brier=math.nan)
    return frame.assign(baseline_name="alexnet-imagenet-c")


def _packaged(name: str, baseline_dir: PathLike | None) -> Path:
    """The file of built-in baseline ``name``: in ``baseline_dir`` or ``$SMOOTHBENCH_BASELINE_DIR`` if one is
    given (an override), else the copy packaged in ``smoothbench/results/data``."""
    filename = PAPER_BASELINE_FILES[name]
    folder = baseline_dir or os.environ.get("SMOOTHBENCH_BASELINE_DIR")
    if not folder:
        return Path(__file__).with_name("data") / filename
    path = Path(folder) / filename
    if not path.is_file():
        raise UserError(f"{name}: {path} not found; the baseline folder (given, or $SMOOTHBENCH_BASELINE_DIR) must "
                        f"hold {filename}, or unset it to use the packaged copy")
    return path


def _paper_csv(path: Path) -> pd.DataFrame:
    """Parse the paper code's header-less corruption CSV (one row per severity × corruption): 16 columns, or 17
    with the signed ECE last."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            width = len(handle.readline().split(","))
        columns = PAPER_CSV_COLUMNS_SIGNED if width == len(PAPER_CSV_COLUMNS_SIGNED) else PAPER_CSV_COLUMNS
        frame = pd.read_csv(path, header=None, names=list(columns), dtype={"corruption": str})
        numeric = [c for c in columns if c != "corruption"]
        frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="raise")
    except (ValueError, pd.errors.ParserError) as err:
        raise UserError(f"{path} is not the paper's 16- or 17-column AlexNet CSV ({err}); give that file or a "
                        "smoothbench corruption table") from None
    shape_ok = frame["severity"].isin(SEVERITIES).all() and frame[numeric].notna().all().all()
    if not shape_ok or not (np.allclose(frame["cutoff_0"], 0.0) and np.allclose(frame["cutoff_1"], 0.9)):
        raise UserError(f"{path} does not look like the paper's 16- or 17-column AlexNet CSV (every row complete, "
                        "severity 1..5, cutoffs 0.0 and 0.9 in columns 4-5); give that file or a smoothbench "
                        "corruption table")
    frame["severity"] = frame["severity"].astype(int)
    frame = frame.drop(columns=["cutoff_0", "cutoff_1", "unc", "freq"])  # constants (0, 0.9, 0, 1)
    return frame.assign(ece_mode="reference", ece_bins=10, baseline_name=path.stem)


def _sweep_baseline(path: Path, model: str | None, ensemble_size: int) -> pd.DataFrame:
    """Rows of one model at ``ensemble_size`` from a smoothbench corruption table, as a baseline."""
    table = read_table(path)
    if not {"corruption", "severity", "acc", "model"} <= set(table.columns):
        raise UserError(f"{path} is not a smoothbench corruption table (needs model, corruption, severity, acc); "
                        "give one, or the paper's AlexNet CSV")
    if "ensemble_size" in table.columns:
        table = table[pd.to_numeric(table["ensemble_size"], errors="coerce") == ensemble_size]
    if model is not None:
        table = table[table["model"] == model]
    identity = [c for c in ("model", "checkpoint_sha256") if c in table.columns]
    found = sorted({" ".join(k) for k in keys_of(table, identity)})
    if len(found) != 1:
        listed = ", ".join(found) if found else "none"
        raise UserError(f"{path} must hold exactly one model at ensemble size {ensemble_size} to be a baseline "
                        f"(found: {listed}); choose one with the model filter")
    table = table[table["severity"].notna()].copy()
    table["severity"] = pd.to_numeric(table["severity"]).astype(int)
    if table.duplicated(["corruption", "severity"]).any():
        raise UserError(f"{path} has several rows per corruption and severity for {found[0]} (e.g. released and "
                        "generated); keep one evaluation in the baseline file")
    keep = ["corruption", "severity"] + [c for c in ROW_METRICS + ("ece_mode", "ece_bins") if c in table.columns]
    return table[keep].reset_index(drop=True).assign(baseline_name=str(table["model"].iloc[0]))
