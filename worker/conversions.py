"""Channel conversions made visible: a colour camera on a grayscale model is counted and named, not silent."""

from __future__ import annotations

import threading
from collections import OrderedDict

import structlog
from prometheus_client import Counter

log = structlog.get_logger("worker")


class ChannelConversions:
    """Counts every conversion by (from, to) channels and logs the first one of each source.

    Sources are remembered in a bounded LRU (``max_sources``): a stream with unbounded source
    names costs at most that much memory, and a forgotten source is logged again once.
    """

    def __init__(self, counter: Counter, max_sources: int = 10_000) -> None:
        self.counter = counter
        self.max_sources = max_sources
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()
        self._lock = threading.Lock()  # several decode threads note conversions

    def note(self, source: str, from_channels: int, to_channels: int, *, topic: str, partition: int, offset: int) -> None:
        self.counter.labels(str(from_channels), str(to_channels)).inc()
        key = (source, from_channels, to_channels)
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return
            self._seen[key] = None
            if len(self._seen) > self.max_sources:
                self._seen.popitem(last=False)
        log.info("channels_converted", source=source, from_channels=from_channels, to_channels=to_channels,
                 topic=topic, partition=partition, offset=offset,
                 note="converted to the model's channels (--channel-policy convert); logged once per source, counted in "
                      "ganomaly_images_converted_total")
