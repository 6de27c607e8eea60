"""Results, latest-per-source, alert stream and worker status in Redis; idempotent per input.

A Lua script makes the writes for each result atomic and safe to repeat: the
per-result key is overwritten, the latest-per-source hash only moves forward in record
time, and the alert is appended to the stream only the first time its fingerprint is
seen (a redelivered anomaly does not raise a second alert). One script call covers up
to ``CHUNK`` results: per call, redis-py's Python work (argument conversion, packing)
is paid once instead of per result. Keys of one result may live in different cluster
slots; this targets a single Redis (or a proxy/Sentinel setup), not Redis Cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ganomaly.contracts import messages as m
from ganomaly.contracts.results import alert_json
from worker.retry import retry_until_done
from worker.sinks.outputs import OutputBatch

# Outages: the server away, slow or loading (BusyLoadingError is a ConnectionError), and the
# refusals of a server that is there but cannot take writes for now: full under a noeviction
# policy (OOM), a demoted primary after a failover (READONLY), a replica cut off from its primary
# (MASTERDOWN). All of them pass; waiting is right, skipping would lose results.
RETRY_ON: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError, OutOfMemoryError, ReadOnlyError,
                                             MasterDownError)

# KEYS[1] is the alert stream, then three keys per result: its result key, its source's latest
# key, its alert-seen key. ARGV[1] is the TTL, ARGV[2] the stream's MAXLEN, then five values per
# result: body, is_anomaly ('1'/'0'), record timestamp, alert body, fingerprint. Returns one
# 1/0 per result: whether its alert was appended now (0 for a redelivery or a normal image).
_SCRIPT = """
local ttl, maxlen = ARGV[1], ARGV[2]
local added = {}
for i = 0, (#KEYS - 1) / 3 - 1 do
  local k, a = 2 + 3 * i, 3 + 5 * i
  redis.call('SET', KEYS[k], ARGV[a], 'EX', ttl)
  local cur = redis.call('HGET', KEYS[k + 1], 'record_ts')
  if (not cur) or tonumber(cur) <= tonumber(ARGV[a + 2]) then
    redis.call('HSET', KEYS[k + 1], 'record_ts', ARGV[a + 2], 'result', ARGV[a])
    redis.call('EXPIRE', KEYS[k + 1], ttl)
  end
  added[i + 1] = 0
  if ARGV[a + 1] == '1' and redis.call('SET', KEYS[k + 2], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'fingerprint', ARGV[a + 4], 'alert', ARGV[a + 3])
    added[i + 1] = 1
  end
end
return added
"""
# Results per script call: bounds how long one call holds the (single-threaded) server.
CHUNK = 256


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
            for start in range(0, len(batch.results), CHUNK):
                keys: list[str] = [self.keys.alerts]
                args: list[object] = [self.ttl_s, self.maxlen]
                for r in batch.results[start : start + CHUNK]:
                    result_key = self.keys.result(r.id)
                    if r.is_anomaly:
                        fp = m.fingerprint(r.input)
                        keys += [result_key, self.keys.latest(r.source or "unknown"), self.keys.alert_seen(fp)]
                        args += [r.to_json(), "1", r.record_timestamp_ms, alert_json(r), fp]
                    else:  # the script reads the alert-seen key only for an anomaly: the result's own key stands in
                        keys += [result_key, self.keys.latest(r.source or "unknown"), result_key]
                        args += [r.to_json(), "0", r.record_timestamp_ms, b"", ""]
                self._script(keys=keys, args=args, client=pipe)
            if status is not None:
                key = self.keys.worker(status.worker)
                pipe.hset(key, mapping={k: str(v) for k, v in status.model_dump().items()})
                pipe.expire(key, self.status_ttl_s)
            return pipe.execute(raise_on_error=True)

        out = retry_until_done(attempt, what="redis-write", abort=self.abort, retry_on=RETRY_ON,
                               backoff_max_s=self.backoff_max_s, on_retry=self._retrying)
        n_calls = -(-len(batch.results) // CHUNK)
        self.alerts_added += sum(sum(flags) for flags in out[:n_calls])

    def write_status(self, status: m.WorkerStatus) -> bool:
        """The status hash alone, once (an idle worker's refresh); False when Redis did not take it."""
        key = self.keys.worker(status.worker)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, mapping={k: str(v) for k, v in status.model_dump().items()})
            pipe.expire(key, self.status_ttl_s)
            pipe.execute()
        except RETRY_ON:
            return False
        return True

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
