"""Tidy result tables on disk: canonical row keys, atomic de-duplicated CSV/JSON writes, reading result files.

A result table is one row per measurement with a header (see docs/architecture.md, "Result rows").
Rows are identified by *key columns* (:mod:`smoothbench.schema`); writing a row whose key is already in
the file replaces it, so a table never holds two rows with the same key and a rerun (or a resumed sweep)
simply overwrites its cells. Key values are compared in a canonical text form (:func:`row_key`), so
``5``, ``5.0`` and ``"5"`` are the same key and a missing value (``None``, NaN, ``""``) is one value.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from smoothbench.errors import UserError, param
from smoothbench.fileio import atomic_open, check_writable_file, locked
from smoothbench.schema import (CONSISTENCY_METRICS, INTEGER_COLUMNS, METRICS, OOD_METRICS, REQUIRED_COLUMNS, ROW_METRICS,
                                TEXT_COLUMNS)

PathLike = str | os.PathLike


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


def keys_of(frame: pd.DataFrame, key_columns: Sequence[str]) -> list[tuple[str, ...]]:
    """:func:`row_key` of every row of ``frame`` (a key column ``frame`` lacks counts as empty)."""
    present = [c for c in dict.fromkeys(key_columns) if c in frame.columns]
    return [row_key(record, key_columns) for record in frame[present].to_dict("records")]


def table_format(path: PathLike, fmt: str | None = None) -> str:
    """``csv`` or ``json``: ``fmt`` if given, else from the file suffix."""
    if fmt is None:
        fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in ("csv", "json"):
        raise UserError(f"cannot tell the format of {path}: name it *.csv or *.json, or give "
                        f"{param('format')} csv or json")
    return fmt


class MalformedRowWarning(UserWarning):
    """A row of a results file that is cut or malformed (a crash of another tool, an interrupted copy) was
    left out: it is not a measurement, and the next rewrite of the file drops it."""


def read_table(path: PathLike, fmt: str | None = None) -> pd.DataFrame:
    """Read a CSV (with header) or JSON (list of row objects) table, with typed, validated rows.

    In a smoothbench table (one with the :data:`~smoothbench.schema.REQUIRED_COLUMNS`) every row is
    checked: a CSV row with another number of fields than the header, or a last line without its newline
    (a cut write), a required value that is empty, a whole-number column
    (:data:`~smoothbench.schema.INTEGER_COLUMNS`) that is not a whole number, or a metric that is not a
    number is left out with a :class:`MalformedRowWarning` naming the file and line (or JSON row).
    Whole-number columns come back as nullable integers, text columns as text; a file that cannot be read
    as a table at all raises UserError.
    """
    fmt = table_format(path, fmt)
    try:
        records = _csv_records(path) if fmt == "csv" else _json_records(path)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        raise UserError(f"{path} is not a readable smoothbench {fmt} table ({type(err).__name__}); "
                        "give another path or remove it") from None
    columns, rows = records
    frame = pd.DataFrame([values for _, values in rows], columns=columns)
    if set(REQUIRED_COLUMNS) <= set(columns):
        keep = [_row_problem(values) for _, values in rows]
        for (where, _), problem in zip(rows, keep):
            if problem:
                warnings.warn(f"{path} {where}: {problem}; the row is left out", MalformedRowWarning, stacklevel=2)
        frame = frame[[not problem for problem in keep]].reset_index(drop=True)
    return _typed(frame)


def _csv_records(path: PathLike) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """The header and ``(where, row)`` of every CSV line; ragged and cut lines become a problem row."""
    with open(path, newline="", encoding="utf-8") as handle:
        text = handle.read()
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        return [], []
    rows = []
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
    for fields in reader:
        if not fields:
            continue
        where = f"line {reader.line_num}"
        if len(fields) != len(header):
            rows.append((where, {_PROBLEM: f"{len(fields)} fields where the header has {len(header)}"}))
        elif reader.line_num == last_line and not text.endswith("\n"):
            rows.append((where, {_PROBLEM: "the last line is cut (no line end)"}))
        else:
            rows.append((where, dict(zip(header, fields))))
    return header, rows


def _json_records(path: PathLike) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """The columns and ``(where, row)`` of a JSON list of row objects."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError("not a list of row objects")
    columns = list(dict.fromkeys(k for record in data for k in record))
    return columns, [(f"row {i + 1}", {k: ("" if v is None else v) for k, v in record.items()})
                     for i, record in enumerate(data)]


#: A key that marks a row that could not even be split into its fields.
_PROBLEM = "\x00problem"


def _row_problem(values: Mapping[str, Any]) -> str:
    """Why a row is not a measurement, or ``""`` if it is one."""
    if _PROBLEM in values:
        return values[_PROBLEM]
    for column in REQUIRED_COLUMNS:
        if _text(values.get(column)) == "":
            return f"{column} is empty"
    for column, value in values.items():
        text = _text(value)
        if text == "":
            continue
        if column in INTEGER_COLUMNS and not is_whole(text):
            return f"{column} is {text!r}, not a whole number"
        if column in METRICS and not is_number(text):
            return f"{column} is {text!r}, not a number"
    return ""


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def is_number(text: str) -> bool:
    """Whether ``text`` reads as a number (``nan`` and ``inf`` included)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_whole(text: str) -> bool:
    """Whether ``text`` reads as a finite whole number (``7`` or ``7.0``)."""
    return is_number(text) and math.isfinite(float(text)) and float(text).is_integer()


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Column types: text columns as text, whole-number columns as nullable integers (``7``, never ``7.0``),
    other columns as numbers when every value is one, else as text; empty values are missing."""
    frame = frame.drop(columns=[_PROBLEM], errors="ignore")
    typed = {}
    for column in frame.columns:
        values = frame[column].map(_text)
        present = values != ""
        if column in TEXT_COLUMNS:
            typed[column] = values.where(present, np.nan).astype(object)
        elif column in INTEGER_COLUMNS and values[present].map(is_whole).all():
            typed[column] = pd.array([int(float(v)) if v else pd.NA for v in values], dtype="Int64")
        elif values[present].map(is_number).all():
            typed[column] = pd.to_numeric(values.where(present, np.nan))
        else:
            typed[column] = values.where(present, np.nan).astype(object)
    return pd.DataFrame(typed, index=frame.index, columns=frame.columns)


def _json_value(value: Any) -> Any:
    """A JSON-ready scalar: NaN / NA and empty text → None (an empty value is a missing one, as in CSV, so a
    row reads back the same after any rewrite), numpy scalars → Python scalars."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, str) and value == ""):
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
    keys = pd.Series(keys_of(frame, key_columns), index=frame.index)
    return frame[~keys.duplicated(keep="last")]


def _merge(old: pd.DataFrame, new: pd.DataFrame, key_columns: Sequence[str]) -> pd.DataFrame:
    """``old`` with rows of the same key replaced in place by ``new``; other new rows appended."""
    old = _dedupe(old, key_columns).reset_index(drop=True)
    old_keys, new_keys = keys_of(old, key_columns), keys_of(new, key_columns)
    replaced = set(new_keys)
    position = {key: i for i, key in enumerate(old_keys)}
    keep = [i for i, key in enumerate(old_keys) if key not in replaced]
    order = keep + [position.get(key, len(old) + j) for j, key in enumerate(new_keys)]
    parts = [frame for frame in (old.iloc[keep], new) if len(frame)]
    merged = pd.concat(parts, ignore_index=True, sort=False) if parts else old.iloc[:0]
    merged = merged.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    columns = list(old.columns) + [c for c in new.columns if c not in old.columns]
    return merged.reindex(columns=columns)


#: Key columns that older files (or other writers) may lack; they count as empty there.
OPTIONAL_KEY_COLUMNS = ("members", "mc_samples", "subset", "seed", "precision", "ece_mode", "ece_bins", "source",
                        "corruption_seed", "calibration", "subset_sha256")


def _identity_lacking(table: pd.DataFrame, key_columns: Sequence[str]) -> list[str]:
    """Key columns ``table`` lacks that make it another kind of table (not just an older file)."""
    return [c for c in key_columns if c not in table.columns and c not in OPTIONAL_KEY_COLUMNS]


def _existing(path: Path, key_columns: Sequence[str], fmt: str) -> pd.DataFrame | None:
    """The table at ``path`` if it exists (an empty file is an empty table); UserError if it is not a
    smoothbench table with these key columns."""
    if not path.exists():
        return None
    table = read_table(path, fmt)
    if not len(table.columns):
        return pd.DataFrame(columns=list(key_columns))
    lacking = _identity_lacking(table, key_columns)
    if lacking:
        raise UserError(f"{path} exists but is not a smoothbench table of this kind (no column "
                        f"{', '.join(lacking)}); give another output path or remove it")
    return table


def check_results_file(path: PathLike, key_columns: Sequence[str], fmt: str | None = None) -> None:
    """Before any work: ``path`` can take rows with these key columns (a known format, a writable place,
    and an existing file that is a smoothbench table of this kind). UserError otherwise."""
    fmt = table_format(path, fmt)
    check_writable_file(path)
    _existing(Path(path), key_columns, fmt)


def write_rows(path: PathLike, rows: Sequence[Mapping[str, Any]] | pd.DataFrame, *, key_columns: Sequence[str],
               fmt: str | None = None) -> None:
    """Merge ``rows`` into the table at ``path`` and rewrite it atomically, under an exclusive lock.

    Rows whose key (``key_columns``, see :func:`row_key`; a key column the rows lack is added, empty) is
    already in the file replace the old row in place; the others are appended; the file never holds two
    rows with one key (the last given wins). Existing columns keep their order and new columns are
    appended; whole numbers stay whole. ``fmt`` is ``csv`` or ``json`` (default: from the suffix); JSON is a
    list of row objects with NaN written as ``null``. The read-merge-replace runs under an exclusive lock on
    a sidecar file (``.<name>.lock``), so concurrent writers (processes, machines sharing a POSIX file
    system) end with the union of their rows. An existing file that is not a smoothbench table of this kind
    raises UserError and is left untouched; cut or malformed rows in it are dropped (see :func:`read_table`).
    """
    fmt = table_format(path, fmt)
    new = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame([dict(r) for r in rows])
    missing = [c for c in key_columns if c not in new.columns]
    new = _dedupe(new.reindex(columns=list(new.columns) + missing), key_columns)
    path = Path(path)
    with locked(path):
        old = _existing(path, key_columns, fmt)
        if old is not None:
            new = _merge(old, new, key_columns)
        _write_table(path, new, fmt)


def done_keys(path: PathLike, key_columns: Sequence[str]) -> set[tuple[str, ...]]:
    """Canonical keys (:func:`row_key`) of the rows already in ``path``; empty if it does not exist.

    Skip a cell when ``row_key(probe, key_columns, settings) in done_keys(path, key_columns)``.
    """
    path = Path(path)
    table = _existing(path, key_columns, table_format(path))
    return set() if table is None else set(keys_of(table, key_columns))


def _looks_like_results(table: pd.DataFrame) -> bool:
    """A smoothbench result table has a ``model`` column and at least one metric column; a derived table
    (corruption summary, per-corruption table: ``corruption`` without ``severity``) is not one."""
    derived = "corruption" in table.columns and "severity" not in table.columns
    return "model" in table.columns and not derived and any(
        c in table.columns for c in ROW_METRICS + CONSISTENCY_METRICS + OOD_METRICS)


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
                    table = read_table(found)
                except UserError:
                    continue
                if _looks_like_results(table):
                    frames.append(table.assign(result_file=str(found)))
        elif given.is_file():
            table = read_table(given)
            if not _looks_like_results(table):
                raise UserError(f"{given} is not a smoothbench result table (needs a model column and metric "
                                "columns); give result files or folders")
            frames.append(table.assign(result_file=str(given)))
        else:
            raise UserError(f"{given} does not exist; give result files or folders")
    if not frames:
        raise UserError(f"no smoothbench result tables found in {', '.join(map(str, paths))}")
    return pd.concat(frames, ignore_index=True, sort=False)
