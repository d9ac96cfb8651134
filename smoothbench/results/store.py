"""Tidy result tables on disk: canonical row keys, atomic de-duplicated CSV/JSON writes, reading result files.

A result table is one row per measurement with a header (see docs/architecture.md, "Result rows").
Rows are identified by *key columns* (:mod:`smoothbench.schema`); writing a row whose key is already in
the file replaces it, so a table never holds two rows with the same key and a rerun (or a resumed sweep)
simply overwrites its cells. Key values are compared in a canonical text form (:func:`row_key`), so
``5``, ``5.0`` and ``"5"`` are the same key and a missing value (``None``, NaN, ``""``) is one value.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from smoothbench.errors import UserError
from smoothbench.fileio import atomic_open
from smoothbench.schema import CONSISTENCY_METRICS, ROW_METRICS, TEXT_COLUMNS

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
    """:func:`row_key` of every row of ``frame``."""
    return [row_key(record, key_columns) for record in frame[list(key_columns)].to_dict("records")]


def _format(path: PathLike, fmt: str | None) -> str:
    """``csv`` or ``json``: ``fmt`` if given, else from the file suffix."""
    if fmt is None:
        fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in ("csv", "json"):
        raise UserError(f"cannot tell the format of {path}: name it *.csv or *.json, or pass fmt/--format csv|json")
    return fmt


def read_table(path: PathLike, fmt: str | None = None) -> pd.DataFrame:
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
        old = read_table(path, fmt)
        if old.empty and not len(old.columns):
            old = pd.DataFrame(columns=list(key_columns))
        lacking = [c for c in key_columns if c not in old.columns]
        if lacking:
            raise UserError(f"{path} exists but is not a smoothbench table of this kind (no column "
                            f"{', '.join(lacking)}); give another output path or remove it")
        new = _merge(old, new, key_columns)
    _write_table(path, new, fmt)


def done_keys(path: PathLike, key_columns: Sequence[str]) -> set[tuple[str, ...]]:
    """Canonical keys (:func:`row_key`) of the rows already in ``path``; empty if it does not exist.

    Skip a cell when ``row_key(probe, key_columns, settings) in done_keys(path, key_columns)``.
    """
    path = Path(path)
    if not path.exists():
        return set()
    table = read_table(path)
    lacking = [c for c in key_columns if c not in table.columns]
    if lacking and len(table.columns):
        raise UserError(f"{path} is not a smoothbench table of this kind (no column {', '.join(lacking)}); "
                        "give another output path or remove it")
    return set(keys_of(table, key_columns)) if len(table.columns) else set()


def _looks_like_results(table: pd.DataFrame) -> bool:
    """A smoothbench result table has a ``model`` column and at least one metric column; a derived table
    (corruption summary, per-corruption table: ``corruption`` without ``severity``) is not one."""
    derived = "corruption" in table.columns and "severity" not in table.columns
    return "model" in table.columns and not derived and any(
        c in table.columns for c in ROW_METRICS + CONSISTENCY_METRICS)


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
