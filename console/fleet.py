"""The workers as operators see them: each one's status hash, its lag and its rate.

Workers refresh ``{prefix}:worker:{id}`` every batch and it expires when they die, so the hashes
present are the live fleet. Lag is the workers' group's committed offsets against the partitions'
ends (asked of the broker, never committed by the console); the rate is the change of each
worker's scored total between two looks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from ganomaly.connections.offsets import fixed_ends


class Fleet:
    def __init__(self, client: redis.Redis, prefix: str, *, group: str, admin: KafkaAdminClient | None,
                 consumer: KafkaConsumer | None) -> None:
        self.r = client
        self.prefix = prefix
        self.group = group
        self.admin, self.consumer = admin, consumer
        self._lag_lock = threading.Lock()  # one consumer, pages served from several threads
        self._last: dict[str, tuple[float, int]] = {}  # worker -> (when, scored_total) at the previous look

    def workers(self) -> list[dict[str, Any]]:
        keys = sorted(self.r.scan_iter(f"{self.prefix}:worker:*", count=500))
        pipe = self.r.pipeline(transaction=False)
        for k in keys:
            pipe.hgetall(k)
        lag = self.lag()
        now = time.time()
        out = []
        for h in pipe.execute():
            w = {k.decode(): v.decode() for k, v in h.items()}
            if "worker" not in w:
                continue
            total = int(w.get("scored_total", "0"))
            prev = self._last.get(w["worker"])
            self._last[w["worker"]] = (now, total)
            parts = [p for p in w.get("assigned", "").split(",") if p]
            w["rate"] = (total - prev[1]) / (now - prev[0]) if prev and now > prev[0] else None
            w["lag"] = sum(lag.get(p, 0) for p in parts) if lag else None
            w["partitions"] = parts
            w["beat_s"] = max(0.0, now - int(w.get("updated_ms", "0")) / 1000)
            out.append(w)
        return out

    def lag(self) -> dict[str, int]:
        """``topic-partition`` -> records not yet committed by the workers' group (empty when the broker does not say)."""
        if self.admin is None or self.consumer is None:
            return {}
        with self._lag_lock:
            return self._lag()

    def _lag(self) -> dict[str, int]:
        assert self.admin is not None and self.consumer is not None
        try:
            committed = self.admin.list_group_offsets(self.group).get(self.group, {})  # kafka-python 3: group -> {tp: offset}
            tps = [tp for tp in committed if isinstance(tp, TopicPartition)]
            if tps:
                self.consumer.assign(tps)
            ends = fixed_ends(self.consumer, tps, 5.0) if tps else {}
        except Exception:  # noqa: BLE001 - the page shows no lag rather than failing; the broker may be away
            return {}
        return {f"{tp.topic}-{tp.partition}": max(0, ends.get(tp, 0) - meta.offset) for tp, meta in committed.items() if tp in ends}
