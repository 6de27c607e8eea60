"""The model watch on its own: a real model store, the real registry pointer in a real Redis, real models."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from ganomaly.registry import ModelStore, Pointer, RedisPointer
from tests.unit.stage_kit import CPU, artifact_dir, in_thread, model, wait_until
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder
from worker.stages.model_watch import ModelWatch


def _point(pointer: RedisPointer, store: ModelStore, version: str) -> None:
    pointer.set(Pointer(version=version, path=str(store.path_of(version)), by="test", at_ms=int(time.time() * 1000)))


def test_a_promoted_version_is_swapped_in_and_a_broken_one_refused_once(tmp_path: Path, redis_url: str, prefix: str) -> None:
    store = ModelStore(tmp_path / "store")
    first = model(tmp_path / "first")
    newer = store.add(artifact_dir(tmp_path / "newer", seed=5))
    pointer = RedisPointer(redis.Redis.from_url(redis_url), prefix)
    holder, metrics, health, stop = ModelHolder(first), WorkerMetrics(), Health(), threading.Event()
    watch = ModelWatch(pointer, store, models=holder, device=CPU, amp=None, threshold_override=None, poll_s=0.05, metrics=metrics,
                       health=health, stop=stop)
    t = in_thread(watch.run)
    try:
        _point(pointer, store, newer)
        wait_until(lambda: holder.current().version == newer)
        assert metrics.registry.get_sample_value("ganomaly_model_swaps_total") == 1
        assert metrics.registry.get_sample_value("ganomaly_model_info", {"model_version": newer,
                                                                         "threshold": f"{holder.current().threshold:.6g}"}) == 1

        broken = store.path_of("m-broken")  # in the store, but its weights are not what its manifest says
        artifact_dir(broken, seed=6)
        (broken / "model.safetensors").write_bytes(b"not the weights")
        _point(pointer, store, "m-broken")
        wait_until(lambda: metrics.registry.get_sample_value("ganomaly_model_refused_total") == 1)
        time.sleep(0.3)  # several more polls: refused once, not reloaded on every poll
        assert metrics.registry.get_sample_value("ganomaly_model_refused_total") == 1
        assert holder.current().version == newer and watch.refused_version == "m-broken"
        assert "models" in health.live()[1]
    finally:
        stop.set()
        t.join(timeout=5)
    assert not t.is_alive()


def test_without_a_model_store_there_is_nothing_to_watch(tmp_path: Path) -> None:
    watch = ModelWatch(None, None, models=ModelHolder(model(tmp_path / "m")), device=CPU, amp=None, threshold_override=None, poll_s=0.05,
                       metrics=WorkerMetrics(), health=Health(), stop=threading.Event())
    t = in_thread(watch.run)
    t.join(timeout=2)
    assert not t.is_alive()
