"""Tidy result rows: atomic de-duplicated CSV/JSON tables, corruption summaries (mCE...) and baselines.

A result table is one row per measurement with a header (see docs/architecture.md, "Result rows").
Rows are identified by *key columns*; writing a row whose key is already in the file replaces it, so a
table never holds two rows with the same key and a rerun (or a resumed sweep) simply overwrites its cells.
Key values are compared in a canonical text form (:func:`row_key`), so ``5``, ``5.0`` and ``"5"`` are the
same key and a missing value (``None``, NaN, ``""``) is one value.

Corruption summaries follow Hendrycks & Dietterich (2019) and Park & Kim (2022, Fig. 9); every number is a
fraction, never a percent.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open

PathLike = str | os.PathLike

#: One clean evaluation (``smoothbench eval``). The MC seed is provenance, not key: rerunning a cell with
#: another ``--seed`` replaces the row.
EVAL_KEYS = ("model", "checkpoint_sha256", "dataset", "split", "ensemble_size", "members", "mc_samples", "subset")
#: One (corruption, severity) cell of a corruption sweep; severity 0 is the clean set. ``source``
#: (clean / released / generated) is part of the key so released and generated cells can share a file.
CORRUPT_KEYS = EVAL_KEYS + ("corruption", "severity", "corruption_params", "source")
#: One consistency measurement: ``kind`` is ``mc-size`` or ``perturbation``; ``seed`` is part of the key
#: because seed agreement compares runs that differ only in their MC seed.
CONSISTENCY_KEYS = ("model", "checkpoint_sha256", "dataset", "kind", "perturbation", "ensemble_size", "seed")

#: Per-row metric columns written by ``metrics.summarize`` (fractions).
METRIC_COLUMNS = ("acc", "top5", "nll", "brier", "entropy", "ece", "ece_signed", "ece_adaptive", "ece_classwise",
                  "auroc_misclf", "acc_90", "unc_90", "freq_90", "iou")
#: Metric columns of consistency rows.
CONSISTENCY_COLUMNS = ("agreement", "flip_rate", "tv", "kl", "seed_agreement", "seed_tv", "consistency", "cec",
                       "flip_prob", "top5_dist")
#: Columns always read as text from CSV (a hex digest made only of digits must not become a number).
TEXT_COLUMNS = ("model", "arch", "method", "smoothing", "blur", "dataset", "split", "checkpoint_sha256",
                "data_fingerprint", "corruption", "corruption_params", "source", "kind", "perturbation",
                "smoothbench_version", "ece_mode", "precision", "normalization")

#: The 15 ImageNet-C / CIFAR-10-C benchmark corruptions (Hendrycks & Dietterich 2019), in their order.
COMMON_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                      "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                      "jpeg_compression")
#: The 4 held-out ("extra") corruptions of the released sets.
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

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

#: Built-in baseline names that need the paper code's CSV (not shipped: see :func:`load_baseline`).
PAPER_BASELINE_FILES = {"paper-alexnet-cifar100": "cifar100_alexnet_dnn_corrupted.csv",
                        "paper-alexnet-imagenet": "imagenet_alexnet_dnn_corrupted.csv"}
#: The 16 columns of the paper code's header-less corruption CSV (xxxnell/spatial-smoothing).
PAPER_CSV_COLUMNS = ("severity", "corruption", "nll", "cutoff_0", "cutoff_1", "acc", "acc_90", "unc", "unc_90",
                     "iou", "iou_90", "freq", "freq_90", "top5", "brier", "ece")

#: Corruption rows of one model evaluation share these columns (clean rows have another ``source``).
EVALUATION_KEYS = ("model", "checkpoint_sha256", "dataset", "ensemble_size", "members", "mc_samples", "subset")
#: Key of a summary row (:func:`summarize_corruptions`): one evaluation, corruption source, corruption set and
#: baseline.
SUMMARY_KEYS = EVALUATION_KEYS + ("source", "corruptions", "baseline")
#: Summaries are computed per these columns (where present) and ``source``: rows of other MC seeds or ECE
#: settings (e.g. read from several files) are summarised separately.
_SUMMARY_GROUPS = EVALUATION_KEYS + ("seed", "ece_mode", "ece_bins")
#: Columns carried from the rows into a summary (a column that varies within a group is joined with ";").
CARRIED_COLUMNS = ("arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width", "split",
                   "smoothbench_version", "seed", "n_images", "ece_bins", "ece_mode", "precision",
                   "corruption_params", "corruption_seed")
_SUMMARY_METRICS = {"acc": "cAcc", "nll": "cNLL", "ece": "cECE", "brier": "cBrier"}
_MEAN_RATIOS = {"CE": "mCE", "relative_CE": "relative_mCE", "CNLL": "mCNLL", "CECE": "mCECE"}
_SEVERITIES = (1, 2, 3, 4, 5)


# ----------------------------------------------------------------------------------------------------------
# keys and tables on disk
def row_key(row: Mapping[str, Any] | pd.Series, key_columns: Sequence[str], settings: object = None) -> tuple[str, ...]:
    """The canonical key of ``row``: one text value per key column.

    A column missing from ``row`` is taken from the attribute of the same name on ``settings`` (for
    example ``subset`` or ``seed`` of the evaluation settings), else it is empty. Integers and integral
    floats become ``"5"``, other floats their ``repr``, and ``None`` / NaN / ``""`` become ``""``.
    """
    values = []
    for column in key_columns:
        if column in row:
            value = row[column]
        else:
            value = getattr(settings, column, None)
        values.append(canonical(value))
    return tuple(values)


def canonical(value: Any) -> str:
    """Canonical text of one key value (see :func:`row_key`)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _keys(frame: pd.DataFrame, key_columns: Sequence[str]) -> list[tuple[str, ...]]:
    """:func:`row_key` of every row of ``frame``."""
    return [row_key(record, key_columns) for record in frame[list(key_columns)].to_dict("records")]


def _format(path: PathLike, fmt: str | None) -> str:
    """``csv`` or ``json``: ``fmt`` if given, else from the file suffix."""
    if fmt is None:
        fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in ("csv", "json"):
        raise UserError(f"cannot tell the format of {path}: name it *.csv or *.json, or pass fmt/--format csv|json")
    return fmt


def _read_table(path: PathLike, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV (with header) or JSON (list of row objects) table; anything else → UserError."""
    fmt = _format(path, fmt)
    try:
        if fmt == "csv":
            return pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS})
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UserError(f"{path} is not a readable smoothbench {fmt} table ({type(err).__name__}); "
                        "give another path or remove it") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError(f"{path} is JSON but not a list of row objects; give another path or remove it")
    return pd.DataFrame(data)


def _json_value(value: Any) -> Any:
    """A JSON-ready scalar: NaN / NA → None, numpy scalars → Python scalars."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _refuse(value: Any) -> Any:
    raise TypeError(f"cannot write a {type(value).__name__} into a JSON table")


def to_json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN → None)."""
    return [{k: _json_value(v) for k, v in record.items()} for record in frame.to_dict("records")]


def _write_table(path: Path, frame: pd.DataFrame, fmt: str) -> None:
    """Write ``frame`` atomically (temp file + rename): CSV with header, or JSON list of objects."""
    if fmt == "csv":
        with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
            frame.to_csv(handle, index=False)
    else:
        with atomic_open(path, "w", encoding="utf-8") as handle:
            json.dump(to_json_records(frame), handle, indent=1, allow_nan=False, default=_refuse)
            handle.write("\n")


def _dedupe(frame: pd.DataFrame, key_columns: Sequence[str]) -> pd.DataFrame:
    """Keep the last row of each key."""
    keys = pd.Series(_keys(frame, key_columns), index=frame.index)
    return frame[~keys.duplicated(keep="last")]


def _merge(old: pd.DataFrame, new: pd.DataFrame, key_columns: Sequence[str]) -> pd.DataFrame:
    """``old`` with rows of the same key replaced in place by ``new``; other new rows appended."""
    old = _dedupe(old, key_columns).reset_index(drop=True)
    old_keys, new_keys = _keys(old, key_columns), _keys(new, key_columns)
    replaced = set(new_keys)
    position = {key: i for i, key in enumerate(old_keys)}
    keep = [i for i, key in enumerate(old_keys) if key not in replaced]
    order = keep + [position.get(key, len(old) + j) for j, key in enumerate(new_keys)]
    parts = [frame for frame in (old.iloc[keep], new) if len(frame)]
    merged = pd.concat(parts, ignore_index=True, sort=False) if parts else old.iloc[:0]
    merged = merged.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    columns = list(old.columns) + [c for c in new.columns if c not in old.columns]
    return merged.reindex(columns=columns)


def write_rows(path: PathLike, rows: Sequence[Mapping[str, Any]] | pd.DataFrame, *, key_columns: Sequence[str],
               fmt: str | None = None) -> None:
    """Merge ``rows`` into the table at ``path`` and rewrite it atomically.

    Rows whose key (``key_columns``, see :func:`row_key`; a key column the rows lack is added, empty) is
    already in the file replace the old row in place; the others are appended; the file never holds two
    rows with one key (the last given wins). Existing columns keep their order and new columns are
    appended. ``fmt`` is ``csv`` or ``json`` (default: from the suffix); JSON is a list of row objects
    with NaN written as ``null``. An existing file that is not a smoothbench table (unreadable, or lacking
    a key column) raises UserError and is left untouched.
    """
    fmt = _format(path, fmt)
    new = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame([dict(r) for r in rows])
    missing = [c for c in key_columns if c not in new.columns]
    new = _dedupe(new.reindex(columns=list(new.columns) + missing), key_columns)
    path = Path(path)
    if path.exists():
        old = _read_table(path, fmt)
        if old.empty and not len(old.columns):
            old = pd.DataFrame(columns=list(key_columns))
        lacking = [c for c in key_columns if c not in old.columns]
        if lacking:
            raise UserError(f"{path} exists but is not a smoothbench table of this kind (no column "
                            f"{', '.join(lacking)}); give another output path or remove it")
        new = _merge(old, new, key_columns)
    _write_table(path, new, fmt)


def append_cell(path: PathLike, rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
                key_columns: Sequence[str]) -> None:
    """Add one finished sweep cell to ``path`` (same semantics as :func:`write_rows`; the whole small file
    is rewritten atomically, so a killed sweep leaves the last complete file)."""
    write_rows(path, rows, key_columns=key_columns)


def done_keys(path: PathLike, key_columns: Sequence[str]) -> set[tuple[str, ...]]:
    """Canonical keys (:func:`row_key`) of the rows already in ``path``; empty if it does not exist.

    Skip a cell when ``row_key(probe, key_columns, settings) in done_keys(path, key_columns)``.
    """
    path = Path(path)
    if not path.exists():
        return set()
    table = _read_table(path)
    lacking = [c for c in key_columns if c not in table.columns]
    if lacking and len(table.columns):
        raise UserError(f"{path} is not a smoothbench table of this kind (no column {', '.join(lacking)}); "
                        "give another output path or remove it")
    return set(_keys(table, key_columns)) if len(table.columns) else set()


def _looks_like_results(table: pd.DataFrame) -> bool:
    """A smoothbench result table has a ``model`` column and at least one metric column; a derived table
    (corruption summary, per-corruption table: ``corruption`` without ``severity``) is not one."""
    derived = "corruption" in table.columns and "severity" not in table.columns
    return "model" in table.columns and not derived and any(
        c in table.columns for c in METRIC_COLUMNS + CONSISTENCY_COLUMNS)


def read_results(paths: PathLike | Iterable[PathLike]) -> pd.DataFrame:
    """All rows of the given result files, and of every ``*.csv`` / ``*.json`` result table found
    recursively in the given folders (other files there are skipped), with a ``result_file`` column.

    A file named explicitly that is not a result table raises UserError, as does finding no table at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = []
    for given in map(Path, paths):
        if given.is_dir():
            for found in sorted(given.rglob("*")):
                if not (found.is_file() and found.suffix.lower() in (".csv", ".json")):
                    continue
                try:
                    table = _read_table(found)
                except UserError:
                    continue
                if _looks_like_results(table):
                    frames.append(table.assign(result_file=str(found)))
        elif given.is_file():
            table = _read_table(given)
            if not _looks_like_results(table):
                raise UserError(f"{given} is not a smoothbench result table (needs a model column and metric "
                                "columns); give result files or folders")
            frames.append(table.assign(result_file=str(given)))
        else:
            raise UserError(f"{given} does not exist; give result files or folders")
    if not frames:
        raise UserError(f"no smoothbench result tables found in {', '.join(map(str, paths))}")
    return pd.concat(frames, ignore_index=True, sort=False)


# ----------------------------------------------------------------------------------------------------------
# corruption summaries
def _selected(corruptions: str | Sequence[str], present: Iterable[str]) -> list[str]:
    """Corruption names to summarise: ``"common"`` = the 15 benchmark corruptions, ``"extra"`` = the 4
    held-out ones, ``"all"`` = every corruption present; a sequence names them explicitly."""
    present = set(present)
    if isinstance(corruptions, str):
        if corruptions == "common":
            return [c for c in COMMON_CORRUPTIONS if c in present]
        if corruptions == "extra":
            return [c for c in EXTRA_CORRUPTIONS if c in present]
        if corruptions == "all":
            ordered = [c for c in COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS if c in present]
            return ordered + sorted(present - set(ordered))
        raise UserError(f"corruptions must be common, extra, all or a list of names, got {corruptions!r}")
    unknown = [c for c in corruptions if c not in present]
    if unknown:
        raise UserError(f"no rows for corruption(s) {', '.join(unknown)}; choose among {', '.join(sorted(present))}")
    return list(corruptions)


def _prepare(df: pd.DataFrame, corruptions: str | Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str],
                                                                          list[str]]:
    """Split corruption rows into corrupted cells (severity 1..5 of the selected corruptions) and clean
    rows (severity 0); both get ``_g`` (model-evaluation key over :data:`_SUMMARY_GROUPS`) and ``_src``.
    Also returns the key columns present and the selected corruption names."""
    if not {"corruption", "severity", "acc"} <= set(df.columns):
        raise UserError("no corruption rows (columns corruption, severity, acc); give `smoothbench corrupt` results")
    rows = df[df["severity"].notna() & df["corruption"].notna()].copy()
    rows["severity"] = pd.to_numeric(rows["severity"], errors="coerce")
    groups = [c for c in _SUMMARY_GROUPS if c in rows.columns]
    rows["_g"] = ["\x1f".join(key) for key in _keys(rows, groups)]
    rows["_src"] = [canonical(v) for v in rows["source"]] if "source" in rows.columns else ""
    cells = rows[rows["severity"].isin(_SEVERITIES)]
    names = _selected(corruptions, cells["corruption"].unique())
    if not names:
        raise UserError(f"no rows for the {corruptions} corruptions; pass corruptions='all' or a list of names")
    cells = cells[cells["corruption"].isin(names)]
    twice = cells.duplicated(["_g", "_src", "corruption", "severity"], keep=False)
    if twice.any():
        first = cells[twice].iloc[0]
        raise UserError(f"several rows for {first['model']} {first['corruption']} severity {int(first['severity'])} "
                        "with the same settings (e.g. the same sweep in two files); keep one of them")
    return cells, rows[rows["severity"] == 0], groups, names


def _strict_sum(values: pd.Series) -> float:
    """Sum that is NaN if any value is NaN (an unknown baseline metric must not count as 0)."""
    return float(np.sum(values.to_numpy(dtype=float)))


def _carried(frame: pd.DataFrame, column: str) -> Any:
    """The value of ``column`` over a group's rows: the value if constant, else the sorted values joined."""
    values = sorted({canonical(v) for v in frame[column]})
    if len(values) == 1:
        return frame[column].iloc[0]
    return ";".join(values)


def _fingerprint(values: Iterable[Any]) -> str:
    """One short hex fingerprint for the data of several cells (the cell fingerprints, sorted and hashed)."""
    joined = "|".join(sorted({canonical(v) for v in values}))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def per_corruption_table(df: pd.DataFrame, baseline: pd.DataFrame | None = None, *,
                         corruptions: str | Sequence[str] = "common") -> pd.DataFrame:
    """One row per (model evaluation, source, corruption): means over the severities present.

    Columns: the :data:`EVALUATION_KEYS` (and seed, ece_mode, ece_bins) present, ``source``,
    ``corruption``, ``n_severities``, ``acc``, ``err`` (= 1 − acc), ``nll``, ``ece``, ``brier`` (means
    over severities 1..5 of that corruption). With a ``baseline`` (see :func:`load_baseline`) also
    ``baseline``, ``base_err`` and

    - ``CE``      = Σ_s E_{s,c} / Σ_s E^base_{s,c}                                (E = 1 − acc)
    - ``relative_CE``  = Σ_s (E_{s,c} − E_clean) / Σ_s (E^base_{s,c} − E^base_clean)
    - ``CNLL``    = Σ_s NLL_{s,c} / Σ_s NLL^base_{s,c}
    - ``CECE``    = Σ_s ECE_{s,c} / Σ_s ECE^base_{s,c}

    with sums over the severities the model has (the baseline must have them too). A ratio is NaN where a
    term is unknown: ``relative_CE`` without clean rows (severity 0) on either side, ``CNLL``/``CECE`` where the
    baseline has no NLL/ECE, and ``CECE`` also when the model's ECE settings (ece_mode, ece_bins) differ
    from the baseline's. A selected corruption (``corruptions``, as in :func:`summarize_corruptions`) that
    the baseline lacks raises UserError: restrict the selection (e.g. ``"common"``) to what it has.
    """
    cells, clean, groups, _ = _prepare(df, corruptions)
    table = _per_corruption(cells, clean, baseline)
    keys = ["_g", "_src", "corruption"]
    first = cells.drop_duplicates(keys).set_index(keys)
    firsts = first.loc[list(zip(table["_g"], table["_src"], table["corruption"]))]
    identity = groups + (["source"] if "source" in cells.columns else [])
    for column in identity:
        table[column] = firsts[column].to_numpy()
    front = identity + ["corruption", "n_severities"]
    return table[front + [c for c in table.columns if c not in front and not c.startswith("_")]]


def _per_corruption(cells: pd.DataFrame, clean: pd.DataFrame, baseline: pd.DataFrame | None) -> pd.DataFrame:
    """:func:`per_corruption_table` on prepared rows, keyed by ``_g``, ``_src``, ``corruption``."""
    keys = ["_g", "_src", "corruption"]
    table = cells.groupby(keys, sort=False).agg(**{
        "n_severities": ("severity", "size"),
        **{m: (m, "mean") for m in ("acc", "nll", "ece", "brier") if m in cells.columns},
    }).reset_index()
    table["err"] = 1.0 - table["acc"]
    if baseline is None:
        return table
    base = baseline.copy()
    base["severity"] = pd.to_numeric(base["severity"], errors="coerce")
    name = canonical(base["baseline_name"].iloc[0]) if "baseline_name" in base.columns and len(base) else "baseline"
    base_cells = base[base["severity"].isin(_SEVERITIES)]
    lacking = sorted(set(table["corruption"]) - set(base_cells["corruption"]))
    if lacking:
        raise UserError(f"baseline {name} has no rows for {', '.join(lacking)}; restrict the summary to corruptions "
                        "it has (e.g. corruptions='common' or an explicit list)")
    metrics = [m for m in ("acc", "nll", "ece") if m in base.columns]
    pairs = cells.merge(base_cells[["corruption", "severity"] + metrics], on=["corruption", "severity"], how="left",
                        suffixes=("", "_base"), indicator=True)
    if (pairs["_merge"] != "both").any():
        miss = pairs[pairs["_merge"] != "both"].iloc[0]
        raise UserError(f"baseline {name} has no {miss['corruption']} severity {int(miss['severity'])}; "
                        "use a baseline with every severity the results have")
    pairs["E"] = 1.0 - pairs["acc"]
    pairs["E_base"] = 1.0 - pairs["acc_base"]
    pairs["E_clean"] = pairs["_g"].map(1.0 - clean.groupby("_g")["acc"].mean()).astype(float)
    base_clean = base[base["severity"] == 0]
    pairs["E_base_clean"] = 1.0 - float(base_clean["acc"].mean()) if len(base_clean) else math.nan
    pairs["rel"] = pairs["E"] - pairs["E_clean"]
    pairs["rel_base"] = pairs["E_base"] - pairs["E_base_clean"]
    ratios = {"CE": ("E", "E_base"), "relative_CE": ("rel", "rel_base"), "CNLL": ("nll", "nll_base"),
              "CECE": ("ece", "ece_base")}
    ratios = {k: v for k, v in ratios.items() if v[0] in pairs.columns and v[1] in pairs.columns}
    grouped = pairs.groupby(keys, sort=False)
    sums = grouped[sorted({c for pair in ratios.values() for c in pair})].agg(_strict_sum)
    out = pd.DataFrame({k: sums[a] / sums[b] for k, (a, b) in ratios.items()})
    out["base_err"] = grouped["E_base"].mean()
    if "CECE" in out.columns:
        out.loc[_ece_mismatch(cells, base).reindex(out.index, fill_value=False).to_numpy(), "CECE"] = math.nan
    table = table.merge(out.reset_index(), on=keys, how="left")
    table["baseline"] = name
    return table


def _ece_mismatch(cells: pd.DataFrame, base: pd.DataFrame) -> pd.Series:
    """Per (model evaluation, source, corruption): True where the model's ECE settings differ from the
    baseline's (both known)."""
    differs = pd.Series(False, index=cells.index)
    for column in ("ece_mode", "ece_bins"):
        if column not in cells.columns or column not in base.columns:
            continue
        known = {canonical(v) for v in base[column]} - {""}
        if len(known) == 1:
            mine = cells[column].map(canonical)
            differs |= (mine != "") & (mine != known.pop())
    return differs.groupby([cells["_g"], cells["_src"], cells["corruption"]], sort=False).any()


def summarize_corruptions(df: pd.DataFrame, baseline: pd.DataFrame | None = None, *,
                          corruptions: str | Sequence[str] = "common") -> pd.DataFrame:
    """One row per model evaluation (:data:`EVALUATION_KEYS`, seed and ECE settings present, plus ``source``).

    Unnormalised means over the selected corruptions × severities 1..5 (``corruptions``: ``"common"`` =
    the 15 benchmark ones present, ``"extra"`` = the 4 held-out ones, ``"all"`` present, or a list):
    ``cAcc`` = mean acc, ``cNLL``, ``cECE``, ``cBrier`` likewise (corruption error = 1 − cAcc), and the
    per-severity means over corruptions as columns ``cAcc_s1`` … ``cAcc_s5`` (also cNLL/cECE/cBrier).
    ``n_corruptions``, ``corruptions`` (comma list) and ``n_cells`` say what was averaged.
    ``clean_acc``, ``clean_nll``, ``clean_ece``, ``clean_brier`` come from severity-0 rows (averaged if a
    sweep repeated them; NaN if absent). ``data_fingerprint`` is the clean rows' fingerprint and
    ``c_data_fingerprint`` a hash over the fingerprints of the corrupted cells used.

    With a ``baseline`` (CE_c etc. and the refusal rules as in :func:`per_corruption_table`), over the same
    corruptions: ``mCE`` = mean_c CE_c, ``relative_mCE`` = mean_c relative_CE_c, ``mCNLL`` = mean_c CNLL_c,
    ``mCECE`` = mean_c CECE_c (NaN where any CE term is unknown), and ``baseline`` names it. Fractions,
    not percents.
    """
    cells, clean, groups, selected = _prepare(df, corruptions)
    ratios = _per_corruption(cells, clean, baseline) if baseline is not None else None
    records = []
    for (g, src), frame in cells.groupby(["_g", "_src"], sort=False):
        names = [c for c in selected if c in set(frame["corruption"])]
        own_clean = clean[clean["_g"] == g]
        both = pd.concat([own_clean, frame]) if len(own_clean) else frame
        record: dict[str, Any] = {c: frame[c].iloc[0] for c in groups}
        if "source" in frame.columns:
            record["source"] = frame["source"].iloc[0]
        for column in CARRIED_COLUMNS:
            if column in frame.columns:
                record[column] = _carried(frame if column.startswith("corruption") else both, column)
        if "data_fingerprint" in frame.columns:
            record["data_fingerprint"] = _carried(own_clean, "data_fingerprint") if len(own_clean) else math.nan
            record["c_data_fingerprint"] = _fingerprint(frame["data_fingerprint"])
        record.update(n_corruptions=len(names), corruptions=",".join(names), n_cells=len(frame))
        present = [(m, label) for m, label in _SUMMARY_METRICS.items() if m in frame.columns]
        for metric, label in present:
            record[f"clean_{metric}"] = float(own_clean[metric].mean()) if len(own_clean) else math.nan
            record[label] = float(frame[metric].mean())
        for metric, label in present:
            by_severity = frame.groupby("severity")[metric].mean()
            for s in _SEVERITIES:
                record[f"{label}_s{s}"] = float(by_severity.get(s, math.nan))
        if ratios is not None:
            mine = ratios[(ratios["_g"] == g) & (ratios["_src"] == src)]
            record["baseline"] = mine["baseline"].iloc[0]
            for ratio, label in _MEAN_RATIOS.items():
                record[label] = float(mine[ratio].mean(skipna=False)) if ratio in mine.columns else math.nan
        records.append(record)
    return pd.DataFrame(records)


# ----------------------------------------------------------------------------------------------------------
# baselines
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
    - ``"paper-alexnet-cifar100"`` / ``"paper-alexnet-imagenet"``: the paper code's AlexNet CSV
      (``resources/results/<dataset>_alexnet_dnn_corrupted.csv`` of xxxnell/spatial-smoothing), which is
      not shipped: it is read from ``baseline_dir`` or ``$SMOOTHBENCH_BASELINE_DIR``.
    - a file: the paper's header-less 16-column CSV (:data:`PAPER_CSV_COLUMNS`; ECE there uses the paper's
      10-bin reference binning; it has no clean row, so relative mCE is NaN), or a smoothbench corruption
      table (CSV/JSON) holding one model at ``ensemble_size`` (pick it with ``model`` if there are several).
      The format is detected from the content; anything else raises UserError.
    """
    text = os.fspath(spec)
    if text == "alexnet-imagenet-c":
        return _alexnet_imagenet_c()
    if text in PAPER_BASELINE_FILES:
        folder = baseline_dir or os.environ.get("SMOOTHBENCH_BASELINE_DIR")
        path = Path(folder) / PAPER_BASELINE_FILES[text] if folder else None
        if path is None or not path.is_file():
            raise UserError(f"{text} needs the paper code's {PAPER_BASELINE_FILES[text]} (not shipped with "
                            "smoothbench): put it in $SMOOTHBENCH_BASELINE_DIR or pass the file as the baseline")
        return _paper_csv(path)
    path = Path(text)
    if not path.is_file():
        raise UserError(f"baseline {text!r} is neither a built-in (alexnet-imagenet-c, "
                        f"{', '.join(PAPER_BASELINE_FILES)}) nor an existing file")
    if path.suffix.lower() != ".json":
        with open(path, encoding="utf-8", errors="replace") as handle:
            fields = [f.strip() for f in handle.readline().split(",")]
        if len(fields) == len(PAPER_CSV_COLUMNS) and fields[0].isdigit():
            return _paper_csv(path)
        if not {"corruption", "severity"} <= set(fields):
            raise UserError(f"{path} is neither the paper's 16-column AlexNet CSV nor a smoothbench corruption "
                            "table; give one of those")
    return _sweep_baseline(path, model, ensemble_size)


def _alexnet_imagenet_c() -> pd.DataFrame:
    """The built-in ImageNet-C AlexNet baseline (see :func:`load_baseline`)."""
    rows = [{"corruption": "clean", "severity": 0, "acc": 1.0 - ALEXNET_IMAGENET_CLEAN_ERR}]
    rows += [{"corruption": c, "severity": s, "acc": 1.0 - err} for c, err in ALEXNET_IMAGENET_C_ERR.items()
             for s in _SEVERITIES]
    frame = pd.DataFrame(rows).assign(nll=math.nan, ece=math.nan, brier=math.nan)
    return frame.assign(baseline_name="alexnet-imagenet-c")


def _paper_csv(path: Path) -> pd.DataFrame:
    """Parse the paper code's header-less 16-column corruption CSV (one row per severity × corruption)."""
    try:
        frame = pd.read_csv(path, header=None, names=list(PAPER_CSV_COLUMNS), dtype={"corruption": str})
        numeric = [c for c in PAPER_CSV_COLUMNS if c != "corruption"]
        frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="raise")
    except (ValueError, pd.errors.ParserError) as err:
        raise UserError(f"{path} is not the paper's 16-column AlexNet CSV ({err}); give that file or a "
                        "smoothbench corruption table") from None
    shape_ok = frame.shape[1] == len(PAPER_CSV_COLUMNS) and frame["severity"].isin(_SEVERITIES).all()
    if not shape_ok or not (np.allclose(frame["cutoff_0"], 0.0) and np.allclose(frame["cutoff_1"], 0.9)):
        raise UserError(f"{path} does not look like the paper's AlexNet CSV (severity 1..5, cutoffs 0.0 and 0.9 "
                        "in columns 4-5); give that file or a smoothbench corruption table")
    frame["severity"] = frame["severity"].astype(int)
    frame = frame.drop(columns=["cutoff_0", "cutoff_1", "unc", "freq"])  # constants (0, 0.9, 0, 1)
    return frame.assign(ece_mode="reference", ece_bins=10, baseline_name=path.stem)


def _sweep_baseline(path: Path, model: str | None, ensemble_size: int) -> pd.DataFrame:
    """Rows of one model at ``ensemble_size`` from a smoothbench corruption table, as a baseline."""
    table = _read_table(path)
    if not {"corruption", "severity", "acc", "model"} <= set(table.columns):
        raise UserError(f"{path} is not a smoothbench corruption table (needs model, corruption, severity, acc); "
                        "give one, or the paper's AlexNet CSV")
    if "ensemble_size" in table.columns:
        table = table[pd.to_numeric(table["ensemble_size"], errors="coerce") == ensemble_size]
    if model is not None:
        table = table[table["model"] == model]
    identity = [c for c in ("model", "checkpoint_sha256") if c in table.columns]
    found = sorted({" ".join(k) for k in _keys(table, identity)})
    if len(found) != 1:
        listed = ", ".join(found) if found else "none"
        raise UserError(f"{path} must hold exactly one model at ensemble size {ensemble_size} to be a baseline "
                        f"(found: {listed}); choose one with the model filter")
    table = table[table["severity"].notna()].copy()
    table["severity"] = pd.to_numeric(table["severity"]).astype(int)
    if table.duplicated(["corruption", "severity"]).any():
        raise UserError(f"{path} has several rows per corruption and severity for {found[0]} (e.g. released and "
                        "generated); keep one evaluation in the baseline file")
    keep = ["corruption", "severity"] + [c for c in METRIC_COLUMNS + ("ece_mode", "ece_bins") if c in table.columns]
    return table[keep].reset_index(drop=True).assign(baseline_name=str(table["model"].iloc[0]))
