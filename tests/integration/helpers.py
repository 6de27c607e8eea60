"""Helpers for tests against the real broker and Redis: topics, worker processes, reading topics back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Self

import redis
from kafka import TopicPartition

from ganomaly.connections.kafka import KafkaSettings, as_kafka, ensure_topics, make_consumer
from ganomaly.data.idx import load_split
from ganomaly.devstack import free_port, stop
from ganomaly.registry import ModelStore, Pointer, RedisPointer
from producers import ImagePublisher, encode_png
from tests.dashboard import prometheus_tool

ROOT = Path(__file__).resolve().parents[2]


class Topics:
    def __init__(self, bootstrap: str | KafkaSettings, partitions: int = 4) -> None:
        tag = uuid.uuid4().hex[:8]
        self.input, self.results, self.alerts, self.dlq = (f"{n}-{tag}" for n in ("images", "results", "alerts", "dlq"))
        self.group = f"g-{tag}"
        self.kafka = as_kafka(bootstrap)
        self.bootstrap = self.kafka.bootstrap_servers
        ensure_topics(self.kafka.config(), [self.input, self.results, self.alerts, self.dlq], partitions)

    def committed(self, partition: int = 0) -> int | None:
        """The group's committed offset for an input partition (an offset fetch: never joins the group)."""
        c = make_consumer(self.kafka.config(), group_id=self.group)
        try:
            return c.committed(TopicPartition(self.input, partition))
        finally:
            c.close()

    def env(self) -> dict[str, str]:
        return {"GANOMALY_INPUT_TOPIC": self.input, "GANOMALY_RESULTS_TOPIC": self.results, "GANOMALY_ALERTS_TOPIC": self.alerts,
                "GANOMALY_DLQ_TOPIC": self.dlq, "GANOMALY_GROUP_ID": self.group}


def produce_fmnist(bootstrap: str | KafkaSettings, topic: str, n: int, *, start: int = 0, data_dir: Path, klass: int = 0) -> dict[str, str]:
    """Publish test-split images as PNG (key t10k:i, label per leave-one-out class ``klass``). Returns key -> label."""
    images, labels = load_split(data_dir, "t10k")
    out = {}
    with ImagePublisher(bootstrap, topic) as pub:
        for i in range(start, start + n):
            label = "anomaly" if labels[i] == klass else "normal"
            key = f"t10k:{i}"
            pub.publish(encode_png(images[i]), key=key, source=f"cam-{i % 3}", label=label, content_type="image/png")
            out[key] = label
    assert pub.stats.failed == 0, pub.stats.errors
    return out


def read_topic(bootstrap: str | KafkaSettings, topic: str, *, want: int | None = None, timeout_s: float = 60.0, settle_s: float = 1.5) -> list[Any]:
    """Everything in ``topic`` (manual assignment, no group): until ``want`` records, or nothing new for ``settle_s``."""
    c = make_consumer(as_kafka(bootstrap).config(), consumer_timeout_ms=500)
    parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in parts]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        batch = c.poll(timeout_ms=300)
        got = [r for recs in batch.values() for r in recs]
        if got:
            out += got
            last_new = time.monotonic()
        if want is not None and len(out) >= want and time.monotonic() - last_new > 0.3:
            break
        if want is None and time.monotonic() - last_new > settle_s:
            break
    c.close()
    return out


def results_by_id(records: list[Any]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        d = json.loads(r.value)
        out.setdefault(d["id"], []).append(d)
    return out


class WorkerProc:
    """``ganomaly worker`` as a real subprocess (so SIGKILL/SIGTERM are real)."""

    def __init__(self, *, bootstrap: str, topics: Topics, model: Path, redis_url: str, prefix: str, log: Path, **env: Any) -> None:
        self.log_path = log
        full = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "GANOMALY_BOOTSTRAP_SERVERS": bootstrap,
            "GANOMALY_MODEL": str(model),
            "GANOMALY_REDIS_URL": redis_url,
            "GANOMALY_REDIS_PREFIX": prefix,
            "GANOMALY_SESSION_TIMEOUT_MS": "4000",
            "GANOMALY_HEARTBEAT_INTERVAL_MS": "500",
            "GANOMALY_METRICS_PORT": "0",
            "GANOMALY_DEVICE": "cpu",
            "GANOMALY_RETRY_BACKOFF_MAX_S": "0.5",
            **topics.env(),
            **{k: str(v) for k, v in env.items()},
        }
        self.proc = subprocess.Popen([sys.executable, "-m", "ganomaly", "worker"], cwd=ROOT, env=full,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.logs():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode} before '{text}':\n{self.logs()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"no '{text}' within {timeout_s}s:\n{self.logs()[-3000:]}")

    def terminate(self, timeout_s: float = 40.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()


def produce_class(bootstrap: str, topic: str, klass: int, n: int, *, skip: int = 0, data_dir: Path, label: str = "normal",
                  split: str = "t10k") -> list[str]:
    """Publish ``n`` images of one class (after skipping ``skip`` of them). Returns their keys."""
    images, labels = load_split(data_dir, split)
    idx = [i for i in range(len(labels)) if labels[i] == klass][skip : skip + n]
    keys = []
    with ImagePublisher(bootstrap, topic) as pub:
        for i in idx:
            key = f"{split}:{i}"
            pub.publish(encode_png(images[i]), key=key, source=f"class-{klass}", label=label)
            keys.append(key)
    assert pub.stats.failed == 0
    return keys


class PrometheusProc:
    """A real Prometheus (Debian's, unpacked by scripts/setup.sh) scraping one worker every second.

    The scrape adds ``namespace`` and ``pod`` target labels, as the ServiceMonitor's does, and
    loads ``rule_files`` so that their rules are evaluated for real.
    """

    def __init__(self, tmp: Path, worker_port: int, *, rule_files: tuple[Path, ...] = ()) -> None:
        exe = prometheus_tool("prometheus")
        self.port = free_port()
        cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
               "rule_files": [str(p) for p in rule_files],
               "scrape_configs": [{"job_name": "ganomaly-worker",
                                   "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"],
                                                       "labels": {"namespace": "ganomaly", "pod": "worker-0"}}]}]}
        (tmp / "prometheus.yml").write_text(json.dumps(cfg))  # JSON is YAML
        self.log_path = tmp / "prometheus.log"
        self.proc = subprocess.Popen([exe, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.2)
        self.__exit__()  # not entered as a context yet: stop it here
        raise AssertionError(f"prometheus did not become ready:\n{self.log_path.read_text()[-3000:]}")

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=10).read())
        except urllib.error.HTTPError as e:  # a bad query is a 400 with Prometheus's reason in the body
            body = json.loads(e.read())
        assert body["status"] == "success", f"{params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector (a list of {metric, value})."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return data["result"]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc, timeout_s=10)


def serving_registry(tmp_path: Path, redis_url: str, prefix: str, champion: Path) -> tuple[ModelStore, RedisPointer, str]:
    """A model store under ``tmp_path/store`` holding ``champion``, and the registry pointer (Redis) at it: what workers serve."""
    store = ModelStore(tmp_path / "store")
    version = store.add(champion)
    ptr = RedisPointer(redis.Redis.from_url(redis_url), prefix)
    assert ptr.set(Pointer(version, str(store.path_of(version)), "test", int(time.time() * 1000)), expect=None)
    return store, ptr, version
