"""The model watch on its own: a real model store, the real registry pointer and operator thresholds in a real Redis, real models."""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import structlog
from structlog.testing import capture_logs

from ganomaly.devstack import free_port
from ganomaly.registry import ModelStore, Pointer, RedisPointer
from ganomaly.thresholds import OperatorThresholds
from tests.unit.stage_kit import CPU, artifact_dir, in_thread, model, wait_until
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder
from worker.stages.model_watch import ModelWatch, load_serving


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


@contextlib.contextmanager
def _events() -> Iterator[list[dict[str, Any]]]:
    """The worker's log events from INFO up, whatever level an earlier test (a CLI run) left configured."""
    before = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(wrapper_class=before)


def _watch(tmp_path: Path, redis_url: str, prefix: str, *, override: float | None = None
           ) -> tuple[ModelWatch, ModelStore, RedisPointer, OperatorThresholds, WorkerMetrics]:
    """A watch serving a store's version (as the pointer says), with operator thresholds in the same Redis."""
    store = ModelStore(tmp_path / "store")
    first = store.add(artifact_dir(tmp_path / "first", seed=1))
    r = redis.Redis.from_url(redis_url)
    pointer, ops = RedisPointer(r, prefix), OperatorThresholds(r, prefix)
    _point(pointer, store, first)
    serving = load_serving(store.path_of(first), CPU, None, override)
    metrics = WorkerMetrics()
    watch = ModelWatch(pointer, store, models=ModelHolder(serving), device=CPU, amp=None, threshold_override=override, poll_s=0.05,
                       metrics=metrics, health=Health(), stop=threading.Event(), thresholds=ops)
    return watch, store, pointer, ops, metrics


def test_an_operator_threshold_is_served_without_a_reload_and_a_new_version_starts_at_its_own(tmp_path: Path, redis_url: str,
                                                                                              prefix: str) -> None:
    watch, store, pointer, ops, metrics = _watch(tmp_path, redis_url, prefix)
    holder = watch.models
    first = holder.current()
    calibrated = first.artifact.threshold
    lower = (first.artifact.calibration.median + calibrated) / 2
    t = in_thread(watch.run)
    try:
        with _events() as logs:
            ops.set(first.version, lower, by="ann", calibrated=calibrated, note="catch more")
            wait_until(lambda: holder.current().threshold == lower)
            now = holder.current()
            assert now.scorer is first.scorer and now.artifact is first.artifact  # the same model, not reloaded
            assert math.isnan(now.expected_anomaly_rate)  # the artifact keeps no scores to say the rate at another threshold
            assert metrics.registry.get_sample_value("ganomaly_model_info", {"model_version": first.version,
                                                                             "threshold": f"{lower:.6g}"}) == 1
            assert metrics.registry.get_sample_value("ganomaly_model_swaps_total") == 0  # a threshold change is not a model swap

            ops.clear(first.version, by="bob", calibrated=calibrated)
            wait_until(lambda: holder.current().threshold == calibrated)
        changed = [e for e in logs if e["event"] == "threshold_changed"]
        assert [(e["old"], e["new"], e["by"], e["source"]) for e in changed] == [
            (calibrated, lower, "ann", "operator"), (lower, calibrated, "bob", "calibrated")]
        assert changed[0]["note"] == "catch more"

        newer = store.add(artifact_dir(tmp_path / "newer", seed=2))
        newer_calibrated = store.load(newer).threshold
        ops.set(newer, newer_calibrated * 3, by="ann", calibrated=newer_calibrated)  # set before it serves
        _point(pointer, store, newer)
        wait_until(lambda: holder.current().version == newer)
        assert holder.current().threshold == newer_calibrated * 3  # from its first batch on
        ops.set(first.version, 0.0, by="ann", calibrated=calibrated)  # another version's threshold changes nothing here
        time.sleep(0.3)
        assert holder.current().threshold == newer_calibrated * 3
    finally:
        watch.stop.set()
        t.join(timeout=5)


def test_a_threshold_flag_wins_and_the_ignored_operator_threshold_is_logged_once(tmp_path: Path, redis_url: str, prefix: str) -> None:
    watch, _, _, ops, _ = _watch(tmp_path, redis_url, prefix, override=0.123)
    version = watch.models.current().version
    ops.set(version, 0.5, by="ann", calibrated=1.0)
    with _events() as logs:
        for _ in range(3):
            watch.check()
    assert watch.models.current().threshold == 0.123
    assert [(e["event"], e["version"], e["operator"], e["served"]) for e in logs] == [("operator_threshold_ignored", version, 0.5, 0.123)]


def test_an_unreachable_redis_keeps_the_threshold_served(tmp_path: Path, redis_url: str, prefix: str) -> None:
    watch, _, _, ops, _ = _watch(tmp_path, redis_url, prefix)
    version = watch.models.current().version
    ops.set(version, 0.7, by="ann", calibrated=1.0)
    watch.check()
    assert watch.models.current().threshold == 0.7
    watch.thresholds = OperatorThresholds(redis.Redis(port=free_port(), socket_connect_timeout=0.5), prefix)  # nothing listens there
    with _events() as logs:
        watch.follow_threshold()
    assert watch.models.current().threshold == 0.7
    assert [e["event"] for e in logs] == ["operator_threshold_unreadable"]


def test_an_operator_threshold_at_or_below_the_normal_median_is_refused_once(tmp_path: Path, redis_url: str, prefix: str) -> None:
    watch, _, _, ops, _ = _watch(tmp_path, redis_url, prefix)
    model = watch.models.current()
    median = model.artifact.calibration.median
    ops.set(model.version, median, by="ann", calibrated=model.artifact.threshold)  # no median given: the library does not check
    with _events() as logs:
        for _ in range(3):
            watch.check()
    assert watch.models.current().threshold == model.artifact.threshold  # the normalised score would have no scale
    assert [(e["event"], e["operator"], e["by"]) for e in logs] == [("operator_threshold_refused", median, "ann")]
