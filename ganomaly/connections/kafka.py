"""Kafka client construction and topic management (plain Kafka protocol; works on Apache Kafka and Tansu)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError


def make_producer(common: dict[str, Any], **overrides: Any) -> KafkaProducer:
    cfg: dict[str, Any] = {
        "acks": "all",
        "enable_idempotence": True,  # broker dedupes producer retries
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": 32 * 1024 * 1024,
        **common,
    }
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return KafkaProducer(**cfg)


def make_consumer(common: dict[str, Any], **overrides: Any) -> KafkaConsumer:
    cfg: dict[str, Any] = {
        "enable_auto_commit": False,  # offsets are committed only after outputs are acknowledged
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": 16 * 1024 * 1024,
        **common,
    }
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return KafkaConsumer(**cfg)


def ensure_topics(common: dict[str, Any], topics: Iterable[str], partitions: int, replication: int = 1) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = KafkaAdminClient(**{k: v for k, v in common.items() if k != "client_id"}, client_id="ganomaly-admin")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        created = []
        for t in missing:
            try:
                admin.create_topics([NewTopic(name=t, num_partitions=partitions, replication_factor=replication)])
                created.append(t)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def headers_dict(headers: list[tuple[str, bytes | None]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or []:
        if v is not None:
            out[k] = v.decode("utf-8", "replace")
    return out
