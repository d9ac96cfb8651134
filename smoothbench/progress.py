"""The progress protocol: how long library loops report their progress without knowing who shows it.

The CLI passes rich progress bars; a notebook may pass its own object, or ``None`` for silence. A loop calls
:meth:`Progress.start` with its total once it knows how much work there is (a training run learns its
images per epoch only after loading the data), then :meth:`Progress.advance` as units finish; a command
of several phases (consistency: ensemble sizes, then CIFAR-10-P) starts each phase anew.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """Receives progress reports from a long loop."""

    def start(self, total: int, title: str) -> None:
        """A task of ``total`` units named ``title`` begins (a progress bar shows a new bar)."""

    def advance(self, units: int, text: str = "") -> None:
        """``units`` more units are finished; ``text`` is a short status (e.g. the current cell)."""


class Scaled:
    """Reports ``global_total / local_total`` units for every unit advanced: one process of a sharded task
    stands for all of them in a progress bar."""

    def __init__(self, inner: Progress, local_total: int, global_total: int) -> None:
        self.inner, self.local_total, self.global_total = inner, local_total, global_total
        self._reported = 0
        self._done = 0

    def start(self, total: int, title: str) -> None:
        self.inner.start(total, title)

    def advance(self, units: int, text: str = "") -> None:
        self._done += units
        target = self._done * self.global_total // max(self.local_total, 1)
        self.inner.advance(target - self._reported, text)
        self._reported = target
