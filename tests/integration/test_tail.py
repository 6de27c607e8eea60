"""read_tail against the real broker: the last records of every partition, whatever each holds."""

from __future__ import annotations

import uuid

import pytest

from ganomaly.connections.kafka import KafkaSettings, ensure_topics, make_admin, make_producer
from ganomaly.connections.tail import TailRecord, read_tail
from ganomaly.errors import UserError


def test_the_last_records_of_each_partition_more_fewer_and_none(broker: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker)
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka.config(), [topic], partitions=3)
    # linger: several records per batch, the case where Tansu's ListOffsets answers the end too early
    p = make_producer(kafka.config(), linger_ms=50)
    for i in range(10):
        p.send(topic, value=f"p0-{i}".encode(), key=f"k{i}".encode(), partition=0)
    for i in range(2):
        p.send(topic, value=f"p1-{i}".encode(), partition=1)
    p.flush()
    p.close()

    got = read_tail(kafka, topic, 4, timeout_s=15)
    assert [(r.partition, r.offset, r.value) for r in got] == [
        (0, 6, b"p0-6"), (0, 7, b"p0-7"), (0, 8, b"p0-8"), (0, 9, b"p0-9"), (1, 0, b"p1-0"), (1, 1, b"p1-1")]  # partition 2: empty
    assert got[0].key == b"k6" and got[-1].key is None
    assert all(isinstance(r, TailRecord) and r.timestamp_ms > 0 for r in got)
    assert len(read_tail(kafka, topic, 100)) == 12  # everything, when partitions hold fewer than asked


def test_a_missing_topic_is_a_user_error_and_is_not_created(broker: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=broker)
    topic = f"tail-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UserError, match=f"topic {topic} does not exist"):
        read_tail(kafka, topic, 5, timeout_s=5)
    admin = make_admin(kafka.config())
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()
