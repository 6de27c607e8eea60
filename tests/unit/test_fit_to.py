"""Images decoded just before a hot swap to a model of another input shape are decoded again for it (the score stage's fit_to)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganomaly.data.images import DecodeLimits, InputSpec, decode_image, decode_pixels, pixels_to_input
from tests.unit.stage_kit import CPU, colour_png, grey_png, in_thread, model, record, wait_until
from worker.conversions import ChannelConversions
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder
from worker.offsets import OffsetTracker
from worker.sinks.outputs import DeadLetter
from worker.stages.decode import Decoder
from worker.stages.flow import Decoded, Lifecycle
from worker.stages.score import ScoreStage


def test_items_of_the_old_shape_are_redecoded_and_those_the_new_spec_refuses_become_dead_letters(tmp_path: Path) -> None:
    old, new = InputSpec(isize=32, channels=1), InputSpec(isize=64, channels=3)
    limits = DecodeLimits(channel_policy="strict")  # a grey image is refused by a colour model
    grey, colour = grey_png(0), colour_png(0)
    recs = [record(i, v) for i, v in enumerate([colour, grey])]
    items = [Decoded(r, decode_pixels(r.value, old, DecodeLimits()), 1.5) for r in recs]
    new_model = model(tmp_path / "new", new)
    metrics, health = WorkerMetrics(), Health()
    out_q: queue.Queue[Any] = queue.Queue(maxsize=1)
    out_q.put("placeholder")  # the sink is busy: the dead letter waits, and the wait is the score stage's
    stage = ScoreStage(queue.Queue(), out_q, models=ModelHolder(model(tmp_path / "old", old)), shadow=None,
                       decoder=Decoder(limits, ChannelConversions(metrics.converted)), device=CPU, max_batch_size=8, max_wait_s=0.01,
                       worker_id="w", metrics=metrics, health=health, life=Lifecycle(threading.Event(), OffsetTracker()))

    kept: list[Decoded] = []
    t = in_thread(lambda: kept.extend(stage.fit_to(new_model, items)))
    wait_until(lambda: "score" in health.live()[1])
    assert out_q.get() == "placeholder"
    t.join(timeout=5)

    assert [d.rec.offset for d in kept] == [0]
    assert np.array_equal(pixels_to_input(kept[0].x, new.value_range), decode_image(colour, new, limits)) and kept[0].polled_at == 1.5
    [dead] = list(out_q.queue)
    assert isinstance(dead, DeadLetter)
    assert (dead.offset, dead.reason, dead.model_version, dead.value) == (1, "channels", new_model.version, grey)
    # and the kept item is one the new model scores
    assert torch.isfinite(new_model.scorer.score(pixels_to_input(torch.from_numpy(kept[0].x[None]), new.value_range)).score).all()
