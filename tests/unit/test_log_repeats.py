"""kafka-python's line per failed connection is let through once a minute per kind, not fifty times in thirty seconds."""

from __future__ import annotations

import json
import logging
import time

import pytest

from ganomaly import log as worker_log
from ganomaly.log import configure_logging


def test_a_flood_of_kafka_connection_failures_is_one_line_and_other_loggers_are_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    kafka = logging.getLogger("kafka.net.manager")
    for backoff in range(50):  # the shape kafka-python logs, its numbers changing every time
        kafka.error(f"Bootstrap attempt to bootstrap-0 failed: KafkaConnectionError: 111 ECONNREFUSED (backoff {backoff / 10:.2f} secs)")
        kafka.warning("Bootstrap %s not ready; waiting %.2f secs", "bootstrap-0", backoff / 10)
    for i in range(3):
        logging.getLogger("redis").warning("connection %d lost", i)
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [(x["logger"], x["level"]) for x in lines] == [("kafka.net.manager", "error"), ("kafka.net.manager", "warning")] + [("redis", "warning")] * 3


def test_debug_lets_every_repeat_through(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", json=True)
    for _ in range(5):
        logging.getLogger("kafka.net.connection").error("Connection lost: %s", "KafkaConnectionError: 111 ECONNREFUSED")
    assert len(capsys.readouterr().err.splitlines()) == 5
    configure_logging("info", json=True)


def test_the_line_after_a_quiet_spell_counts_what_was_left_out() -> None:
    f = worker_log._RepeatFilter(("kafka",), window_s=0.2)

    def record(n: int) -> logging.LogRecord:
        return logging.LogRecord("kafka.net.connection", logging.ERROR, __file__, 1, "Connection lost after %d ms", (n,), None)

    assert [f.filter(record(n)) for n in range(10)] == [True] + [False] * 9
    time.sleep(0.25)
    again = record(99)
    assert f.filter(again) and again.repeats_suppressed == 9
