"""Per-partition tracking of in-flight records and the safe commit position.

Records complete out of order (parallel decoders, dead letters overtaking batches);
the committable offset of a partition is the lowest offset still in flight, or one
past the highest offset seen when nothing is. Thread-safe: the poll thread adds and
commits, the sink thread marks records done.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

TP = Hashable  # kafka.TopicPartition in the worker; anything hashable in tests
R = TypeVar("R", bound=Any)  # a record with an ``offset``


class OffsetTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[TP, OrderedDict[int, bool]] = {}  # offset -> done, in arrival order
        self._next: dict[TP, int] = {}  # one past the highest offset added
        self._in_flight = 0
        self._drained = threading.Condition(self._lock)

    def add(self, tp: TP, offset: int) -> None:
        with self._lock:
            pend = self._pending.setdefault(tp, OrderedDict())
            if offset in pend:
                return
            pend[offset] = False
            self._next[tp] = max(self._next.get(tp, -1), offset + 1)
            self._in_flight += 1

    def add_many(self, tp: TP, offsets: Iterable[int]) -> None:
        """:meth:`add` for one partition's polled records, under one lock."""
        with self._lock:
            pend = self._pending.setdefault(tp, OrderedDict())
            top = self._next.get(tp, -1)
            for offset in offsets:
                if offset in pend:
                    continue
                pend[offset] = False
                top = max(top, offset + 1)
                self._in_flight += 1
            self._next[tp] = top

    def is_tracked(self, tp: TP, offset: int) -> bool:
        with self._lock:
            return offset in self._pending.get(tp, ())

    def still_tracked(self, recs: list[R], tp_of: Callable[[R], TP]) -> list[R]:
        """Those of ``recs`` still in flight here (one lock for a whole chunk); ``tp_of`` gives a record's partition."""
        with self._lock:
            return [r for r in recs if r.offset in self._pending.get(tp_of(r), ())]

    def done_many(self, done: Iterable[tuple[TP, int]]) -> int:
        """:meth:`done` for many records under one lock; how many were still tracked."""
        n = 0
        with self._lock:
            for tp, offset in done:
                n += self._done(tp, offset)
            if n:
                self._drained.notify_all()
        return n

    def done(self, tp: TP, offset: int) -> bool:
        """Mark a record's outputs acknowledged; False if the partition was revoked meanwhile."""
        with self._lock:
            if not self._done(tp, offset):
                return False
            self._drained.notify_all()
            return True

    def _done(self, tp: TP, offset: int) -> bool:
        pend = self._pending.get(tp)
        if pend is None or pend.get(offset) is not False:
            return False
        pend[offset] = True
        self._in_flight -= 1
        while pend:
            first = next(iter(pend))
            if not pend[first]:
                break
            del pend[first]
        return True

    def committable(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        """The offset to commit per partition (Kafka semantics: the next record to read)."""
        with self._lock:
            keys = list(self._next) if tps is None else [t for t in tps if t in self._next]
            out = {}
            for tp in keys:
                pend = self._pending.get(tp)
                out[tp] = next(iter(pend)) if pend else self._next[tp]
            return out

    def in_flight(self, tps: Iterable[TP] | None = None) -> int:
        with self._lock:
            if tps is None:
                return self._in_flight
            return sum(sum(1 for d in self._pending.get(tp, {}).values() if not d) for tp in tps)

    def wait_drained(self, tps: Iterable[TP] | None, timeout_s: float) -> bool:
        """Block until nothing in ``tps`` (all if None) is in flight, or the timeout passes."""
        tps = list(tps) if tps is not None else None

        def empty() -> bool:
            if tps is None:
                return self._in_flight == 0
            return not any(not d for tp in tps for d in self._pending.get(tp, {}).values())

        with self._drained:
            return self._drained.wait_for(empty, timeout=timeout_s)

    def forget(self, tps: Iterable[TP]) -> None:
        """Drop partitions (revoked or lost); late completions for them are ignored."""
        with self._lock:
            for tp in tps:
                pend = self._pending.pop(tp, None)
                self._next.pop(tp, None)
                if pend:
                    self._in_flight -= sum(1 for d in pend.values() if not d)
            self._drained.notify_all()
