"""Every line the worker writes is JSON: our events, library records and Python warnings alike."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import structlog
from structlog.contextvars import bound_contextvars

from ganomaly.log import configure_logging


def test_library_records_and_warnings_are_json_lines_with_the_message_coordinates(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", json=True)
    configure_logging("info", json=True)  # a second call must not double every line
    structlog.get_logger("worker").info("batch", size=3)
    with bound_contextvars(topic="images", partition=2, offset=41):
        logging.getLogger("kafka.conn").warning("connection to %s failed", "broker:9092")
    logging.getLogger("kafka.conn").info("per-connection chatter")  # below the libraries' level at "info"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # pytest records each test's warnings with its own hook; start again from Python's display
        logging.captureWarnings(False)
        configure_logging("info", json=True)
        warnings.warn("Image size exceeds limit", UserWarning, stacklevel=1)
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        logging.getLogger("redis").exception("write failed")

    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
    assert [x["event"] for x in lines][:2] == ["batch", "connection to broker:9092 failed"]
    assert len(lines) == 4
    kafka = lines[1]
    assert (kafka["logger"], kafka["level"], kafka["topic"], kafka["partition"], kafka["offset"]) == ("kafka.conn", "warning", "images", 2, 41)
    assert lines[2]["logger"] == "py.warnings" and "Image size exceeds limit" in lines[2]["event"]
    assert lines[3]["level"] == "error" and "ZeroDivisionError: boom" in lines[3]["exception"]
    assert all("timestamp" in x for x in lines)


def test_debug_lets_library_records_through(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", json=True)
    logging.getLogger("kafka.coordinator").debug("heartbeat")
    assert json.loads(capsys.readouterr().err.splitlines()[-1])["event"] == "heartbeat"
    configure_logging("info", json=True)
