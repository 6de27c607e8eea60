"""Failure behaviour against the real broker and Redis: crashes, poison, outages, shutdown."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from ganomaly.artifact import load_artifact, save_artifact
from ganomaly.data.idx import load_split
from ganomaly.devstack import free_port, start_redis, stop
from producers import ImagePublisher, encode_png
from tests.conftest import FMNIST
from tests.integration.helpers import Topics, WorkerProc, produce_fmnist, read_topic, results_by_id
from tests.poison import poison_corpus

pytestmark = pytest.mark.integration


def _metric(port: int, name: str, **labels: str) -> float:
    """A sample's value from the worker's /metrics, summed over the children with these labels (0 when none yet)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and labels.items() <= s.labels.items())


def _wait_results(broker: str, topic: str, n: int, timeout_s: float) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout_s
    by_id: dict[str, list[dict]] = {}
    while time.monotonic() < deadline:
        by_id = results_by_id(read_topic(broker, topic, settle_s=0.5, timeout_s=20))
        if len(by_id) >= n:
            return by_id
        time.sleep(0.5)
    return by_id


def test_two_workers_split_partitions_and_survive_sigkill(broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    topics = Topics(broker, partitions=4)
    common = {"bootstrap": broker, "topics": topics, "model": tiny_model, "redis_url": redis_url, "prefix": prefix,
                  "GANOMALY_MAX_BATCH_SIZE": 8, "GANOMALY_MAX_POLL_RECORDS": 16, "GANOMALY_COMMIT_INTERVAL_MS": 200}
    with WorkerProc(log=tmp_path / "w1.log", GANOMALY_WORKER_ID="w1", **common) as w1, \
         WorkerProc(log=tmp_path / "w2.log", GANOMALY_WORKER_ID="w2", **common) as w2:
        w1.wait_for('"partitions_assigned"')
        w2.wait_for('"partitions_assigned"')
        time.sleep(2)  # let the second join's rebalance settle
        sent = produce_fmnist(broker, topics.input, 400, data_dir=FMNIST)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and w1.logs().count('"batch"') < 5:
            time.sleep(0.1)
        w1.kill()  # SIGKILL mid-stream: no drain, no commit, no leave-group
        sent |= produce_fmnist(broker, topics.input, 200, start=400, data_dir=FMNIST)
        by_id = _wait_results(broker, topics.results, len(sent), timeout_s=120)
        assert w2.terminate() == 0
    assert {v[0]["image_id"] for v in by_id.values()} == set(sent), "an input got no result"
    workers = Counter(v[0]["worker"] for v in by_id.values())
    assert workers["w1"] > 0 and workers["w2"] > 0, f"partitions were not split: {workers}"
    duplicates = sum(len(v) - 1 for v in by_id.values())
    print(f"results per worker {dict(workers)}, duplicates after SIGKILL: {duplicates}")


@pytest.mark.parametrize("decode_processes", [0, 2], ids=["decode-threads", "decode-processes"])
def test_poison_goes_to_dead_letters_and_good_images_around_it_are_scored(broker: str, redis_url: str, prefix: str, tiny_model: Path,
                                                                          tmp_path: Path, decode_processes: int) -> None:
    topics = Topics(broker, partitions=2)
    images, _ = load_split(FMNIST, "t10k")
    corpus = {name: (data, reason) for name, data, reason in poison_corpus()}
    good = []
    with ImagePublisher(broker, topics.input) as pub:
        for i, (name, (data, _)) in enumerate(corpus.items()):
            for j in range(3):
                k = f"good:{i}:{j}"
                pub.publish(encode_png(images[i * 3 + j]), key=k, source="line-1")
                good.append(k)
            pub.publish(data, key=f"poison:{name}", source="line-1", extra_headers={"custom": "kept"})
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_MAX_IMAGE_BYTES=1_000_000, GANOMALY_DECODE_PROCESSES=decode_processes,
                    GANOMALY_CHANNEL_POLICY="strict") as w:  # the corpus's wrong-channels image is refused only when strict
        dead = read_topic(broker, topics.dlq, want=len(corpus), timeout_s=60)
        results = read_topic(broker, topics.results, want=len(good), timeout_s=60)
        assert w.terminate() == 0
    got = {d.key.decode(): d for d in dead}
    assert set(got) == {f"poison:{n}" for n in corpus}
    version = load_artifact(tiny_model).version
    for name, (data, reason) in corpus.items():
        rec = got[f"poison:{name}"]
        h = {k: v.decode() for k, v in rec.headers}
        assert rec.value == data, f"{name}: original bytes not preserved"
        assert h["dlq-reason"] == reason, f"{name}: {h}"
        assert h["dlq-topic"] == topics.input and int(h["dlq-offset"]) >= 0 and h["dlq-error-message"]
        assert h["custom"] == "kept" and h["source"] == "line-1"
        assert h["dlq-model-version"] == version, f"{name}: {h}"
    assert sorted(json.loads(r.value)["image_id"] for r in results) == sorted(good)


def test_redis_outage_waits_and_loses_nothing(broker: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()
    rdir = tmp_path / "redis"
    rproc = start_redis(port, dir_=rdir, persist=True)
    url = f"redis://127.0.0.1:{port}/0"
    topics = Topics(broker)
    metrics_port = free_port()
    # liveness goes stale after max(2, drain 2 + 10) = 12 s without a report from every loop
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_MAX_BATCH_SIZE=16, GANOMALY_METRICS_PORT=metrics_port, GANOMALY_LIVENESS_STALE_S=2,
                    GANOMALY_DRAIN_TIMEOUT_S=2) as w:
        w.wait_for('"partitions_assigned"')
        sent = produce_fmnist(broker, topics.input, 100, data_dir=FMNIST)
        _wait_results(broker, topics.results, 100, 60)
        stop(rproc)  # Redis goes away
        sent |= produce_fmnist(broker, topics.input, 150, start=100, data_dir=FMNIST)
        w.wait_for('"redis-write"', timeout_s=30)  # retrying, not skipping
        time.sleep(14)  # longer than the liveness window: the scorer waits on a full sink queue meanwhile
        assert w.proc.poll() is None, "worker died during the Redis outage"
        # waiting out an outage is alive: a liveness restart would not end it, only add rebalances
        health = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5)
        assert health.status == 200, health.read()
        rproc = start_redis(port, dir_=rdir, persist=True)
        try:
            by_id = _wait_results(broker, topics.results, 250, 90)
            rc = redis.Redis.from_url(url)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(list(rc.scan_iter(f"{prefix}:result:*", count=1000))) < 250:
                time.sleep(0.5)
            assert w.terminate() == 0
            keys = {k.decode().split(":result:")[1] for k in rc.scan_iter(f"{prefix}:result:*", count=1000)}
            anomalies = {i for i, v in by_id.items() if v[0]["is_anomaly"]}
            stream_fps = [e[1][b"fingerprint"] for e in rc.xrange(f"{prefix}:alerts")]
        finally:
            stop(rproc)
    assert {v[0]["image_id"] for v in by_id.values()} == set(sent)
    assert keys == set(by_id), f"{len(set(by_id) - keys)} results missing from Redis after the outage"
    assert len(stream_fps) == len(set(stream_fps)) == len(anomalies), "alerts lost or duplicated across the outage"


def test_a_full_or_read_only_redis_makes_the_worker_wait_and_lose_nothing(broker: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    # Redis is up but refuses writes: full under noeviction (OOM), then demoted to a replica as in
    # a failover (READONLY). Either must hold the offsets back, not kill the sink or skip results.
    port = free_port()
    rproc = start_redis(port, dir_=tmp_path / "redis")
    url = f"redis://127.0.0.1:{port}/0"
    rc = redis.Redis.from_url(url)
    topics = Topics(broker, partitions=1)
    try:
        rc.config_set("maxmemory-policy", "noeviction")
        rc.config_set("maxmemory", 1)  # every write is refused with OOM
        mport = free_port()
        with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=url, prefix=prefix, log=tmp_path / "w.log",
                        GANOMALY_MAX_BATCH_SIZE=16, GANOMALY_RETRY_BACKOFF_MAX_S=0.5, GANOMALY_METRICS_PORT=mport) as w:
            w.wait_for('"partitions_assigned"')
            sent = produce_fmnist(broker, topics.input, 60, data_dir=FMNIST)
            w.wait_for('"error": "OutOfMemoryError', timeout_s=30)  # retrying, not dead
            time.sleep(1)
            assert w.proc.poll() is None and not list(rc.scan_iter(f"{prefix}:result:*"))
            assert _metric(mport, "ganomaly_output_retries_total", sink="redis") > 0  # what the alert rule watches
            rc.config_set("maxmemory", 0)
            rc.replicaof("127.0.0.1", free_port())  # a primary that is not there: writes get READONLY
            w.wait_for('"error": "ReadOnlyError', timeout_s=30)
            assert w.proc.poll() is None, "worker died while Redis refused writes"
            rc.replicaof("NO", "ONE")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(list(rc.scan_iter(f"{prefix}:result:*", count=1000))) < len(sent):
                time.sleep(0.3)
            assert w.terminate() == 0
        keys = {k.decode().split(":result:")[1] for k in rc.scan_iter(f"{prefix}:result:*", count=1000)}
    finally:
        stop(rproc)
    assert {f"{topics.input}:0:{o}" for o in range(len(sent))} == keys
    assert topics.committed() == len(sent)


def test_a_permanent_sink_fault_stops_the_worker_at_once_and_a_restart_after_the_fix_loses_nothing(
        broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    # A key of the wrong type where the worker keeps a source's latest result: every write for
    # that source fails with WRONGTYPE, which no retry mends. The worker must exit non-zero at
    # once (not live on with a dead sink until a probe notices) and commit nothing unwritten.
    rc = redis.Redis.from_url(redis_url)
    rc.set(f"{prefix}:latest:line-1", "not a hash")
    topics = Topics(broker, partitions=1)
    images, _ = load_split(FMNIST, "t10k")
    keys = [f"img:{i}" for i in range(20)]
    with ImagePublisher(broker, topics.input) as pub:
        for i, k in enumerate(keys):
            pub.publish(encode_png(images[i]), key=k, source="line-1")
    env = {"GANOMALY_DRAIN_TIMEOUT_S": 30}  # a crash must not wait out the drain budget
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w1.log", **env) as w:
        w.wait_for('"partitions_assigned"')
        assert w.proc.wait(timeout=25) == 1  # well inside the 30 s drain budget a hung stage would wait out
        logs = w.logs()
        assert '"stage_crashed"' in logs and '"stage": "sink"' in logs and "WRONGTYPE" in logs
    assert not topics.committed(), "offsets committed for results Redis never took"
    rc.delete(f"{prefix}:latest:line-1")  # the operator's fix
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w2.log", **env) as w:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and topics.committed() != len(keys):
            time.sleep(0.3)
        assert w.terminate() == 0
    assert topics.committed() == len(keys)
    got = {json.loads(rc.get(k))["image_id"] for k in rc.scan_iter(f"{prefix}:result:*", count=1000)}
    assert got == set(keys)
    assert json.loads(rc.hget(f"{prefix}:latest:line-1", "result"))["image_id"] in keys


def test_sigterm_mid_stream_commits_exactly_what_was_written(broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    topics = Topics(broker, partitions=3)
    produce_fmnist(broker, topics.input, 900, data_dir=FMNIST)
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_MAX_POLL_RECORDS=10, GANOMALY_MAX_BATCH_SIZE=8, GANOMALY_MAX_IN_FLIGHT=40, GANOMALY_RESUME_IN_FLIGHT=10) as w:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and w.logs().count('"batch"') < 10:
            time.sleep(0.05)
        assert w.terminate() == 0  # SIGTERM mid-stream
        assert '"stopped"' in w.logs() and '"drained": true' in w.logs().replace('"drained":true', '"drained": true')
    results = read_topic(broker, topics.results, settle_s=2)
    committed = {p: topics.committed(p) or 0 for p in range(3)}
    written: dict[int, set[int]] = {p: set() for p in range(3)}
    for r in results:
        d = json.loads(r.value)
        written[d["input"]["partition"]].add(d["input"]["offset"])
    assert 0 < sum(committed.values()) < 900, f"not mid-stream: {committed}"
    for p in range(3):
        assert written[p] == set(range(committed[p])), f"partition {p}: committed {committed[p]}, written {sorted(written[p])[-5:]}"


def test_images_the_model_cannot_score_go_to_dead_letters_and_the_partition_moves_on(broker: str, redis_url: str, prefix: str, tiny_model: Path,
                                                                                     tmp_path: Path) -> None:
    # A well-formed artifact whose first convolution overflows float32 on any ink: an all-black
    # image (all zeros in the [0, 1] range) still scores finitely, so warm-up passes, while every
    # garment scores NaN. A NaN compares False with the threshold, so it would pass as normal.
    art = load_artifact(tiny_model)
    with torch.no_grad():
        art.generator.encoder1.features[0].weight.mul_(1e38)
    broken = tmp_path / "overflow"
    save_artifact(broken, art.generator, replace(art.input_spec, value_range=(0.0, 1.0)), art.calibration, score_spec=art.score_spec)
    topics = Topics(broker, partitions=1)
    images, _ = load_split(FMNIST, "t10k")
    black, garments = [], {}
    with ImagePublisher(broker, topics.input) as pub:
        for i in range(6):
            pub.publish(encode_png(np.zeros((28, 28), np.uint8)), key=f"black:{i}")
            black.append(f"black:{i}")
            garments[f"garment:{i}"] = encode_png(images[i])
            pub.publish(garments[f"garment:{i}"], key=f"garment:{i}")
    with WorkerProc(bootstrap=broker, topics=topics, model=broken, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log") as w:
        dead = read_topic(broker, topics.dlq, want=6, timeout_s=60)
        results = read_topic(broker, topics.results, want=6, timeout_s=60)
        assert w.terminate() == 0
        assert '"scoring_failed"' in w.logs()
    assert sorted(json.loads(r.value)["image_id"] for r in results) == black
    assert all(np.isfinite(json.loads(r.value)["score"]) for r in results)
    assert {d.key.decode(): d.value for d in dead} == garments  # original bytes, one dead letter each
    assert {dict(d.headers)["dlq-reason"] for d in dead} == {b"non_finite_score"}
    assert {dict(d.headers)["dlq-model-version"] for d in dead} == {load_artifact(broken).version.encode()}
    assert topics.committed() == 12, "the partition stopped at an image the model could not score"


def test_a_dead_letter_too_large_for_its_topic_goes_without_its_bytes_and_the_partition_moves_on(
        broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path) -> None:
    # The input topic may take larger records than the dead-letter topic (here: the worker's
    # producer takes at most 200 kB). Retrying such a letter forever would stop every partition.
    topics = Topics(broker, partitions=1)
    images, _ = load_split(FMNIST, "t10k")
    junk = np.random.default_rng(0).integers(0, 256, 500_000, dtype=np.uint8).tobytes()  # undecodable, 500 kB
    with ImagePublisher(broker, topics.input) as pub:
        pub.publish(encode_png(images[0]), key="before")
        pub.publish(junk, key="junk", source="line-1")
        pub.publish(encode_png(images[1]), key="after")
    port = free_port()
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_PRODUCER_MAX_REQUEST_BYTES=200_000, GANOMALY_METRICS_PORT=port) as w:
        dead = read_topic(broker, topics.dlq, want=1, timeout_s=60)
        results = read_topic(broker, topics.results, want=2, timeout_s=60)
        assert _metric(port, "ganomaly_dead_letter_values_omitted_total") == 1  # what the alert rule watches
        assert w.terminate() == 0
        assert '"dead_letter_value_omitted"' in w.logs()
    assert sorted(json.loads(r.value)["image_id"] for r in results) == ["after", "before"]
    assert len(dead) == 1 and dead[0].key == b"junk" and dead[0].value == b""
    h = {k: v.decode() for k, v in dead[0].headers}
    assert h["dlq-reason"] == "undecodable" and h["dlq-value-omitted"] == "too_large" and h["source"] == "line-1"
    assert int(h["dlq-value-bytes"]) == len(junk)
    # the letter says where the original is, and its hash checks the copy fetched from there
    c = KafkaConsumer(bootstrap_servers=[broker], enable_auto_commit=False)
    tp = TopicPartition(h["dlq-topic"], int(h["dlq-partition"]))
    c.assign([tp])
    c.seek(tp, int(h["dlq-offset"]))
    original = next(r for recs in c.poll(timeout_ms=10_000).values() for r in recs)
    c.close()
    assert original.value == junk and hashlib.sha256(original.value).hexdigest() == h["dlq-value-sha256"]
    assert topics.committed() == 3, "the partition stopped at the oversized dead letter"
