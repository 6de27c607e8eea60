"""Decoding in spawned processes: the same arrays and reasons as in-process, and a crash costs one payload."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ganomaly.data.images import BadImage, DecodeLimits, InputSpec, decode_image, decode_many
from tests.poison import poison_corpus
from worker.decode_pool import DecodePool

SPEC = InputSpec(isize=32, channels=1, value_range=(-0.4242, 2.8215))
LIMITS = DecodeLimits(max_bytes=1_000_000)


def _crash_on_cue(payloads: list[bytes], spec: InputSpec, limits: DecodeLimits) -> list:
    """Module level, so a spawned process can import it: dies as a native decoder crash would."""
    if b"CRASH" in payloads:
        os._exit(139)
    return decode_many(payloads, spec, limits)


def _always_die(payloads: list[bytes], spec: InputSpec, limits: DecodeLimits) -> list:
    os._exit(1)


def _good(n: int) -> list[bytes]:
    from producers import encode_png

    rng = np.random.default_rng(1)
    return [encode_png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(n)]


def _reason(data: bytes) -> str:
    try:
        decode_image(data, SPEC, LIMITS)
    except BadImage as e:
        return e.reason
    return "decoded"


def test_processes_decode_exactly_as_the_decoder_does_in_process() -> None:
    good = _good(5)
    poison = [data for _, data, _ in poison_corpus()]
    payloads = [x for pair in zip(good, poison, strict=False) for x in pair] + poison[len(good):]
    with DecodePool(2) as pool:
        out = pool.decode(payloads, SPEC, LIMITS)
    assert len(out) == len(payloads)
    for data, got in zip(payloads, out, strict=True):
        if isinstance(got, np.ndarray):
            assert np.array_equal(got, decode_image(data, SPEC, LIMITS))
        else:
            assert got[0] == _reason(data) != "decoded" and got[2]


def test_a_payload_that_kills_its_process_is_the_only_one_lost_and_the_pool_recovers() -> None:
    good = _good(4)
    with DecodePool(2, fn=_crash_on_cue) as pool:
        out = pool.decode([good[0], b"CRASH", good[1], b"", good[2]], SPEC, LIMITS)
        assert [o[0] if isinstance(o, tuple) else "ok" for o in out] == ["ok", "decoder_crash", "ok", "empty", "ok"]
        assert np.array_equal(out[2], decode_image(good[1], SPEC, LIMITS))
        assert pool.restarts == 1
        again = pool.decode([good[3]], SPEC, LIMITS)  # the rebuilt pool serves the next chunk
        assert np.array_equal(again[0], decode_image(good[3], SPEC, LIMITS))


def test_processes_that_cannot_decode_a_good_image_are_refused_at_start_not_blamed_on_payloads() -> None:
    with pytest.raises(RuntimeError, match="known-good image"):
        DecodePool(1, fn=_always_die)
