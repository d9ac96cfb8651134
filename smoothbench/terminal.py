"""What the command line shows: rich tables, progress bars, ``--profile`` lines and one-line warnings.

Under torchrun every process runs the command; only rank 0 prints (``RANK`` is read from the environment,
so that importing this module does not import torch).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichBars
from rich.table import Table

from smoothbench.schema import is_percent

RANK = int(os.environ.get("RANK", "0"))
console = Console(stderr=True, quiet=RANK != 0)
stdout = Console(quiet=RANK != 0)
#: Columns shown left-aligned (names); every other column is right-aligned.
_TEXT_COLUMNS = ("model", "corruption", "kind", "perturbation", "arch")


class BarProgress:
    """The :class:`smoothbench.progress.Progress` protocol as rich progress bars on stderr: one bar per started
    task. Nothing is drawn before the first task starts, so an error found before any work stays one line."""

    _COLUMNS = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
    )

    def __init__(self) -> None:
        self.bars: RichBars | None = None
        self.task = None

    def start(self, total: int, title: str) -> None:
        if self.bars is None:
            self.bars = RichBars(*self._COLUMNS, console=console, transient=False)
            self.bars.start()
        self.task = self.bars.add_task(escape(title), total=total or None, status="")

    def advance(self, units: int, text: str = "") -> None:
        if self.bars is not None and self.task is not None:
            self.bars.update(self.task, advance=units, status=escape(text))

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()


@contextmanager
def progress(quiet: bool = False) -> Iterator[BarProgress | None]:
    """Progress bars for the duration of a command (``None`` when quiet or not rank 0)."""
    if quiet or RANK != 0:
        yield None
        return
    bars = BarProgress()
    try:
        yield bars
    finally:
        bars.close()


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
    text = message.for_cli() if hasattr(message, "for_cli") else str(message)
    console.print(f"[yellow]warning:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


def print_error(message: str, rank: int = RANK) -> None:
    """One ``error:`` line on stderr, from every torchrun process (one may fail alone, e.g. without a GPU)."""
    where = console if rank == 0 else Console(stderr=True)
    where.print(f"[red]{f'rank {rank}: ' if rank else ''}error:[/red] {escape(message)}", highlight=False,
                soft_wrap=True)


def report_bug(version: str) -> None:
    """The traceback of the exception being handled, then one line asking for a bug report (plain writes to
    stderr, so that reporting can never raise a second traceback)."""
    import sys
    import traceback

    try:
        traceback.print_exc()
        sys.stderr.write(f"this is a bug in smoothbench {version}: please report it with the command you ran and "
                         "the traceback above\n")
        sys.stderr.flush()
    except Exception:  # noqa: BLE001  (stderr itself failed: nothing left to tell)
        pass
