"""The stall check on its own: samples in, stalled partitions out, on a clock the test drives."""

from __future__ import annotations

from kafka import TopicPartition

from worker.stages.stall import Offsets, StallWatch

A, B = TopicPartition("in", 0), TopicPartition("in", 1)


def _run(watch: StallWatch, samples: list[dict[TopicPartition, tuple[int | None, int | None]]], *, paused: bool = False,
         step_s: float = 1.0) -> list[list[TopicPartition]]:
    return [watch.observe(i * step_s, {tp: Offsets(*o) for tp, o in sample.items()}, paused) for i, sample in enumerate(samples)]


def test_records_waiting_and_the_broker_answering_but_the_position_stuck_is_a_stall_after_the_timeout() -> None:
    # the soak's signature: the high watermark keeps climbing, the position never moves
    out = _run(StallWatch(after_s=5), [{A: (100, 100 + 10 * i)} for i in range(8)])
    assert out[:5] == [[]] * 5  # caught up at 0 s, waiting from then on
    assert out[5:] == [[A]] * 3


def test_a_moving_position_is_never_a_stall_however_far_behind() -> None:
    out = _run(StallWatch(after_s=3), [{A: (100 + i, 1000 + 50 * i)} for i in range(20)])
    assert out == [[]] * 20


def test_a_broker_outage_is_waited_out_nothing_changes_so_nothing_is_a_stall() -> None:
    out = _run(StallWatch(after_s=3), [{A: (100, 200), B: (50, 60)}] * 30)
    assert out == [[]] * 30


def test_one_partition_starved_while_another_is_read_is_that_partition() -> None:
    # a resumed partition never fetched again (the kafka-python bug in ganomaly/connections/kafka.py)
    out = _run(StallWatch(after_s=4), [{A: (100, 200), B: (10 * i, 10 * i + 5)} for i in range(10)])
    assert out[-1] == [A]


def test_caught_up_paused_unknown_or_turned_off_is_never_a_stall() -> None:
    assert _run(StallWatch(after_s=2), [{A: (100, 100)}] * 10)[-1] == []  # nothing waiting
    assert _run(StallWatch(after_s=2), [{A: (None, 10 * i)} for i in range(10)])[-1] == []  # no position yet
    assert _run(StallWatch(after_s=2), [{A: (100, None)}] * 10)[-1] == []  # no fetch answered yet
    assert _run(StallWatch(after_s=2), [{A: (100, 200 + i)} for i in range(10)], paused=True)[-1] == []  # backpressure holds it
    assert _run(StallWatch(after_s=0), [{A: (100, 200 + i)} for i in range(10)])[-1] == []


def test_the_clock_restarts_when_a_stuck_partition_moves_or_is_resumed() -> None:
    w = StallWatch(after_s=3)
    assert _run(w, [{A: (100, 200 + i)} for i in range(3)]) == [[]] * 3
    assert w.observe(3.0, {A: Offsets(101, 210)}, False) == []  # moved at the last moment
    assert w.observe(5.0, {A: Offsets(101, 220)}, False) == []
    assert w.observe(6.0, {A: Offsets(101, 230)}, False) == [A]
    assert w.observe(7.0, {A: Offsets(101, 240)}, True) == []  # paused: not waiting on the broker
    assert w.observe(8.0, {A: Offsets(101, 250)}, False) == []


def test_a_revoked_partition_is_forgotten() -> None:
    w = StallWatch(after_s=2)
    _run(w, [{A: (100, 200 + i), B: (0, 0)} for i in range(5)])
    assert w.observe(5.0, {B: Offsets(0, 0)}, False) == []
