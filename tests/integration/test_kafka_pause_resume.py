"""A partition paused with fetched records still buffered is read to its end once resumed.

kafka-python 3.0.12 parks such records and, when other partitions were read meanwhile, never hands
them back (ganomaly/connections/kafka.py: _restore_parked_fetches says why). This drives the
library's own pause/resume against the real broker through ``make_consumer``, the only way the
project builds a consumer.
"""

from __future__ import annotations

import time
import uuid

import pytest
from kafka import TopicPartition

from ganomaly.connections.kafka import as_kafka, ensure_topics, make_consumer, make_producer

pytestmark = pytest.mark.integration
PER_PARTITION = 100


def test_a_partition_paused_mid_batch_is_read_to_its_end_after_resume(broker: str) -> None:
    common = as_kafka(broker).config()
    topic = f"pause-{uuid.uuid4().hex[:8]}"
    ensure_topics(common, [topic], partitions=2)
    producer = make_producer(common)
    for i in range(2 * PER_PARTITION):
        producer.send(topic, str(i).encode(), partition=i % 2)
    producer.flush()
    producer.close()

    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    c = make_consumer(common, fetch_max_wait_ms=20)
    try:
        c.assign(tps)
        got = dict.fromkeys(tps, 0)

        def poll(max_records: int) -> None:
            for tp, recs in c.poll(timeout_ms=200, max_records=max_records).items():
                got[tp] += len(recs)

        deadline = time.monotonic() + 20
        while not any(got.values()) and time.monotonic() < deadline:
            poll(1)  # one record: the rest of its partition's batch stays buffered in the fetcher
        first = next(tp for tp in tps if got[tp])
        c.pause(first)
        for _ in range(5):  # the other partition is read to its end meanwhile
            poll(1000)
        assert got[first] == 1, got
        c.resume(first)
        deadline = time.monotonic() + 20
        while sum(got.values()) < 2 * PER_PARTITION and time.monotonic() < deadline:
            poll(1000)
        assert got == dict.fromkeys(tps, PER_PARTITION), f"after resume: {got}"
    finally:
        c.close()
