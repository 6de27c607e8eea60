"""Images decoded just before a hot swap to a model of another input shape are decoded again for it."""

from __future__ import annotations

import types

import numpy as np

from ganomaly.data.images import DecodeLimits, InputSpec, decode_image
from producers import encode_png
from worker.app import Decoded, Worker
from worker.conversions import ChannelConversions
from worker.metrics import WorkerMetrics
from worker.sinks.outputs import DeadLetter


def test_items_of_the_old_shape_are_redecoded_and_those_the_new_spec_refuses_become_dead_letters() -> None:
    rng = np.random.default_rng(0)
    old, new = InputSpec(isize=32, channels=1), InputSpec(isize=64, channels=3)
    limits = DecodeLimits(channel_policy="strict")  # a grey image is refused by a colour model
    grey = encode_png(rng.integers(0, 256, (28, 28), dtype=np.uint8))
    colour = encode_png(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    recs = [types.SimpleNamespace(topic="in", partition=0, offset=i, key=None, value=v, headers=[]) for i, v in enumerate([colour, grey])]
    items = [Decoded(r, decode_image(r.value, old, DecodeLimits()), 1.5) for r in recs]
    sent: list[object] = []
    fake = types.SimpleNamespace(limits=limits, _put_out=lambda item, stage: sent.append((item, stage)), _dead_letter=Worker._dead_letter,
                                 conversions=ChannelConversions(WorkerMetrics().converted))
    fake._converted_noted = lambda rec, outcome: Worker._converted_noted(fake, rec, outcome)  # type: ignore[arg-type]
    model = types.SimpleNamespace(artifact=types.SimpleNamespace(input_spec=new), version="m-new")

    kept = Worker._fit_to(fake, model, items)  # type: ignore[arg-type]

    assert [d.rec.offset for d in kept] == [0]
    assert np.array_equal(kept[0].x, decode_image(colour, new, limits)) and kept[0].polled_at == 1.5
    [(dead, stage)] = sent
    assert isinstance(dead, DeadLetter) and stage == "score"
    assert (dead.offset, dead.reason, dead.model_version, dead.value) == (1, "channels", "m-new", grey)
