"""``ganomaly trainer``: refit on confirmed normals, gate against the champion, promote; once or every N seconds."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

from ganomaly.retrain import TrainerSignals
from trainer.settings import TrainerSettings


def run_trainer(s: TrainerSettings) -> int:
    import structlog

    from ganomaly.connections.startup import ConnectTimeout, StartupStopped, StartupWait
    from ganomaly.settings import check_one_weight_average
    from trainer.job import run_once

    check_one_weight_average(s.ema_decay, s.swa_start)
    log = structlog.get_logger("trainer")
    sig = _signals(s)  # no connection until used
    if s.every is None:
        record = run_once(s)
        _report(s, sig, record, next_at_ms=None)
        print(json.dumps(record, default=str))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    first = True
    while not stop.is_set():
        t0 = time.monotonic()
        if not first:  # before the first run Redis has not been waited for yet: run_once does that, within its bound
            _report(s, sig, None, next_at_ms=None, state="running")
        try:
            record = run_once(s, StartupWait(s.connect_timeout_s, stop=stop))
            print(json.dumps(record, default=str), flush=True)
            _report(s, sig, record, next_at_ms=int((time.time() + max(0.0, s.every - (time.monotonic() - t0))) * 1000))
        except StartupStopped:
            return 0
        except ConnectTimeout as e:
            if first:  # a trainer that never reached its broker or Redis is misconfigured: say so and exit 2
                raise
            # later, an outage: this run is skipped, the next one tries again
            log.error("run_skipped", error=str(e))
        first = False
        _wait(s, sig, stop, t0, log)
    return 0


def _signals(s: TrainerSettings) -> TrainerSignals:
    from ganomaly.connections.redis import make_redis

    return TrainerSignals(make_redis(s.redis, socket_timeout=5), s.redis.redis_prefix)


def _report(s: TrainerSettings, sig: TrainerSignals, record: dict[str, Any] | None, *, next_at_ms: int | None, state: str = "waiting") -> None:
    """The trainer's status for the console (a CronJob run also takes the request it answered). Best effort."""
    import redis

    try:
        fields: dict[str, Any] = {"state": state, "every_s": s.every, "next_at_ms": next_at_ms}
        if record is not None:
            if s.every is None:  # a CronJob run answers the request it finds (a looping trainer took its own in _wait)
                sig.take()
            fields |= {"last_at": record.get("at"), "last_action": record.get("action"), "last_reason": record.get("reason"),
                       "last_challenger": record.get("challenger"), "last_champion": record.get("champion")}
        sig.report(**fields)
    except redis.RedisError:
        pass  # the run itself is what matters; the console shows the status as stale


def _wait(s: TrainerSettings, sig: TrainerSignals, stop: threading.Event, t0: float, log: Any) -> None:
    """Until the next run is due, or an operator asks for one now (checked every second)."""
    import redis

    assert s.every is not None
    deadline = t0 + s.every
    while not stop.wait(min(1.0, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return
        try:
            asked = sig.take()  # taken as the run it starts begins: a request made during that run asks for another
        except redis.RedisError:
            continue
        if asked is not None:
            log.info("run_requested", by=asked.get("by"), at_ms=asked.get("at_ms"))
            return
