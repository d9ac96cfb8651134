"""Corruption summaries: per-corruption tables and the cAcc / cNLL / cECE / mCE summary of a sweep.

They follow Hendrycks & Dietterich (2019) and Park & Kim (2022, Fig. 9); every number is a fraction, never
a percent. Baselines (the denominators of mCE and its kin) come from :mod:`smoothbench.results.baselines`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from smoothbench.errors import UserError
from smoothbench.results.store import canonical, keys_of
from smoothbench.schema import COMMON_CORRUPTIONS, EVALUATION_IDENTITY, EXTRA_CORRUPTIONS, SEVERITIES

#: Summaries are computed per these columns (where present) and ``source``: rows of other MC seeds or ECE
#: settings (e.g. read from several files) are summarised separately.
SUMMARY_GROUPS = EVALUATION_IDENTITY
#: Columns carried from the rows into a summary (a column that varies within a group is joined with ";").
CARRIED_COLUMNS = ("arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width", "split",
                   "smoothbench_version", "seed", "n_images", "ece_bins", "ece_mode", "precision", "preprocess",
                   "corruption_params", "corruption_seed")
_SUMMARY_METRICS = {"acc": "cAcc", "nll": "cNLL", "ece": "cECE", "brier": "cBrier"}
_MEAN_RATIOS = {"CE": "mCE", "relative_CE": "relative_mCE", "CNLL": "mCNLL", "CECE": "mCECE"}


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
    rows (severity 0); both get ``_g`` (model-evaluation key over :data:`SUMMARY_GROUPS`) and ``_src`` (source
    and corruption seed).
    Also returns the key columns present and the selected corruption names."""
    if not {"corruption", "severity", "acc"} <= set(df.columns):
        raise UserError("no corruption rows (columns corruption, severity, acc); give `smoothbench corrupt` results")
    rows = df[df["severity"].notna() & df["corruption"].notna()].copy()
    rows["severity"] = pd.to_numeric(rows["severity"], errors="coerce")
    groups = [c for c in SUMMARY_GROUPS if c in rows.columns]
    rows["_g"] = ["\x1f".join(key) for key in keys_of(rows, groups)]
    # the cells' source and, for generated cells, their corruption seed: other draws are another sweep
    origin = [c for c in ("source", "corruption_seed") if c in rows.columns]
    rows["_src"] = ["\x1f".join(key) for key in keys_of(rows, origin)] if origin else ""
    cells = rows[rows["severity"].isin(SEVERITIES)]
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

    Columns: the :data:`~smoothbench.schema.EVALUATION_IDENTITY` (and seed, ece_mode, ece_bins) present, ``source``,
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
    base_cells = base[base["severity"].isin(SEVERITIES)]
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
    """One row per model evaluation (:data:`~smoothbench.schema.EVALUATION_IDENTITY`, seed and ECE settings present, plus ``source``).

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
            for s in SEVERITIES:
                record[f"{label}_s{s}"] = float(by_severity.get(s, math.nan))
        if ratios is not None:
            mine = ratios[(ratios["_g"] == g) & (ratios["_src"] == src)]
            record["baseline"] = mine["baseline"].iloc[0]
            for ratio, label in _MEAN_RATIOS.items():
                record[label] = float(mine[ratio].mean(skipna=False)) if ratio in mine.columns else math.nan
        records.append(record)
    return pd.DataFrame(records)

