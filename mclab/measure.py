"""Measuring what a method costs: this process's memory and the size of what it saved."""

from __future__ import annotations

import functools
import sys
import threading
import time
from pathlib import Path


def maxrss_mb(usage) -> float:
    """`ru_maxrss` of a `resource`/`os.wait4` usage in MB: Linux counts KB, macOS bytes."""
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def rss_mb() -> float:
    """This process's resident memory now, in MB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def release_memory() -> None:
    """Give freed memory back to the system (garbage collection, then glibc `malloc_trim`).

    Without it the process keeps the high-water mark of every earlier run as resident
    memory, and the runs' peaks add up instead of each standing alone. Every training run
    calls it before and after (`training.fit`); notebooks call it after dropping a model.
    """
    import gc

    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """glibc's `malloc_trim(0)`: the heap's free pages go back to the system, where a later
    allocation faults them in again. Without it, blocks of a few MB freed at different
    moments leave holes the heap keeps resident (`backward_step` calls it during the
    backward pass). Nothing to do where the C library is not glibc (macOS, Windows)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class PeakMemory:
    """Peak resident memory (MB) of this process while the block runs, sampled every 20 ms.

        with PeakMemory() as mem:
            train(...)
        mem.peak_mb, mem.added_mb, mem.seconds   # the high point, the rise, the wall time
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.start_mb = self.peak_mb = self.end_mb = 0.0
        self.seconds = 0.0
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __enter__(self):
        self.start_mb = self.peak_mb = rss_mb()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.end_mb = rss_mb()
        self.peak_mb = max(self.peak_mb, self.end_mb)
        return False

    @property
    def added_mb(self) -> float:
        return self.peak_mb - self.start_mb


def folder_size_mb(path) -> float:
    """Total size of a file, or of the files under a folder, in MB (2**20 bytes)."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20
