"""Building a ranked leaderboard from the result rows of many runs, with provenance (rendering: :mod:`.render`).

:func:`build_leaderboard` recognises the rows by their columns: OOD rows have ``ood_set``, natural-shift rows
have ``shift``, consistency rows have ``kind``, corruption rows have ``corruption`` and ``severity``, the
others are clean evaluations. A :data:`VIEWS` entry picks which rows are ranked, the default sort key and the
metrics shown: ``paper`` (clean, corrupted and consistency metrics), ``selective``, ``ood`` and ``shift``. One
leaderboard row is one configuration (arch, method, smoothing, blur, tau, dropout rate, width; or the model
name when those are unknown) on one dataset at one ensemble size; several seeds / checkpoints of it are
averaged. Rows are ranked only against comparable rows (same dataset, subset, number of images, data
fingerprints, ECE settings, calibration, corruption source); the others form separate groups and the
leaderboard's ``notes`` say why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from smoothbench.errors import UserError
from smoothbench.results.store import canonical, row_key
from smoothbench.results.summaries import summarize_corruptions
from smoothbench.schema import (CALIBRATED_ROW_METRICS, CORRUPTION_METRICS, MC_SIZE_METRICS, OOD_METRICS,
                                PERTURBATION_METRICS, ROW_METRICS, direction)

#: Columns that must agree for rows to be ranked together: the clean evaluation's data and ECE settings, and
#: the corruption sweep's (``c_*``, ``source``), the input recipe (``preprocess``) and the forward precision
#: (bf16 and fp32 rows are not one replicate), post-hoc ``calibration`` (``none`` without), a published image
#: list (``subset_sha256``), and for the ``ood`` and ``shift`` views the OOD set and score or the shift set.
#: ``subset`` is ``full`` for the whole set; an empty value means that part was not measured and conflicts
#: with nothing.
COMPARABILITY = ("dataset", "subset", "n_images", "data_fingerprint", "preprocess", "ece_mode", "ece_bins", "precision",
                 "calibration", "subset_sha256", "source", "c_subset", "c_n_images", "c_data_fingerprint",
                 "ood_set", "score", "shift")
#: Columns that define a configuration; its seeds / checkpoints are averaged.
CONFIG = ("arch", "method", "smoothing", "blur", "tau", "dropout_rate", "width")
#: Provenance kept on every leaderboard row.
PROVENANCE = ("smoothbench_version", "seed", "checkpoint_sha256", "data_fingerprint", "subset", "n_images", "preprocess",
              "ece_mode", "ece_bins", "precision", "calibration", "subset_sha256", "source", "c_subset", "c_n_images",
              "c_data_fingerprint", "ood_set", "score", "shift")


@dataclass(frozen=True)
class View:
    """One kind of leaderboard: which ``rows`` it ranks (``evaluation``: clean, corruption and consistency rows
    joined per run; ``ood``; ``shift``), its default ``sort`` key and the metrics it ``shown`` (when present)."""

    name: str
    rows: str
    sort: str
    shown: tuple[str, ...]
    meaning: str
    split_by: tuple[str, ...] = ()  # comparability fields that form the view's groups by design (no note)


#: The leaderboards ``smoothbench leaderboard --view`` builds.
VIEWS: dict[str, View] = {view.name: view for view in (
    View("paper", "evaluation", "nll",
         ("acc", "nll", "ece", "brier", "nll_ts", "ece_ts", "cAcc", "cNLL", "cECE", "mCE", "agreement", "consistency",
          "flip_prob"),
         "the paper's metrics: clean, under corruption, consistency (calibrated NLL/ECE when present)"),
    View("selective", "evaluation", "aurc", ("acc", "aurc", "eaurc", "augrc", "risk_at_80", "coverage_at_5", "aurc_ts"),
         "selective prediction: rank by confidence, reject the least confident"),
    View("ood", "ood", "auroc_ood", OOD_METRICS, "OOD detection, one group per OOD set and score", ("ood_set", "score")),
    View("shift", "shift", "acc", ("acc", "nll", "ece", "brier", "nll_cifar10h"),
         "natural distribution shifts, one group per set (clean: the test set)", ("shift",)),
)}

_JOIN = ("model", "checkpoint_sha256", "dataset", "ensemble_size", "seed", "precision")
_ECE = ("ece_mode", "ece_bins", "calibration")
_CORRUPTION_SIDE = ("c_subset", "c_n_images", "c_data_fingerprint")
_EVAL_SPLITS = {"", "test", "val", "validation"}


@dataclass
class Leaderboard:
    """Ranked rows (``table``) with their comparability ``groups`` and human-readable ``notes``.

    ``table`` has one row per (group, configuration, ensemble size): ``group`` (1 = largest), ``rank``
    within the group by ``sort``, ``name``, the configuration, each metric's seed mean (``<metric>``) and
    sample standard deviation (``<metric>_std``, ddof 1, NaN for one seed), ``n_seeds`` and provenance.
    All metric values are fractions. ``groups[i]`` holds the comparability fields of group ``i + 1``.
    :mod:`smoothbench.leaderboard.render` turns it into markdown, CSV, JSON or HTML.
    """

    table: pd.DataFrame
    sort: str
    notes: list[str] = field(default_factory=list)
    groups: list[dict[str, str]] = field(default_factory=list)
    view: str = "paper"

    def metrics(self) -> list[str]:
        """Metric columns of the table (means; each has a ``_std`` partner)."""
        return [c[:-4] for c in self.table.columns if c.endswith("_std")]


def _base_dataset(name: Any) -> str:
    """``cifar10-c`` / ``cifar10-p`` → ``cifar10``: corrupted and perturbed sets join their clean dataset."""
    text = canonical(name)
    return text[:-2] if text.endswith(("-c", "-p")) else text


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, or an empty column where the rows do not have it."""
    return frame[name] if name in frame.columns else pd.Series("", index=frame.index, dtype=object)


def _subset_text(value: Any) -> str:
    """``subset`` as a comparability value: ``full`` for the whole set (an empty subset column)."""
    return canonical(value) or "full"


def _calibration_text(value: Any) -> str:
    """``calibration`` as a comparability value: ``none`` for raw rows, so that a run's raw and calibrated rows
    are never averaged as two seeds."""
    return canonical(value) or "none"


def _keyed(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """``frame`` with a canonical join key ``_k`` over ``columns`` (missing columns count as empty)."""
    frame = frame.copy()
    frame["_k"] = ["\x1f".join(row_key(r, columns)) for r in frame.to_dict("records")]
    return frame


def _outer(left: pd.DataFrame | None, right: pd.DataFrame | None) -> pd.DataFrame | None:
    """Outer join on ``_k``; a column in both keeps the left value where it is known."""
    if left is None or right is None:
        return left if right is None else right
    merged = left.merge(right, on="_k", how="outer", suffixes=("", "_r"), sort=False)
    for column in right.columns:
        if f"{column}_r" in merged.columns:
            merged[column] = merged[column].astype(object).where(merged[column].notna(), merged[f"{column}_r"])
            merged = merged.drop(columns=f"{column}_r")
    return merged


def _eval_part(rows: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """Clean-evaluation rows on a test/val split, one per replicate."""
    if rows.empty:
        return None
    if "split" in rows.columns:
        split = rows["split"].map(canonical).str.lower()
        dropped = rows[~split.isin(_EVAL_SPLITS)]
        if len(dropped):
            notes.append(f"{len(dropped)} evaluation row(s) on split={', '.join(sorted(set(dropped['split'])))} "
                         "ignored (only test/val splits are ranked)")
        rows = rows[split.isin(_EVAL_SPLITS)]
    rows = rows.drop(columns=[c for c in ("source",) + _CORRUPTION_SIDE if c in rows.columns])
    rows = rows.assign(dataset=_column(rows, "dataset").map(_base_dataset),
                       subset=_column(rows, "subset").map(_subset_text),
                       calibration=_column(rows, "calibration").map(_calibration_text))
    distinct = _JOIN + ("subset", "subset_sha256", "ood_set", "score", "shift") + _ECE
    rows = _keyed(rows, distinct).drop_duplicates("_k", keep="last")
    return _keyed(rows, _JOIN + _ECE)  # the join with corruption rows (OOD and shift views have none)


def _corruption_part(rows: pd.DataFrame, baseline: pd.DataFrame | None,
                     corruptions: str | Sequence[str], notes: list[str]) -> pd.DataFrame | None:
    """Corruption summaries (:func:`summarize_corruptions`), one per replicate and source."""
    if rows.empty:
        return None
    summary = summarize_corruptions(rows, baseline, corruptions=corruptions)
    if baseline is None:
        notes.append("mCE omitted: no corruption baseline given")
    summary = summary.assign(dataset=_column(summary, "dataset").map(_base_dataset),
                             c_subset=_column(summary, "subset").map(_subset_text),
                             c_n_images=_column(summary, "n_images"),
                             calibration=_column(summary, "calibration").map(_calibration_text))
    clean_side = ("subset", "n_images", "data_fingerprint")  # the sweep's clean rows: not the clean evaluation
    keep = [c for c in summary.columns if c not in clean_side and c in CORRUPTION_METRICS + _JOIN + CONFIG
            + COMPARABILITY + ("members", "mc_samples", "smoothbench_version", "baseline")]
    return _keyed(summary[keep], _JOIN + _ECE)


def _consistency_part(rows: pd.DataFrame, notes: list[str]) -> pd.DataFrame | None:
    """Consistency rows averaged per replicate: mc-size metrics, and perturbation metrics over perturbations."""
    if rows.empty:
        return None
    rows = rows.assign(dataset=_column(rows, "dataset").map(_base_dataset))
    kinds = rows["kind"].map(canonical)
    parts = []
    for kind, metrics in (("mc-size", MC_SIZE_METRICS), ("perturbation", PERTURBATION_METRICS)):
        mine = _keyed(rows[kinds == kind], _JOIN)
        present = [m for m in metrics if m in mine.columns]
        if mine.empty or not present:
            continue
        grouped = mine.groupby("_k", sort=False)
        part = grouped[present].mean()
        firsts = grouped[[c for c in _JOIN + CONFIG + ("smoothbench_version",) if c in mine.columns]].first()
        parts.append(firsts.join(part).reset_index())
    other = sorted(set(kinds) - {"mc-size", "perturbation"})
    if other:
        notes.append(f"consistency rows of kind {', '.join(other)} ignored (known kinds: mc-size, perturbation)")
    merged = None
    for part in parts:
        merged = _outer(merged, part)
    return merged


def _config_name(row: pd.Series) -> str:
    """A readable configuration name for rows of several differently named runs."""
    parts = (canonical(row.get(k)) for k in ("arch", "method", "smoothing"))
    head = "-".join(t for t in parts if t and t != "none")
    smoothed = canonical(row.get("smoothing")) not in ("", "none")
    shown = ("blur", "tau", "dropout_rate", "width") if smoothed else ("dropout_rate", "width")
    extras = ", ".join(f"{k}={canonical(row.get(k))}" for k in shown if canonical(row.get(k)))
    return head + (f" ({extras})" if extras else "")


def _configuration(row: dict[str, Any], head: Sequence[str]) -> str:
    """Key of a row's configuration: ``head`` columns plus :data:`CONFIG` (or the model name without arch)."""
    return "\x1f".join(row_key(row, tuple(head) + (CONFIG if canonical(row.get("arch")) else ("model",))))


def _select_sizes(replicates: pd.DataFrame, ensemble_size: int | Sequence[int] | str | None) -> pd.DataFrame:
    """Rows at the requested ensemble size(s): ``None`` = each configuration's largest, ``"all"`` = every size."""
    sizes = pd.to_numeric(replicates["ensemble_size"], errors="coerce")
    if ensemble_size is None:
        return replicates[sizes.fillna(0) == sizes.fillna(0).groupby(replicates["_family"]).transform("max")]
    if isinstance(ensemble_size, str):
        if ensemble_size != "all":
            raise UserError(f"ensemble size must be a number, a list of numbers or 'all', got {ensemble_size!r}")
        return replicates
    wanted = [ensemble_size] if isinstance(ensemble_size, (int, np.integer)) else list(ensemble_size)
    chosen = replicates[sizes.isin(wanted)]
    if chosen.empty:
        raise UserError(f"no rows at ensemble size {', '.join(map(str, wanted))}; the results have "
                        f"{', '.join(map(str, sorted(sizes.dropna().unique())))}")
    return chosen


def _aggregate(replicates: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Average the seeds / checkpoints of each (comparability group, configuration) pair."""
    records = []
    for (group, _), frame in replicates.groupby(["_group", "_config"], sort=False):
        first = frame.iloc[0]
        names = list(dict.fromkeys(frame["model"].map(canonical))) if "model" in frame.columns else []
        record: dict[str, Any] = {"group": group, "name": names[0] if len(names) == 1 else _config_name(first),
                                  "n_seeds": len(frame)}
        for column in ("dataset", "ensemble_size", "members", "mc_samples") + CONFIG:
            if column in frame.columns:
                record[column] = first[column]
        for metric in metrics:
            values = pd.to_numeric(frame[metric], errors="coerce")
            record[metric] = float(values.mean())
            record[f"{metric}_std"] = float(values.std(ddof=1)) if values.notna().sum() > 1 else math.nan
        for column in PROVENANCE:
            if column in frame.columns:
                values = [v for v in dict.fromkeys(frame[column].map(canonical)) if v]
                record[column] = ",".join(values)
        if "baseline" in frame.columns:
            record["baseline"] = ",".join(v for v in dict.fromkeys(frame["baseline"].map(canonical)) if v)
        records.append(record)
    return pd.DataFrame(records)


def _rank(table: pd.DataFrame, sort: str) -> pd.Series:
    """Rank 1 = best within each group by ``sort`` (ties share the best rank; NaN is unranked); a metric with
    no better direction (:func:`smoothbench.schema.direction`) is ranked in ascending order."""
    better = direction(sort)
    values = table[sort].abs() if better == "abs-lower" else table[sort]
    ascending = better != "higher"
    return values.groupby(table["group"]).rank(method="min", ascending=ascending).astype("Int64")


def _compatible(a: dict[str, str], b: dict[str, str], fields: Sequence[str] = COMPARABILITY) -> bool:
    """Comparable unless a field differs; an empty (unmeasured) field differs from nothing."""
    return all(a[f] == b[f] or "" in (a[f], b[f]) for f in fields)


def _assign_groups(comps: list[str], sizes: dict[str, int]) -> tuple[dict[str, int], list[dict[str, str]]]:
    """Comparability groups: the most frequent (then the most fully measured) field values first, then each
    further set joins the first group it is :func:`_compatible` with (filling that group's unknown fields)
    or opens a new one."""
    groups: list[dict[str, str]] = []
    number: dict[str, int] = {}
    for comp in sorted(comps, key=lambda c: (-sizes[c], c.split("\x1f").count(""), comps.index(c))):
        fields = dict(zip(COMPARABILITY, comp.split("\x1f")))
        match = next((i for i, g in enumerate(groups) if _compatible(g, fields)), None)
        if match is None:
            groups.append(fields)
            match = len(groups) - 1
        groups[match] = {f: groups[match][f] or fields[f] for f in COMPARABILITY}
        number[comp] = match + 1
    return number, groups


def _shown_value(value: str) -> str:
    return value if value != "" else "none"


def _group_notes(groups: list[dict[str, str]], counts: list[int], split_by: Sequence[str] = ()) -> list[str]:
    """Why the rows of groups 2, 3, ... were ranked apart from the first group of their view split (the same
    ``split_by`` values; the view's own grouping, which needs no note)."""
    notes = []
    firsts: dict[tuple[str, ...], int] = {}
    for number, (fields, count) in enumerate(zip(groups, counts), start=1):
        first = firsts.setdefault(tuple(fields[f] for f in split_by), number)
        if first == number:
            continue
        ref = groups[first - 1]
        reasons = ", ".join(f"{f}={_shown_value(fields[f])} (group {first}: {_shown_value(ref[f])})"
                            for f in COMPARABILITY if not _compatible({f: fields[f]}, {f: ref[f]}, (f,)))
        notes.append(f"{count} row(s) use {reasons}; ranked separately as group {number}")
    return notes


def _values(groups: list[dict[str, str]], field: str) -> list[str]:
    """The distinct measured values of ``field`` over ``groups``."""
    return sorted({g[field] for g in groups} - {""})


def _merged_fields(groups: list[dict[str, str]]) -> dict[str, str]:
    """The fields of several groups ranked as one: the common value, else ``mixed``."""
    merged = {}
    for f in COMPARABILITY:
        values = _values(groups, f)
        merged[f] = values[0] if len(values) == 1 else ("mixed" if values else "")
    return merged


def _mixed_notes(groups: list[dict[str, str]]) -> list[str]:
    """With ``allow_mixed``: which comparability fields differ among the rows ranked together."""
    return [f"rows differ in {f} ({', '.join(map(_shown_value, _values(groups, f)))}); ranked together because "
            "allow_mixed" for f in COMPARABILITY if len(_values(groups, f)) > 1]


def _view_rows(df: pd.DataFrame, view: View, notes: list[str]) -> pd.DataFrame:
    """The rows ``view`` ranks: OOD rows (``ood_set``), shift rows (``shift``, the clean test set's included),
    or the others (a shift command's clean rows count as clean evaluations)."""
    ood = _column(df, "ood_set").map(canonical) != ""
    shift = _column(df, "shift").map(canonical)
    if view.rows == "ood":
        return df[ood]
    if view.rows == "shift":
        return df[shift != ""]
    clean = shift.isin(["", "clean"])
    others = [f"{count} {what} row(s) (ranked with --view {name})"
              for count, what, name in ((int(ood.sum()), "OOD", "ood"), (int((~clean & ~ood).sum()), "natural-shift",
                                                                          "shift")) if count]
    if others:
        notes.append(f"{' and '.join(others)} left out of the {view.name} view")
    kept = df[~ood & clean]
    return kept.drop(columns=[c for c in ("ood_set", "score", "shift") if c in kept.columns])


def build_leaderboard(df: pd.DataFrame, *, sort: str | None = None,
                      ensemble_size: int | Sequence[int] | str | None = None, allow_mixed: bool = False,
                      baseline: pd.DataFrame | None = None, corruptions: str | Sequence[str] = "common",
                      view: str = "paper") -> Leaderboard:
    """Rank the runs in ``df`` (rows from :func:`smoothbench.results.read_results`).

    ``view`` (:data:`VIEWS`) picks the rows and the default ``sort``: ``paper`` (nll) ranks clean, corruption
    and consistency rows joined per run, ``selective`` (aurc) the clean rows by their selective-prediction
    metrics, ``ood`` (auroc_ood) the OOD rows in one group per OOD set and score, ``shift`` (acc) the
    natural-shift rows in one group per set.

    Per configuration and ensemble size (``ensemble_size``: one size, a list, ``"all"``, or ``None`` = each
    configuration's largest size; deep ensembles count as the same configuration as their members):
    clean metrics from evaluation rows (test/val splits), ``cAcc/cNLL/cECE/cBrier`` from corruption rows
    (:func:`smoothbench.results.summarize_corruptions` over ``corruptions``; ``mCE``, ``relative_mCE``,
    ``mCNLL``, ``mCECE`` only with a ``baseline``), ``agreement`` etc. from ``mc-size`` consistency rows at
    that size and ``consistency`` / ``flip_prob`` etc. averaged over ``perturbation`` rows. The kinds are
    joined per run on (model, checkpoint, dataset without ``-c``/``-p``, ensemble size, seed, precision; eval
    and corruption rows also on ece_mode and ece_bins), so run ``eval``, ``corrupt`` and ``consistency`` with
    the same ``--seed``. Runs of one configuration that
    differ in seed or checkpoint are averaged (mean, sample std, ``n_seeds``). Rows that differ in a
    :data:`COMPARABILITY` column are ranked in separate groups (group 1 = the largest) with a note for
    each, unless ``allow_mixed``. ``sort`` is any metric column; its direction comes from
    :mod:`smoothbench.schema` (``ece_signed`` by absolute value; metrics with no better direction, such as
    ``entropy``, in ascending order).
    """
    if view not in VIEWS:
        raise UserError(f"unknown leaderboard view {view!r}: choose from {', '.join(VIEWS)}")
    chosen = VIEWS[view]
    sort = sort or chosen.sort
    if df.empty or "model" not in df.columns:
        raise UserError("no result rows to rank; give smoothbench result files (eval, corrupt, consistency, ood, shift)")
    notes: list[str] = []
    df = _view_rows(df, chosen, notes)
    if df.empty:
        raise UserError(f"no rows for the {view} view ({chosen.meaning}); "
                        + ("run smoothbench ood" if chosen.rows == "ood" else
                           "run smoothbench shift" if chosen.rows == "shift" else "give eval, corrupt or consistency results"))
    is_consistency = df["kind"].notna() if "kind" in df.columns else pd.Series(False, index=df.index)
    is_corruption = ~is_consistency
    for column in ("corruption", "severity"):
        is_corruption &= df[column].notna() if column in df.columns else False
    parts = [_eval_part(df[~is_consistency & ~is_corruption], notes),
             _corruption_part(df[is_corruption], baseline, corruptions, notes),
             _consistency_part(df[is_consistency], notes)]
    replicates = _outer(parts[0], parts[1])  # joined on the run and its ECE settings
    if parts[2] is not None:  # consistency has no ECE settings: joined on the run only
        replicates = _outer(None if replicates is None else _keyed(replicates, _JOIN), parts[2])
    known = ROW_METRICS + CALIBRATED_ROW_METRICS + ("temperature", "nll_cifar10h") + OOD_METRICS
    metrics = [m for m in known + CORRUPTION_METRICS + MC_SIZE_METRICS + PERTURBATION_METRICS
               if replicates is not None and m in replicates.columns and replicates[m].notna().any()]
    if not metrics:
        raise UserError("the rows have no metric columns; give smoothbench result files (eval, corrupt, consistency)")
    if sort not in metrics:
        raise UserError(f"cannot sort by {sort!r}: the results have {', '.join(metrics)}")
    replicates = replicates.copy()
    replicates["_family"] = [_configuration(r, ("dataset",)) for r in replicates.to_dict("records")]
    replicates = _select_sizes(replicates, ensemble_size)
    replicates["_comp"] = ["\x1f".join(row_key(r, COMPARABILITY)) for r in replicates.to_dict("records")]
    replicates["_config"] = [_configuration(r, ("dataset", "ensemble_size", "members", "mc_samples", "calibration"))
                             for r in replicates.to_dict("records")]
    comps = list(dict.fromkeys(replicates["_comp"]))
    number, groups = _assign_groups(comps, replicates["_comp"].value_counts().to_dict())
    replicates["_group"] = replicates["_comp"].map(number)
    table = _aggregate(replicates, metrics)
    if allow_mixed:  # one group per value of the view's own grouping fields (one group for the paper view)
        by_split: dict[tuple[str, ...], list[int]] = {}
        for i, fields in enumerate(groups):
            by_split.setdefault(tuple(fields[f] for f in chosen.split_by), []).append(i + 1)
        merged = {old: new for new, members in enumerate(by_split.values(), start=1) for old in members}
        notes += [note for members in by_split.values() for note in _mixed_notes([groups[i - 1] for i in members])]
        groups = [_merged_fields([groups[i - 1] for i in members]) for members in by_split.values()]
        table["group"] = table["group"].map(merged)
    else:
        counts = table["group"].value_counts()
        notes += _group_notes(groups, [int(counts.get(i + 1, 0)) for i in range(len(groups))], chosen.split_by)
    table["ensemble_size"] = pd.to_numeric(table["ensemble_size"], errors="coerce").astype("Int64")
    table["rank"] = _rank(table, sort)
    table = table.sort_values(["group", "rank"], na_position="last", kind="stable")
    front = ["group", "rank", "name", "dataset", "ensemble_size", "members", "mc_samples", "n_seeds", *CONFIG]
    metric_columns = [c for m in metrics for c in (m, f"{m}_std")]
    columns = [c for c in front + metric_columns + list(PROVENANCE) + ["baseline"] if c in table.columns]
    return Leaderboard(table[columns].reset_index(drop=True), sort, notes, groups, view)
