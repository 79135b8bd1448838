"""A thread map for the numpy-heavy steps that run one after another on independent inputs.

Sorting, cumulative sums, zlib decompression and Parquet decoding release the GIL, so threads use
every core the process may run on, without copying multi-million-row arrays into other processes.
Results come back in input order, so whatever is decided from them is the same as a serial loop's.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """Cores this process may use (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_map(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``workers`` threads (default: the cores); serial for one
    item or one worker. The first exception raised by ``fn`` is raised here."""
    items = list(items)
    n = min(len(items), workers or cores())
    if n <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(fn, items))


def in_background(fn: Callable[[], R]) -> "Future[R]":
    """Start ``fn()`` on its own thread now; ``.result()`` waits for it (and raises what it raised)."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn)
    finally:
        pool.shutdown(wait=False)  # the thread finishes its one task, then exits
