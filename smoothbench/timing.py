"""Seconds per named section of a loop, for the commands' ``--profile`` (train, eval, corrupt)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")


class SectionTimer:
    """Seconds spent in named sections (host clock, ``time.perf_counter``), in the order ``sections`` gives.

    With ``sync`` on a CUDA device, the device is synchronised when a section starts and when it ends, so
    kernels queued before the section are not charged to it and its own kernels are. Without it nothing
    waits for the device (no host syncs in hot loops), so on a GPU the sections are host times only.
    """

    def __init__(self, sections: Sequence[str], device: torch.device | None = None, *, sync: bool = False) -> None:
        self.seconds = dict.fromkeys(sections, 0.0)
        self.device = device
        self.sync = sync and device is not None and device.type == "cuda"

    def now(self) -> float:
        """The clock, after the device has finished its queued work when synchronising."""
        if self.sync:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to section ``name`` (a new name joins the end)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def charge(self, name: str, start: float) -> None:
        """Add the time since ``start`` (a :meth:`now` or ``perf_counter`` reading) to section ``name``."""
        self.add(name, self.now() - start)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Charge the block's time to section ``name`` (also when it raises)."""
        start = self.now()
        try:
            yield
        finally:
            self.charge(name, start)

    def iterate(self, items: Iterable[T], name: str) -> Iterator[T]:
        """``items`` one by one, charging the wait for each (and for the end) to section ``name``."""
        iterator, end = iter(items), object()
        while True:
            with self.section(name):
                item = next(iterator, end)
            if item is end:
                return
            yield item
