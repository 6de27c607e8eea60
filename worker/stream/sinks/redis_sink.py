"""Results, latest-per-source, alert stream and worker status in Redis; idempotent per input.

One Lua script per result makes the writes for that result atomic and safe to repeat:
the per-result key is overwritten, the latest-per-source hash only moves forward in
record time, and the alert is appended to the stream only the first time its
fingerprint is seen (a redelivered anomaly does not raise a second alert). Keys of one
result may live in different cluster slots; this targets a single Redis (or a
proxy/Sentinel setup), not Redis Cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from worker.stream import messages as m
from worker.stream.retry import retry_until_done
from worker.stream.sinks.outputs import OutputBatch

# Outages: the server away, slow or loading (BusyLoadingError is a ConnectionError), and the
# refusals of a server that is there but cannot take writes for now: full under a noeviction
# policy (OOM), a demoted primary after a failover (READONLY), a replica cut off from its primary
# (MASTERDOWN). All of them pass; waiting is right, skipping would lose results.
RETRY_ON: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, OutOfMemoryError, ReadOnlyError,
                                             MasterDownError)

_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local cur = redis.call('HGET', KEYS[2], 'record_ts')
if (not cur) or tonumber(cur) <= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[2], 'record_ts', ARGV[4], 'result', ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
if ARGV[3] == '1' then
  if redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[2]) then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'fingerprint', ARGV[7], 'alert', ARGV[6])
    return 1
  end
end
return 0
"""


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.alerts = f"{prefix}:alerts"

    def result(self, result_id: str) -> str:
        return f"{self.prefix}:result:{result_id}"

    def latest(self, source: str) -> str:
        return f"{self.prefix}:latest:{source}"

    def alert_seen(self, fp: str) -> str:
        return f"{self.prefix}:alert-seen:{fp}"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"


class RedisSink:
    def __init__(self, client: redis.Redis, *, prefix: str, ttl_s: int, maxlen: int, status_ttl_s: int,
                 abort: threading.Event, backoff_max_s: float, on_retry: Callable[[BaseException], None] | None = None) -> None:
        self.client = client
        self.on_retry = on_retry
        self.keys = RedisKeys(prefix)
        self.ttl_s, self.maxlen, self.status_ttl_s = ttl_s, maxlen, status_ttl_s
        self.abort = abort
        self.backoff_max_s = backoff_max_s
        self._script = client.register_script(_SCRIPT)
        self.alerts_added = 0

    def write(self, batch: OutputBatch, status: m.WorkerStatus | None = None) -> None:
        def attempt() -> list[object]:
            pipe = self.client.pipeline(transaction=False)  # each script call is atomic on its own
            for r in batch.results:
                body = r.to_json()
                fp = m.fingerprint(r.input)
                alert = m.Alert.from_result(r).to_json() if r.is_anomaly else b""
                self._script(
                    keys=[self.keys.result(r.id), self.keys.latest(r.source or "unknown"), self.keys.alerts, self.keys.alert_seen(fp)],
                    args=[body, self.ttl_s, "1" if r.is_anomaly else "0", r.record_timestamp_ms, self.maxlen, alert, fp],
                    client=pipe,
                )
            if status is not None:
                key = self.keys.worker(status.worker)
                pipe.hset(key, mapping={k: str(v) for k, v in status.model_dump().items()})
                pipe.expire(key, self.status_ttl_s)
            return pipe.execute(raise_on_error=True)

        out = retry_until_done(attempt, what="redis-write", abort=self.abort, retry_on=RETRY_ON,
                               backoff_max_s=self.backoff_max_s, on_retry=self._retrying)
        self.alerts_added += sum(1 for v in out[: len(batch.results)] if v == 1)

    def _retrying(self, error: BaseException) -> None:
        # After a Redis restart the script cache is empty; redis-py reloads on NOSCRIPT in pipelines
        # only if the script object is re-registered.
        self._script = self.client.register_script(_SCRIPT)
        if self.on_retry is not None:
            self.on_retry(error)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return False


def now_ms() -> int:
    return int(time.time() * 1000)
