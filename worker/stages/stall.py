"""Tells a consumer that has stopped receiving from one that has nothing to receive.

A worker whose consumer no longer hands out records while its partitions have records waiting is
alive by every other measure: its poll loop turns, nothing is in flight, its liveness probe is
green. An hour soak ran into exactly that (docs/speed.md), and nothing would have restarted it.

A partition counts as *waiting* while it is assigned and not paused and its high watermark (from
the fetch responses) is beyond its position; it is *stalled* once it has waited ``after_s`` with
its position unmoved, provided the broker was heard from after it started waiting (some
partition's position or high watermark changed). That proviso keeps a broker outage, during which
nothing changes at all, from counting: outages are waited out. A high watermark that reads too
early (Tansu's, shared/reference/infra.md) can only hide a stall, never invent one.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import TopicPartition


@dataclass(frozen=True)
class Offsets:
    position: int | None
    highwater: int | None

    @property
    def waiting(self) -> bool:
        return self.position is not None and self.highwater is not None and self.highwater > self.position


class StallWatch:
    def __init__(self, after_s: float) -> None:
        self.after_s = after_s  # 0: never report a stall
        self._last: dict[TopicPartition, Offsets] = {}
        self._since: dict[TopicPartition, float] = {}  # when each waiting partition last moved (or began to wait)
        self._heard = float("-inf")  # when the broker last told us something new

    def observe(self, now: float, offsets: dict[TopicPartition, Offsets], paused: bool) -> list[TopicPartition]:
        """Record one sample of the assigned partitions; return the stalled ones (sorted)."""
        if any(self._last.get(tp) != o for tp, o in offsets.items()):
            self._heard = now
        for tp, o in offsets.items():
            before = self._last.get(tp)
            if paused or not o.waiting or before is None or before.position != o.position:
                self._since[tp] = now
        self._last = dict(offsets)
        self._since = {tp: t for tp, t in self._since.items() if tp in offsets}
        if self.after_s <= 0:
            return []
        return sorted((tp for tp, t in self._since.items() if now - t >= self.after_s and self._heard > t and offsets[tp].waiting),
                      key=lambda tp: (tp.topic, tp.partition))
