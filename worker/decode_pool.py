"""Decoding in a pool of processes, for workers whose model outruns one Python process.

Decoding is Python and Pillow work that holds the interpreter lock most of the time; on a GPU
worker it, not the model, sets the pace. Chunks of payloads go to ``processes`` spawned
children (numpy and Pillow only, no torch) and come back as arrays. A child that dies (a native
decoder crash on a hostile image) breaks the pool: the pool is rebuilt and the chunk retried one
payload at a time, so the payload that kills a child again is reported as ``decoder_crash`` and
the rest of the chunk decodes normally.
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Self

import numpy as np
import structlog
from PIL import Image

from ganomaly.data.images import DecodeLimits, DecodeOutcome, InputSpec, decode_many

log = structlog.get_logger("worker")

CRASHED: DecodeOutcome = ("decoder_crash", "BrokenProcessPool", "a decode process died decoding this payload")
DecodeMany = Callable[[list[bytes], InputSpec, DecodeLimits], list[DecodeOutcome]]


class DecodePool:
    def __init__(self, processes: int, fn: DecodeMany = decode_many) -> None:
        self.processes = processes
        self.fn = fn  # a module-level function (pickled by name); tests pass one that crashes on cue
        self._lock = threading.Lock()
        self._pool = self._new()
        self.restarts = 0
        self._check(self._pool)  # fail at start, with the cause, rather than dead-letter every image

    def _new(self, processes: int | None = None) -> ProcessPoolExecutor:
        # spawn: the worker has threads and maybe CUDA, which a fork would copy in an unknown state
        return ProcessPoolExecutor(processes or self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_ignore_interrupts)

    def decode(self, payloads: list[bytes], spec: InputSpec, limits: DecodeLimits) -> list[DecodeOutcome]:
        pool = self._pool
        try:
            return pool.submit(self.fn, payloads, spec, limits).result()
        except BrokenProcessPool:
            self._replace(pool)
        except RuntimeError:
            if self._pool is pool:
                raise
            return self.decode(payloads, spec, limits)  # replaced (and shut down) by another thread since we read it
        # A child died: this chunk's, or another chunk's sharing the pool. Find out which payload.
        log.warning("decode_process_died", chunk=len(payloads), note="retrying the chunk one payload at a time")
        return self._isolate(payloads, spec, limits)

    def _isolate(self, payloads: list[bytes], spec: InputSpec, limits: DecodeLimits) -> list[DecodeOutcome]:
        """One payload at a time in a private process: a payload that kills it is the cause, and
        no chunk of another thread shares the blame (it retries in its own private process)."""
        out: list[DecodeOutcome] = []
        ex: ProcessPoolExecutor | None = None
        try:
            for p in payloads:
                ex = ex or self._new(1)
                try:
                    out.append(ex.submit(self.fn, [p], spec, limits).result()[0])
                except BrokenProcessPool:
                    ex.shutdown(wait=False, cancel_futures=True)
                    ex = self._new(1)
                    self._check(ex)  # blame the payload only if a fresh process decodes a good image
                    out.append(CRASHED)
        finally:
            if ex is not None:
                ex.shutdown(wait=True)
        return out

    def _check(self, ex: ProcessPoolExecutor) -> None:
        """A known-good image must decode in ``ex``; if not, the processes, not the payloads, are at fault."""
        try:
            ok = isinstance(ex.submit(self.fn, [_canary()], InputSpec(), DecodeLimits()).result()[0], np.ndarray)
        except BrokenProcessPool as e:
            msg = f"decode processes die on a known-good image ({e}); not blaming the payloads"
            raise RuntimeError(msg) from e
        if not ok:
            msg = "decode processes cannot decode a known-good image"
            raise RuntimeError(msg)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # another thread may have replaced it already
                self._pool = self._new()
                self.restarts += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@functools.cache
def _canary() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buf, format="PNG")
    return buf.getvalue()


def _ignore_interrupts() -> None:
    """In each decode process: Ctrl-C in a terminal reaches the whole process group, but stopping is
    the worker's to do (drain, commit); a child that died of it would only break the pool mid-drain."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
