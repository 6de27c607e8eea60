"""What the soak (bench_soak.py) runs beside the worker: the reader of its outputs and the sampler of its
/metrics and memory (its producer is bench_producer.py's)."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ganomaly.connections.kafka import KafkaSettings


class Reader(threading.Thread):
    """Reads the results and dead-letter topics from the start (no group): which input offsets were answered, and when."""

    def __init__(self, kafka: KafkaSettings, results: str, dlq: str) -> None:
        super().__init__(daemon=True, name="soak-reader")
        from ganomaly.connections.kafka import make_consumer

        self.c = make_consumer(kafka.config(), group_id=None, max_poll_records=5000, fetch_max_wait_ms=100)
        self.results, self.dlq = results, dlq
        self.lock = threading.Lock()
        self.seen: dict[int, bytearray] = {}  # input partition -> one byte per offset (answered or not)
        self.answered = self.dead = self.duplicates = 0
        self.window: list[tuple[int, int]] = []  # (result record timestamp, input record timestamp), ms
        self.window_dead = 0
        self.stopping = False

    def take(self) -> tuple[list[tuple[int, int]], int]:
        with self.lock:
            out, self.window, dead, self.window_dead = self.window, [], self.window_dead, 0
        return out, dead

    def _mark(self, partition: int, offset: int) -> bool:
        bits = self.seen.setdefault(partition, bytearray())
        if offset >= len(bits):
            bits.extend(bytes(max(offset + 1 - len(bits), len(bits))))  # doubling: amortised O(1)
        new = not bits[offset]
        bits[offset] = 1
        self.answered += new
        self.duplicates += not new
        return new

    def run(self) -> None:
        from kafka import TopicPartition

        tps = [TopicPartition(t, p) for t in (self.results, self.dlq) for p in sorted(self.c.partitions_for_topic(t) or ())]
        self.c.assign(tps)
        self.c.seek_to_beginning(*tps)
        while not self.stopping:
            for tp, recs in self.c.poll(timeout_ms=200).items():
                with self.lock:
                    for r in recs:
                        if tp.topic == self.results:
                            d = json.loads(r.value)
                            self._mark(d["input"]["partition"], d["input"]["offset"])
                            self.window.append((r.timestamp, d["record_timestamp_ms"]))
                        else:
                            h = {k: v.decode() for k, v in r.headers if v is not None}
                            if self._mark(int(h["dlq-partition"]), int(h["dlq-offset"])):
                                self.dead += 1
                                self.window_dead += 1
        self.c.close()


def scrape(port: int) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    out: dict[str, Any] = {"queues": {}, "in_flight": 0.0, "lag": 0.0}
    for fam in text_string_to_metric_families(body):
        for smp in fam.samples:
            if smp.name == "ganomaly_queue_depth":
                out["queues"][smp.labels["queue"]] = smp.value
            elif smp.name == "ganomaly_in_flight":
                out["in_flight"] = smp.value
            elif smp.name == "ganomaly_consumer_lag":
                out["lag"] += smp.value
    return out


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its children (the worker's decode processes), MiB."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(x) for x in task.read_text().split()]
    kb = 0
    for p in pids:
        try:
            kb += next(int(line.split()[1]) for line in Path(f"/proc/{p}/status").read_text().splitlines() if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return round(kb / 1024, 1)
