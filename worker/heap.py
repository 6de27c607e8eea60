"""Gives the C heap's free pages back to the system, at most once per interval.

Micro-batches come in every size from 1 to max_batch_size, and so do the model's activation
buffers. glibc's malloc raises its mmap threshold each time it frees a large mapped block, so
later buffers of other sizes are carved from the heap and, once freed, stay resident: on the
32x32 GANomaly, random batch sizes grew a scoring process from 1.0 to 1.7 GB in two passes and
kept growing (an hour soak's worker reached 2.15 GB), with nothing live. ``malloc_trim(0)``
returns those pages. After every batch it cost 7-10 % of the compute at batch 256 (pages freed and
faulted back in), so the score stage calls it at most once per interval. Pinning the mmap
threshold instead (``M_MMAP_THRESHOLD``) kept memory flat too but made every batch map fresh
pages: 30 % slower. A no-op where there is no glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable


class HeapTrimmer:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s  # 0: never
        self._last = time.monotonic()
        self._trim = _malloc_trim() if interval_s > 0 else None
        self.trims = 0
        self._lock = threading.Lock()  # shared by the score streams: one trim per interval for the process

    def maybe_trim(self) -> None:
        if self._trim is None or time.monotonic() - self._last < self.interval_s:
            return
        with self._lock:
            if time.monotonic() - self._last < self.interval_s:  # another stream trimmed meanwhile
                return
            self._trim(0)
            self._last = time.monotonic()
            self.trims += 1


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):  # musl and others: no malloc_trim, nothing to do
        return None
