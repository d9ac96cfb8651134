"""The timing rule of the overhead benchmarks: the best of several runs, so that the machine's other load
(which only ever adds time) disturbs the ratio as little as possible."""

from __future__ import annotations

from typing import Callable


def best_of(run: Callable[[], object], repeats: int, clock: Callable[[], float]) -> float:
    """The shortest of ``repeats`` timings of ``run()`` by ``clock``, in seconds."""
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return min(times)
