"""The decode stage on its own: real queues, a real offset tracker and model, real decoding (threads and processes)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import TopicPartition

from ganomaly.data.images import DecodeLimits, decode_image, decode_many_pixels, pixels_to_input
from tests.unit.stage_kit import colour_png, grey_png, in_thread, model, record, wait_until
from worker.conversions import ChannelConversions
from worker.decode_pool import DecodePool
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder
from worker.offsets import OffsetTracker
from worker.sinks.outputs import DeadLetter
from worker.stages.decode import Decoder, DecodeStage
from worker.stages.flow import Decoded, Lifecycle


class Rig:
    def __init__(self, tmp_path: Path, *, limits: DecodeLimits | None = None, pool: DecodePool | None = None, out_size: int = 8) -> None:
        self.model = model(tmp_path / "m")
        self.raw_q: queue.Queue[Any] = queue.Queue()
        self.ready_q: queue.Queue[Decoded] = queue.Queue()
        self.out_q: queue.Queue[Any] = queue.Queue(maxsize=out_size)
        self.tracker = OffsetTracker()
        self.metrics = WorkerMetrics()
        self.health = Health()
        self.life = Lifecycle(threading.Event(), self.tracker)
        self.limits = limits = limits or DecodeLimits()
        self.stage = DecodeStage(self.raw_q, self.ready_q, self.out_q, models=ModelHolder(self.model),
                                 decoder=Decoder(limits, ChannelConversions(self.metrics.converted)), pool=pool, chunk=4, health=self.health,
                                 life=self.life)

    def feed(self, *recs: Any, tracked: bool = True) -> None:
        for r in recs:
            if tracked:
                self.tracker.add(TopicPartition(r.topic, r.partition), r.offset)
            self.raw_q.put(r)


def _run_until_handled(rig: Rig, n: int) -> None:
    t = in_thread(rig.stage.run)
    wait_until(lambda: rig.ready_q.qsize() + rig.out_q.qsize() >= n and rig.raw_q.empty())
    rig.life.abort.set()  # records stay in flight (no sink here): only abort ends the stage
    t.join(timeout=5)
    assert not t.is_alive()


@pytest.mark.parametrize("processes", [0, 1])
def test_images_go_to_the_ready_queue_bad_input_to_the_sink_and_revoked_records_nowhere(tmp_path: Path, processes: int) -> None:
    pool = DecodePool(processes, fn=decode_many_pixels) if processes else None
    try:
        rig = Rig(tmp_path, pool=pool)
        good = record(0, grey_png(1), headers=[("source", b"cam-1")])
        bad = record(1, b"not an image", key=b"k1", headers=[("source", b"cam-1"), ("empty", None)])  # type: ignore[list-item]
        revoked = record(0, grey_png(2), partition=5)
        rig.feed(good, bad)
        rig.feed(revoked, tracked=False)  # its partition was revoked after polling: the new owner has it
        _run_until_handled(rig, 2)
    finally:
        if pool is not None:
            pool.close()
    [[d]] = list(rig.ready_q.queue)  # one chunk of one
    spec = rig.model.artifact.input_spec
    assert d.rec is good and d.x.dtype == np.uint8 and np.array_equal(pixels_to_input(d.x, spec.value_range), decode_image(good.value, spec))
    [dead] = list(rig.out_q.queue)
    assert isinstance(dead, DeadLetter)
    assert (dead.topic, dead.partition, dead.offset, dead.key, dead.value) == ("in", 0, 1, b"k1", b"not an image")
    assert dead.reason == "undecodable" and dead.model_version == rig.model.version
    assert dead.headers == [("source", b"cam-1")]  # headers without a value are not carried
    assert "decode" in rig.health.live()[1]


def test_a_colour_image_for_a_grey_model_is_converted_and_counted(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits=DecodeLimits(channel_policy="convert"))
    rig.feed(record(0, colour_png(3), headers=[("source", b"cam-c")]))
    _run_until_handled(rig, 1)
    [[d]] = list(rig.ready_q.queue)
    assert d.x.shape == (1, 32, 32)
    assert rig.metrics.registry.get_sample_value("ganomaly_images_converted_total", {"from_channels": "3", "to_channels": "1"}) == 1


def test_strict_channels_dead_letter_a_colour_image(tmp_path: Path) -> None:
    rig = Rig(tmp_path, limits=DecodeLimits(channel_policy="strict"))
    rig.feed(record(0, colour_png(3)))
    _run_until_handled(rig, 1)
    [dead] = list(rig.out_q.queue)
    assert dead.reason == "channels" and rig.ready_q.empty()


def test_the_stage_ends_once_polling_stopped_and_nothing_is_in_flight(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    t = in_thread(rig.stage.run)
    rig.life.stop.set()
    t.join(timeout=5)
    assert not t.is_alive()


def test_a_full_sink_queue_keeps_the_stage_alive_until_abort(tmp_path: Path) -> None:
    rig = Rig(tmp_path, out_size=1)
    rig.out_q.put("placeholder")  # the sink is stuck
    rig.feed(record(0, b"junk"))
    t = in_thread(rig.stage.run)
    wait_until(lambda: rig.raw_q.empty())
    ages = []
    for _ in range(3):  # still waiting, and reporting while it waits
        rig.health.beat("other")
        ages.append(rig.health.live()[1]["decode"])
        threading.Event().wait(0.25)
    assert t.is_alive() and max(ages) < 0.5
    rig.life.abort.set()
    t.join(timeout=5)
    assert not t.is_alive() and list(rig.out_q.queue) == ["placeholder"]
