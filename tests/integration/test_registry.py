"""The model registry against the real Redis, and shadow scoring in a real worker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from ganomaly.artifact import read_manifest
from ganomaly.cli.main import main
from ganomaly.connections.kafka import ensure_topics
from ganomaly.registry import Pointer, RedisPointer
from tests.conftest import FMNIST
from tests.integration.helpers import Topics, WorkerProc, produce_fmnist, read_topic

pytestmark = pytest.mark.integration


def test_models_cli_promote_list_rollback(tiny_model: Path, trouser_model: Path, redis_url: str, prefix: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    common = ["--model-store", str(store), "--redis-url", redis_url, "--redis-prefix", prefix]
    v1, v2 = read_manifest(tiny_model)["version"], read_manifest(trouser_model)["version"]
    for art in (tiny_model, trouser_model):
        assert main(["models", "add", "--artifact", str(art), *common]) == 0
    assert main(["models", "promote", v1, *common]) == 0
    assert main(["models", "promote", v2, *common]) == 0
    capsys.readouterr()
    assert main(["models", "list", *common]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["current"] == v2 and {r["version"] for r in listing["versions"]} == {v1, v2}
    assert main(["models", "rollback", *common]) == 0
    ptr = RedisPointer(redis.Redis.from_url(redis_url), prefix)
    assert ptr.get().version == v1  # type: ignore[union-attr]
    assert main(["models", "promote", "m-doesnotexist", *common]) == 2  # never point workers at nothing
    assert ptr.get().version == v1  # type: ignore[union-attr]


def test_pointer_compare_and_set(redis_url: str, prefix: str) -> None:
    ptr = RedisPointer(redis.Redis.from_url(redis_url), prefix)
    now = int(time.time() * 1000)
    assert ptr.set(Pointer("m-a", "/a", "t", now), expect=None)
    assert not ptr.set(Pointer("m-b", "/b", "t", now), expect=None)  # someone already set it
    assert ptr.set(Pointer("m-b", "/b", "t", now), expect="m-a")
    assert not ptr.set(Pointer("m-c", "/c", "t", now), expect="m-a")  # stale expectation: not overwritten
    assert ptr.get().version == "m-b" and ptr.previous().version == "m-a"  # type: ignore[union-attr]


def test_shadow_model_scores_into_its_own_topic_only(broker: str, redis_url: str, prefix: str, tiny_model: Path, trouser_model: Path,
                                                     tmp_path: Path) -> None:
    topics = Topics(broker)
    shadow = f"shadow-{topics.group}"
    ensure_topics({"bootstrap_servers": [broker]}, [shadow], 4)
    sent = produce_fmnist(broker, topics.input, 120, data_dir=FMNIST)
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                    GANOMALY_SHADOW_MODEL=trouser_model, GANOMALY_SHADOW_TOPIC=shadow) as w:
        results = read_topic(broker, topics.results, want=len(sent), timeout_s=60)
        shadowed = read_topic(broker, shadow, want=len(sent), timeout_s=30)
        assert w.terminate() == 0
    main_v, shadow_v = read_manifest(tiny_model)["version"], read_manifest(trouser_model)["version"]
    assert {json.loads(r.value)["model_version"] for r in results} == {main_v}
    assert {json.loads(r.value)["model_version"] for r in shadowed} == {shadow_v}
    assert sorted(json.loads(r.value)["id"] for r in shadowed) == sorted(json.loads(r.value)["id"] for r in results)
    # Alerts and Redis come from the champion only.
    alerts = read_topic(broker, topics.alerts, settle_s=1.0)
    assert all(json.loads(a.value)["result"]["model_version"] == main_v for a in alerts)
    stream = redis.Redis.from_url(redis_url).xrange(f"{prefix}:alerts")
    assert len(stream) == len(alerts)
