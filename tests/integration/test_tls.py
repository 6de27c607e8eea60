"""TLS for real: a broker and Redis that speak only TLS, with a CA and server certificate made here.

Tansu listens in plaintext on one port and advertises another, where a TLS-terminating proxy
(tests/tls.py) sits: every client connection, bootstrap and partition leader alike, is TLS.
Redis is a private ``redis-server --tls-port``. With the CA (``--ssl-cafile``, ``--redis-ca-file``)
the worker scores end to end and ``ganomaly replay`` reads the topic; without it each says so at
once, in the form it uses for an unreachable broker (tests/integration/test_unreachable.py): the
worker's JSON ``startup_failed`` line and exit 2, a command's one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ganomaly.connections.kafka import KafkaSettings
from ganomaly.connections.redis import RedisSettings, make_redis
from ganomaly.devstack import free_port, port_open, start_broker, stop
from tests.conftest import FMNIST
from tests.integration.helpers import ROOT, Topics, WorkerProc, produce_fmnist, read_topic, results_by_id
from tests.tls import TlsFiles, TlsProxy, make_tls_files

pytestmark = pytest.mark.integration

# importing torch and loading a model on a loaded 2-core box
STARTUP_ALLOWANCE_S = 40.0


def _wait_port(proc: subprocess.Popen, port: int, what: str) -> None:
    deadline = time.monotonic() + 15
    while not port_open("127.0.0.1", port):
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{what} does not listen on {port}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_broker(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    inner, outer = free_port(), free_port()
    proc, advertised = start_broker(inner, advertised_port=outer, log_path=tmp_path_factory.mktemp("tansu-tls") / "tansu.log")
    try:
        with TlsProxy(tls, outer, inner):
            yield advertised
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def tls_redis(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (apt-get install -y redis-server)"
    port = free_port()
    proc = subprocess.Popen([exe, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key),
                             "--tls-ca-cert-file", str(tls.ca), "--tls-auth-clients", "no", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path_factory.mktemp("redis-tls"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_port(proc, port, "redis-server --tls-port")
        yield f"rediss://127.0.0.1:{port}/0"
    finally:
        stop(proc)


def _kafka(bootstrap: str, tls: TlsFiles) -> KafkaSettings:
    return KafkaSettings.model_validate({"bootstrap_servers": bootstrap, "security_protocol": "SSL", "ssl_cafile": tls.ca})


def _clean_env(**extra: Any) -> dict[str, str]:
    """This process's environment without GANOMALY_ settings a developer may have exported."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GANOMALY_")}, "PYTHONPATH": str(ROOT),
            **{k: str(v) for k, v in extra.items()}}


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_worker_scores_end_to_end_over_tls_to_the_broker_and_redis(tls_broker: str, tls_redis: str, tls: TlsFiles, tiny_model: Path,
                                                                     prefix: str, tmp_path: Path) -> None:
    kafka = _kafka(tls_broker, tls)
    topics = Topics(kafka, partitions=2)
    labels = produce_fmnist(kafka, topics.input, 40, data_dir=FMNIST)
    with WorkerProc(bootstrap=tls_broker, topics=topics, model=tiny_model, redis_url=tls_redis, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_SECURITY_PROTOCOL="SSL", GANOMALY_SSL_CAFILE=tls.ca, GANOMALY_REDIS_CA_FILE=tls.ca) as w:
        results = results_by_id(read_topic(kafka, topics.results, want=40, timeout_s=120))
        assert len(results) == 40, w.logs()[-3000:]
        assert {r[0]["image_id"] for r in results.values()} == set(labels)
        rc = make_redis(RedisSettings.model_validate({"redis_url": tls_redis, "redis_ca_file": tls.ca}))
        assert len(list(rc.scan_iter(f"{prefix}:result:*", count=1000))) == 40
        assert w.terminate() == 0, w.logs()[-3000:]


def test_a_worker_without_the_ca_stops_at_once_with_one_json_reason(tls_broker: str, tls_redis: str, tls: TlsFiles, tiny_model: Path,
                                                                    prefix: str, tmp_path: Path) -> None:
    topics = Topics(_kafka(tls_broker, tls), partitions=1)
    bound_s = 60  # a certificate that does not verify is said at once, not after the bound
    t0 = time.monotonic()
    with WorkerProc(bootstrap=tls_broker, topics=topics, model=tiny_model, redis_url=tls_redis, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_SECURITY_PROTOCOL="SSL", GANOMALY_CONNECT_TIMEOUT_S=bound_s) as w:
        rc = w.proc.wait(STARTUP_ALLOWANCE_S)
        assert rc == 2, w.logs()[-3000:]
        last = _json_lines(w.logs())[-1]
    assert time.monotonic() - t0 < bound_s
    assert last["event"] == "startup_failed" and last["level"] == "error", last
    assert last["error"].startswith(f"the Kafka broker at {tls_broker} refused the connection: TLS: the broker's certificate did not verify ("), last
    assert "give the CA that signed it with --ssl-cafile" in last["error"]


def test_a_worker_without_the_redis_ca_stops_with_one_json_reason(tls_broker: str, tls_redis: str, tls: TlsFiles, tiny_model: Path,
                                                                  prefix: str, tmp_path: Path) -> None:
    topics = Topics(_kafka(tls_broker, tls), partitions=1)
    with WorkerProc(bootstrap=tls_broker, topics=topics, model=tiny_model, redis_url=tls_redis, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_SECURITY_PROTOCOL="SSL", GANOMALY_SSL_CAFILE=tls.ca, GANOMALY_CONNECT_TIMEOUT_S=60) as w:
        assert w.proc.wait(STARTUP_ALLOWANCE_S) == 2, w.logs()[-3000:]
        last = _json_lines(w.logs())[-1]
    where = tls_redis.removeprefix("rediss://").removesuffix("/0")
    assert last["event"] == "startup_failed" and last["error"] == (
        f"Redis at {where} refused the connection: TLS: Redis's certificate did not verify; give the CA that signed it with --redis-ca-file")


def _ganomaly(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ganomaly", *args], cwd=ROOT, env=_clean_env(), capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def test_replay_reads_over_tls_with_the_ca_and_says_why_not_without(tls_broker: str, tls: TlsFiles, tiny_model: Path, tmp_path: Path) -> None:
    kafka = _kafka(tls_broker, tls)
    topics = Topics(kafka, partitions=2)
    produce_fmnist(kafka, topics.input, 30, data_dir=FMNIST)
    base = ["replay", "--bootstrap-servers", tls_broker, "--security-protocol", "SSL", "--topic", topics.input, "--model", str(tiny_model),
            "--device", "cpu", "--idle-ms", "5000"]
    ok = _ganomaly(*base, "--ssl-cafile", str(tls.ca), "--report", str(tmp_path / "r.json"))
    assert ok.returncode == 0, ok.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["complete"] and report["counts"]["records"] == 30, report["counts"]

    refused = _ganomaly(*base, "--connect-timeout-s", "30")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith(
        f"error: the Kafka broker at {tls_broker} refused the connection: TLS: the broker's certificate did not verify ("), refused.stderr
    assert "--ssl-cafile" in refused.stderr and refused.stdout == ""

    wrong = _ganomaly(*base, "--ssl-cafile", str(tmp_path / "missing.pem"))
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert wrong.stderr.startswith("error: invalid settings: --ssl-cafile (env GANOMALY_SSL_CAFILE): Path does not point to a file")


def test_alerts_read_redis_over_tls_with_the_ca_and_say_why_not_without(tls_redis: str, tls: TlsFiles) -> None:
    ok = _ganomaly("alerts", "--redis-url", tls_redis, "--redis-ca-file", str(tls.ca), "--redis-prefix", "none-here", timeout_s=60)
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    refused = _ganomaly("alerts", "--redis-url", tls_redis, "--connect-timeout-s", "30", timeout_s=60)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: Redis at 127.0.0.1:") and "--redis-ca-file" in refused.stderr, refused.stderr
