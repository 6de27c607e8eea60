"""A broker or Redis that is not there at start: a bounded wait, one line per attempt, one clear reason.

Every process runs as a real subprocess against a real closed port (a free port nothing listens
on), a real Redis and a real Tansu broker. The start-up of a process on this shared 2-core machine
(importing torch) takes seconds of its own, so wall-clock bounds leave room for it, and the
worker's own timestamps measure the wait itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ganomaly.devstack import free_port, start_broker, stop
from tests.conftest import FMNIST
from tests.integration.helpers import ROOT, Topics, WorkerProc

pytestmark = pytest.mark.integration

BOUND_S = 4.0
# importing torch and loading a model on a loaded 2-core box; the waits themselves are timed from the logs
STARTUP_ALLOWANCE_S = 40.0


def _json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"not a JSON line: {line!r}\n{text[-3000:]}") from None
    return out


def _ts(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"]).timestamp()


def _closed_port() -> str:
    return f"127.0.0.1:{free_port()}"


def _worker(tmp_path: Path, broker: str, tiny_model: Path, redis_url: str, prefix: str, *, bootstrap: str, bound_s: float = BOUND_S,
            **env: Any) -> WorkerProc:
    # the topics live on the real broker: only the address the worker is given differs
    return WorkerProc(bootstrap=bootstrap, topics=Topics(broker, partitions=1), model=tiny_model, redis_url=redis_url, prefix=prefix,
                      log=tmp_path / "w.log", GANOMALY_CONNECT_TIMEOUT_S=bound_s, **env)


def _check_gave_up(w: WorkerProc, event: str, what: str, address: str) -> list[dict[str, Any]]:
    t0 = time.monotonic()
    rc = w.proc.wait(BOUND_S + STARTUP_ALLOWANCE_S)
    assert rc == 2, w.logs()[-3000:]
    lines = _json_lines(w.logs())  # every line of stdout and stderr
    waits = [x for x in lines if x["event"] == event]
    assert waits, w.logs()[-3000:]
    assert [x["attempt"] for x in waits] == list(range(1, len(waits) + 1)), "one line per attempt"
    assert all(address in json.dumps(x) and x["error"] for x in waits), "each line names what it waits for and why it failed"
    last = lines[-1]
    assert last["event"] == "startup_failed" and last["level"] == "error", last
    assert last["error"].startswith(f"cannot reach {what} at {address} after {BOUND_S:.0f} s (")
    assert _ts(last) - _ts(waits[0]) <= BOUND_S + 1.5, "the wait is bounded by --connect-timeout-s"
    assert sum(1 for x in lines if str(x.get("logger", "")).startswith("kafka")) < 10, "kafka-python's own lines do not flood"
    assert time.monotonic() - t0 < BOUND_S + STARTUP_ALLOWANCE_S
    return lines


def test_worker_with_no_broker_waits_within_its_bound_then_exits_2_with_one_json_reason(broker: str, redis_url: str, prefix: str,
                                                                                       tiny_model: Path, tmp_path: Path) -> None:
    closed = _closed_port()
    with _worker(tmp_path, broker, tiny_model, redis_url, prefix, bootstrap=closed) as w:
        lines = _check_gave_up(w, "waiting_for_kafka", "the Kafka broker", closed)
    assert "ECONNREFUSED" in lines[-1]["error"] or "Connection refused" in lines[-1]["error"]
    print(f"{sum(x['event'] == 'waiting_for_kafka' for x in lines)} waiting lines, {len(lines)} lines in all")


def test_worker_with_no_redis_waits_within_its_bound_then_exits_2_with_one_json_reason(broker: str, prefix: str, tiny_model: Path,
                                                                                      tmp_path: Path) -> None:
    closed = _closed_port()
    with _worker(tmp_path, broker, tiny_model, f"redis://{closed}/0", prefix, bootstrap=broker) as w:
        _check_gave_up(w, "waiting_for_redis", "Redis", closed)


def test_worker_stopped_while_waiting_for_the_broker_exits_at_once_and_cleanly(broker: str, redis_url: str, prefix: str, tiny_model: Path,
                                                                               tmp_path: Path) -> None:
    metrics_port = free_port()
    with _worker(tmp_path, broker, tiny_model, redis_url, prefix, bootstrap=_closed_port(), bound_s=120,
                 GANOMALY_METRICS_PORT=metrics_port) as w:
        w.wait_for('"waiting_for_kafka"', timeout_s=STARTUP_ALLOWANCE_S)
        # waiting within its bound: alive (a restart would not bring the broker sooner), not ready, and saying why
        assert urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=5)
        body = json.loads(not_ready.value.read())
        assert not_ready.value.code == 503 and body["ready"] is False and "Kafka broker" in body["waiting_for"]
        t0 = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        rc = w.proc.wait(10)
        took = time.monotonic() - t0
    print(f"exit {rc} {took:.2f} s after SIGTERM")
    assert rc == 0, w.logs()[-3000:]
    assert took < 3.0, f"SIGTERM while waiting took {took:.2f} s"
    assert "Traceback" not in w.logs()
    lines = _json_lines(w.logs())
    assert lines[-1]["event"] == "stopped" and lines[-1]["during"] == "start-up"


BENCH = ["--width", "4", "--images", "100", "--pairs", "32:5", "--device", "cpu", "--data-dir", str(FMNIST)]


def _one_shot(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "ganomaly", *args, "--connect-timeout-s", "3"], cwd=ROOT, env={**os.environ, **(env or {})},
                       capture_output=True, text=True, timeout=3 + STARTUP_ALLOWANCE_S, check=False)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


@pytest.mark.parametrize("command", ["feedback", "produce", "replay", "trainer", "models", "alerts", "bench-broker", "bench-redis"])
def test_one_shot_commands_give_up_after_their_bound_with_one_error_line(command: str, redis_url: str, tiny_model: Path,
                                                                         tmp_path: Path) -> None:
    closed = _closed_port()
    args = {
        "feedback": ["feedback", "--bootstrap-servers", closed, "--verdict", "normal", "--result-id", "images:0:0"],
        "produce": ["produce", "--bootstrap-servers", closed, "--data-dir", str(FMNIST), "--count", "5", "--no-progress"],
        "replay": ["replay", "--bootstrap-servers", closed, "--model", str(tiny_model)],
        # Redis answers: the trainer gets as far as the broker
        "trainer": ["trainer", "--bootstrap-servers", closed, "--redis-url", redis_url, "--data-dir", str(tmp_path / "confirmed"),
                    "--model-store", str(tmp_path / "store"), "--log-level", "warning"],
        "models": ["models", "list", "--model-store", str(tmp_path / "store"), "--redis-url", f"redis://{closed}/0"],
        "alerts": ["alerts", "--redis-url", f"redis://:secret@{closed}/0"],
        # said before minutes of set-up, not as a worker thread's traceback and an exit 0 with an empty row
        "bench-broker": ["bench", "stream", "--bootstrap-servers", closed, *BENCH],
        "bench-redis": ["bench", "stream", "--redis-url", f"redis://:secret@{closed}/0", *BENCH],  # its own broker answers first
    }[command]
    what = "Redis" if command in ("models", "alerts", "bench-redis") else "the Kafka broker"
    (tmp_path / "store").mkdir()  # an existing store: a missing one is refused before any connection
    rc, out, err, took = _one_shot(args)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot reach {what} at {closed} after 3 s ("), err
    assert "secret" not in err
    assert out == ""
    assert took < 3 + STARTUP_ALLOWANCE_S


def test_trainer_logs_its_attempts_as_json_at_its_default_level(redis_url: str, tmp_path: Path) -> None:
    """The trainer runs as a service (a CronJob, or with --every): its waiting lines are JSON, then the one error line."""
    closed = _closed_port()
    rc, _, err, _ = _one_shot(["trainer", "--bootstrap-servers", closed, "--redis-url", redis_url, "--data-dir", str(tmp_path / "c"),
                               "--model-store", str(tmp_path / "s")])
    *waits, last = err.splitlines()
    assert rc == 2 and last.startswith(f"error: cannot reach the Kafka broker at {closed}")
    lines = _json_lines("\n".join(waits))
    assert lines and all(x["event"] == "waiting_for_kafka" and x["bootstrap"] == closed for x in lines), err


def test_a_port_that_is_not_a_broker_gives_kafka_pythons_reason_in_the_one_line(redis_url: str) -> None:
    """Something listens but is no broker (here: Redis): kafka-python's reason, not its dozen lines."""
    redis_port = redis_url.rsplit(":", 1)[1].split("/")[0]
    rc, _, err, _ = _one_shot(["feedback", "--bootstrap-servers", f"127.0.0.1:{redis_port}", "--verdict", "normal", "--result-id", "images:0:0"])
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"error: cannot reach the Kafka broker at 127.0.0.1:{redis_port} after 3 s (KafkaTimeoutError"), err


def test_a_broker_outage_after_start_up_is_waited_out_past_the_bound(redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    """The bound is for start-up only: a running worker waits a broker outage out, quietly."""
    proc, bootstrap = start_broker(log_path=tmp_path / "tansu.log")
    try:
        topics = Topics(bootstrap, partitions=1)
        with WorkerProc(bootstrap=bootstrap, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                        GANOMALY_CONNECT_TIMEOUT_S=2, GANOMALY_DRAIN_TIMEOUT_S=1) as w:
            w.wait_for('"partitions_assigned"', timeout_s=STARTUP_ALLOWANCE_S + 20)
            before = len(w.logs().splitlines())
            stop(proc)
            time.sleep(15)  # seven bounds
            assert w.proc.poll() is None, "a running worker must not give up on an outage"
            during = _json_lines("\n".join(w.logs().splitlines()[before:]))
            assert w.terminate(60) == 0
        kafka_lines = [x for x in during if str(x.get("logger", "")).startswith("kafka")]
        print(f"{len(kafka_lines)} kafka-python lines in a 15 s outage")
        shapes = {(x["logger"], x["level"], "".join(c for c in x["event"] if not c.isdigit())) for x in kafka_lines}
        assert len(kafka_lines) == len(shapes) and len(kafka_lines) < 15, "kafka-python's repeats are let through once a minute per kind"
    finally:
        stop(proc)
