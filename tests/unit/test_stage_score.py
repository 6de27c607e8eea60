"""The score stage on its own: real queues and real models; results, shadow results, swaps and failures."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ganomaly.contracts.headers import parse_traceparent
from ganomaly.data.images import DecodeLimits, InputSpec, decode_pixels, pixels_to_input
from tests.unit.stage_kit import CPU, GREY, grey_png, in_thread, model, record, wait_until
from worker.conversions import ChannelConversions
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder, ServingModel
from worker.offsets import OffsetTracker
from worker.sinks.outputs import OutputBatch
from worker.stages.decode import Decoder
from worker.stages.flow import Decoded, Lifecycle
from worker.stages.score import ScoreStage

TRACE = "0af7651916cd43dd8448eb211c80319c"


class Rig:
    def __init__(self, serving: ServingModel, shadow: ServingModel | None = None) -> None:
        self.ready_q: queue.Queue[list[Decoded]] = queue.Queue()
        self.out_q: queue.Queue[Any] = queue.Queue(maxsize=8)
        self.metrics, self.health = WorkerMetrics(), Health()
        self.life = Lifecycle(threading.Event(), OffsetTracker())
        self.models = ModelHolder(serving)
        self.stage = ScoreStage(self.ready_q, self.out_q, models=self.models, shadow=shadow,
                                decoder=Decoder(DecodeLimits(), ChannelConversions(self.metrics.converted)), device=CPU, max_batch_size=16,
                                max_wait_s=0.05, worker_id="w-7", metrics=self.metrics, health=self.health, life=self.life)


def _items(n: int, spec: InputSpec = GREY, first: int = 0) -> list[Decoded]:
    out = []
    for i in range(first, first + n):
        headers = [("source", f"cam-{i % 2}".encode()), ("label", b"normal"), ("trace-id", TRACE.encode())] if i % 3 else []
        rec = record(i, grey_png(i), key=f"img-{i}".encode() if i % 2 else None, headers=headers, timestamp=1_700_000_000_000 + i)
        out.append(Decoded(rec, decode_pixels(rec.value, spec), 0.0))
    return out


def _scores(m: ServingModel, items: list[Decoded]) -> np.ndarray:
    x = pixels_to_input(torch.from_numpy(np.stack([d.x for d in items])), m.artifact.input_spec.value_range)
    return m.scorer.score(x).score.numpy().astype(np.float64)


@pytest.fixture
def serving(tmp_path: Path) -> ServingModel:
    return model(tmp_path / "a")


def test_a_batch_becomes_results_of_the_model_in_service(serving: ServingModel) -> None:
    items = _items(6)
    want = _scores(serving, items)
    serving = dataclasses.replace(serving, threshold=float(np.median(want)))  # some anomalies, some not
    rig = Rig(serving)
    rig.ready_q.put(items[:4])  # two chunks queued before the stage starts: one batch
    rig.ready_q.put(items[4:])
    t = in_thread(rig.stage.run)
    out: OutputBatch = rig.out_q.get(timeout=10)
    rig.life.abort.set()
    t.join(timeout=5)

    assert [r.input.offset for r in out.results] == list(range(6)) and not out.dead and not out.shadow
    np.testing.assert_allclose([r.score for r in out.results], want, rtol=1e-5)
    cal = serving.artifact.calibration
    for r, d in zip(out.results, items, strict=True):
        h = dict(d.rec.headers)
        assert r.is_anomaly == (r.score > serving.threshold) and r.threshold == serving.threshold
        assert r.score_normalised == pytest.approx(float(cal.normalise(r.score, serving.threshold)))
        assert (r.model_version, r.worker, r.record_timestamp_ms) == (serving.version, "w-7", d.rec.timestamp)
        assert r.image_id == (d.rec.key.decode() if d.rec.key else None)
        assert r.source == (h["source"].decode() if h else None) and r.label == ("normal" if h else None)
        tp = parse_traceparent(r.traceparent)
        assert tp is not None and (tp.trace_id == TRACE) == bool(h)  # the input's trace continues
    assert {r.is_anomaly for r in out.results} == {True, False}
    assert out.keys == [(r.image_id or r.source or r.id).encode() for r in out.results]
    # Where each result's latency went, parallel to the results: its poll time, then its one batch's scoring.
    assert [polled for polled, _, _ in out.stages] == [d.polled_at for d in items]
    ((start, end),) = {(start, end) for _, start, end in out.stages}
    assert 0 < start <= end <= time.monotonic()
    assert rig.metrics.registry.get_sample_value("ganomaly_batch_size_count") == 1
    assert rig.metrics.registry.get_sample_value("ganomaly_queue_wait_seconds_count") == 6


def test_a_shadow_model_scores_the_same_batch_for_its_own_topic(serving: ServingModel, tmp_path: Path) -> None:
    shadow = model(tmp_path / "shadow", seed=1)
    items = _items(4)
    rig = Rig(serving, shadow)
    rig.stage.score_batch(items)
    out = rig.out_q.get_nowait()
    assert [r.model_version for r in out.results] == [serving.version] * 4
    assert [r.model_version for r in out.shadow] == [shadow.version] * 4 and shadow.version != serving.version
    np.testing.assert_allclose([r.score for r in out.shadow], _scores(shadow, items), rtol=1e-5)
    assert len(out.keys) == len(out.results)  # shadow results have no results-topic keys


def test_a_swap_lands_between_batches(serving: ServingModel, tmp_path: Path) -> None:
    rig = Rig(serving)
    rig.stage.score_batch(_items(3))
    newer = model(tmp_path / "b", seed=2)
    rig.models.swap(newer)
    rig.stage.score_batch(_items(3, first=3))
    first, second = rig.out_q.get_nowait(), rig.out_q.get_nowait()
    assert {r.model_version for r in first.results} == {serving.version}
    assert {r.model_version for r in second.results} == {newer.version}


def test_images_a_broken_model_cannot_score_become_dead_letters_and_a_broken_shadow_costs_nothing(serving: ServingModel,
                                                                                                  tmp_path: Path) -> None:
    broken = model(tmp_path / "broken", seed=3)
    with torch.no_grad():
        for p in broken.scorer.generator.parameters():
            p.fill_(float("nan"))
    rig = Rig(broken)
    rig.stage.score_batch(_items(3))
    out = rig.out_q.get_nowait()
    assert not out.results and [(d.offset, d.reason, d.model_version) for d in out.dead] == [(i, "non_finite_score", broken.version)
                                                                                           for i in range(3)]
    assert not out.stages
    assert rig.metrics.registry.get_sample_value("ganomaly_batch_size_count") == 0

    rig = Rig(serving, shadow=broken)
    rig.stage.score_batch(_items(3))
    out = rig.out_q.get_nowait()
    assert len(out.results) == 3 and not out.dead and not out.shadow


def test_the_stage_ends_once_polling_stopped_and_nothing_is_in_flight(serving: ServingModel) -> None:
    rig = Rig(serving)
    t = in_thread(rig.stage.run)
    wait_until(lambda: "score" in rig.health.live()[1])
    rig.life.stop.set()
    t.join(timeout=5)
    assert not t.is_alive()
