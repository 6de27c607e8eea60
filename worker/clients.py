"""The worker's clients of the broker and Redis: made here and nowhere else.

Start-up waits for each within the one start-up bound (``connect_timeout_s``, worker/app.py);
after start-up, outages are the sinks' to wait out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer

from ganomaly.connections.kafka import ensure_topics, make_consumer, make_producer
from ganomaly.connections.redis import make_redis
from ganomaly.connections.startup import StartupWait, connect_kafka, wait_for_redis
from ganomaly.registry import RedisPointer
from worker.settings import WorkerSettings


def redis_client(s: WorkerSettings, *, socket_timeout: float, health_check_interval: int = 0) -> redis.Redis:
    return make_redis(s.redis, socket_timeout=socket_timeout, socket_connect_timeout=3, health_check_interval=health_check_interval)


def wait_redis(s: WorkerSettings, wait: StartupWait) -> None:
    wait_for_redis(wait, s.redis)


def registry_pointer(s: WorkerSettings) -> RedisPointer | None:
    """The registry pointer, with ``--model-store`` (else the worker serves ``--model`` only)."""
    if s.model_store is None:
        return None
    return RedisPointer(redis_client(s, socket_timeout=3), s.redis.redis_prefix)


def _producer(s: WorkerSettings, cfg: dict[str, Any]) -> KafkaProducer:
    return make_producer(cfg, linger_ms=s.producer_linger_ms, compression_type=None if s.producer_compression == "none" else s.producer_compression,
                         delivery_timeout_ms=s.delivery_timeout_ms, request_timeout_ms=max(1000, s.delivery_timeout_ms // 2),
                         max_request_size=s.producer_max_request_bytes)


def _consumer(s: WorkerSettings, cfg: dict[str, Any]) -> KafkaConsumer:
    return make_consumer(cfg, group_id=s.group_id, auto_offset_reset=s.auto_offset_reset, session_timeout_ms=s.session_timeout_ms,
                         heartbeat_interval_ms=s.heartbeat_interval_ms, max_poll_interval_ms=s.max_poll_interval_ms,
                         max_poll_records=s.max_poll_records, fetch_max_bytes=s.fetch_max_bytes, fetch_max_wait_ms=s.fetch_max_wait_ms)


@dataclass
class Clients:
    producer: KafkaProducer
    redis: redis.Redis
    consumer: KafkaConsumer

    def close(self) -> None:
        """After the last commit: the consumer leaves the group (its revoke listener finds nothing in flight)."""
        self.consumer.close(autocommit=False, timeout_ms=5000)
        self.producer.close(timeout=5)
        self.redis.close()


def connect(s: WorkerSettings, wait: StartupWait) -> Clients:
    """The broker (topics, producer), then Redis, then the consumer, each waited for within the start-up bound.
    If start-up gives up or is stopped half-way, what it had made is closed."""
    common = s.kafka_common()
    if s.create_topics:
        topics = [s.input_topic, s.results_topic, s.alerts_topic, s.dlq_topic] + ([s.shadow_topic] if s.shadow_model else [])
        connect_kafka(wait, common, lambda cfg: ensure_topics(cfg, topics, s.topic_partitions))
    producer = connect_kafka(wait, common, lambda cfg: _producer(s, cfg))
    try:
        wait_redis(s, wait)
        rclient = redis_client(s, socket_timeout=5, health_check_interval=10)
        consumer = connect_kafka(wait, common, lambda cfg: _consumer(s, cfg))
    except BaseException:
        producer.close(timeout=1)
        raise
    return Clients(producer, rclient, consumer)
