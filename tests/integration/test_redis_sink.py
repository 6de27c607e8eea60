"""The Redis sink against a real Redis: batches of several script calls, redelivery, latest per source."""

from __future__ import annotations

import json
import threading

import redis

from ganomaly.contracts import messages as m
from worker.sinks.outputs import OutputBatch
from worker.sinks.redis_sink import CHUNK, RedisSink


def _result(i: int, *, anomaly: bool, ts: int) -> m.Result:
    ref = m.InputRef(topic="in", partition=i % 3, offset=i, key=f"img-{i}")
    return m.Result(id=ref.id, input=ref, image_id=ref.key, source=f"cam-{i % 5}", score=2.0 if anomaly else 0.5,
                    score_normalised=1.5 if anomaly else 0.2, threshold=1.0, is_anomaly=anomaly, model_version="m-test",
                    record_timestamp_ms=ts, scored_at_ms=ts + 5, latency_ms=5.0, worker="w")


def test_batches_larger_than_a_script_call_write_every_result_once(redis_url: str, prefix: str) -> None:
    n = 2 * CHUNK + 37  # three script calls, the last one partial
    # record times out of offset order, so "latest per source" is not simply the last written
    results = [_result(i, anomaly=i % 7 == 0, ts=1_000_000 + (i * 7919) % 5000) for i in range(n)]
    client = redis.Redis.from_url(redis_url)
    sink = RedisSink(client, prefix=prefix, ttl_s=60, maxlen=10_000, status_ttl_s=60, abort=threading.Event(), backoff_max_s=1)
    try:
        sink.write(OutputBatch(results=results))
        sink.write(OutputBatch(results=results[:CHUNK + 5]))  # a redelivery across a chunk border

        anomalies = [r for r in results if r.is_anomaly]
        assert sink.alerts_added == len(anomalies)
        stream = client.xrange(f"{prefix}:alerts")
        assert sorted(json.loads(f[b"alert"])["result"]["id"] for _, f in stream) == sorted(r.id for r in anomalies)
        for r in results:
            assert json.loads(client.get(f"{prefix}:result:{r.id}") or b"{}")["score"] == r.score
            assert 0 < client.ttl(f"{prefix}:result:{r.id}") <= 60
        for src in {r.source for r in results}:
            newest = max((r for r in results if r.source == src), key=lambda r: r.record_timestamp_ms)
            latest = client.hgetall(f"{prefix}:latest:{src}")
            assert int(latest[b"record_ts"]) == newest.record_timestamp_ms
            assert json.loads(latest[b"result"])["id"] == newest.id
    finally:
        for k in client.scan_iter(f"{prefix}:*"):
            client.delete(k)
