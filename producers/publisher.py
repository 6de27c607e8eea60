"""A thin, embeddable publisher: encoded image bytes + headers -> the input topic.

Uses the idempotent producer (acks=all), so a retried send is written once.
``close()`` (or leaving the ``with`` block) waits for every acknowledgement.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from kafka.errors import KafkaError
from PIL import Image

if TYPE_CHECKING:
    from ganomaly.connections.kafka import KafkaSettings

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp", "GIF": "image/gif", "TIFF": "image/tiff"}


def encode_png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class PublishStats:
    sent: int = 0
    failed: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


class ImagePublisher:
    """``connect_timeout_s``: how long the constructor waits for the broker before raising
    :class:`ganomaly.connections.startup.ConnectTimeout` (a one-line message naming the address)."""

    def __init__(self, kafka: KafkaSettings | str, topic: str, *, compression: str | None = None, linger_ms: int = 5,
                 connect_timeout_s: float = 30.0) -> None:
        """``kafka``: the broker settings, or a bare ``host:port`` list for a PLAINTEXT broker."""
        from ganomaly.connections.kafka import as_kafka, make_producer
        from ganomaly.connections.startup import StartupWait, connect_kafka

        self.topic = topic
        self.stats = PublishStats()
        self._futures: list[Any] = []
        self.producer = connect_kafka(StartupWait(connect_timeout_s), as_kafka(kafka), lambda cfg: make_producer(
            cfg, linger_ms=linger_ms, compression_type=compression))

    def publish(self, data: bytes, *, key: str | None = None, source: str | None = None, label: str | None = None,
                content_type: str | None = None, trace_id: str | None = None, extra_headers: dict[str, str] | None = None,
                timestamp_ms: int | None = None) -> None:
        headers = [("trace-id", (trace_id or uuid.uuid4().hex).encode())]
        if content_type:
            headers.append(("content-type", content_type.encode()))
        if source:
            headers.append(("source", source.encode()))
        if label:
            headers.append(("label", label.encode()))
        for k, v in (extra_headers or {}).items():
            headers.append((k, v.encode()))
        fut = self.producer.send(self.topic, value=data, key=key.encode() if key else None, headers=headers, timestamp_ms=timestamp_ms)
        self._futures.append((fut, len(data)))
        if len(self._futures) >= 5000:
            self._collect()

    def _collect(self) -> None:
        self.producer.flush()
        for fut, n in self._futures:
            try:
                fut.get(timeout=30)
                self.stats.sent += 1
                self.stats.bytes += n
            except KafkaError as e:
                self.stats.failed += 1
                if len(self.stats.errors) < 20:
                    self.stats.errors.append(f"{type(e).__name__}: {e}")
        self._futures.clear()

    def close(self) -> PublishStats:
        self._collect()
        self.producer.close()
        return self.stats

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
