"""What the command line shows: rich tables, progress bars, ``--profile`` lines and one-line warnings.

Under torchrun every process runs the command; only rank 0 prints (``RANK`` is read from the environment,
so that importing this module does not import torch).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichBars
from rich.table import Table

from smoothbench.schema import is_percent

RANK = int(os.environ.get("RANK", "0"))
console = Console(stderr=True, quiet=RANK != 0)
stdout = Console(quiet=RANK != 0)
#: Columns shown left-aligned (names); every other column is right-aligned.
_TEXT_COLUMNS = ("model", "corruption", "kind", "perturbation", "arch")


def every_rank_console() -> Console:
    """A stderr console that prints on every torchrun process (for errors that one process meets alone)."""
    return Console(stderr=True)


class BarProgress:
    """The :class:`smoothbench.progress.Progress` protocol as rich progress bars: one bar per started task."""

    def __init__(self, bars: RichBars) -> None:
        self.bars = bars
        self.task = None

    def start(self, total: int, title: str) -> None:
        self.task = self.bars.add_task(title, total=total or None, status="")

    def advance(self, units: int, text: str = "") -> None:
        if self.task is not None:
            self.bars.update(self.task, advance=units, status=text)


@contextmanager
def progress(quiet: bool = False) -> Iterator[BarProgress | None]:
    """Progress bars on stderr for the duration of a command (``None`` when quiet or not rank 0)."""
    if quiet or RANK != 0:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )
    with RichBars(*columns, console=console, transient=False) as bars:
        yield BarProgress(bars)


def show_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str], title: str) -> None:
    """Print rows as a rich table; metrics that :mod:`smoothbench.schema` marks as percentages are shown as %."""
    table = Table(title=title, title_justify="left")
    present = [c for c in columns if any(c in row for row in rows)] or list(columns)
    for column in present:
        table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(column, ""), column) for column in present))
    stdout.print(table)


def _cell(value: object, column: str) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{100 * value:.2f}%" if is_percent(column) else f"{value:.4f}"
    return str(value)


def print_profile(sections: Mapping[str, float], total: float, rate: float, unit: str) -> None:
    """One ``--profile`` line: seconds per section, the total wall time and a throughput (``rate`` per second
    of ``unit``, e.g. sample-forwards or training images)."""
    timing = ", ".join(f"{name} {value:.2f}s" for name, value in sections.items())
    console.print(f"profile: {timing}, total {total:.2f}s, {rate:.0f} {unit}/s")


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` replacement: the message alone, on one line."""
    console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)
