import random
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.offsets import OffsetTracker


def test_commit_position_waits_for_the_lowest_unfinished_record() -> None:
    t = OffsetTracker()
    for o in range(5):
        t.add("p0", o)
    assert t.committable() == {"p0": 0}
    t.done("p0", 1)
    t.done("p0", 2)
    assert t.committable() == {"p0": 0}  # 0 is still in flight
    t.done("p0", 0)
    assert t.committable() == {"p0": 3}
    t.done("p0", 4)
    t.done("p0", 3)
    assert t.committable() == {"p0": 5} and t.in_flight() == 0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=80), st.randoms(use_true_random=False))
def test_never_commits_past_unfinished_work(parts: list[int], rnd: random.Random) -> None:
    t = OffsetTracker()
    offsets: dict[int, int] = {}
    added = []
    for p in parts:
        o = offsets.get(p, 10)
        offsets[p] = o + 1
        t.add(p, o)
        added.append((p, o))
    rnd.shuffle(added)
    finished: set[tuple[int, int]] = set()
    for p, o in added:
        t.done(p, o)
        finished.add((p, o))
        for part, pos in t.committable().items():
            # everything below the commit position is finished
            assert all((part, x) in finished for x in range(10, pos))
    assert t.committable() == {p: o for p, o in offsets.items()}


def test_revoked_partition_is_forgotten_and_late_completions_ignored() -> None:
    t = OffsetTracker()
    t.add("a", 0)
    t.add("b", 0)
    t.forget(["a"])
    assert t.in_flight() == 1 and not t.is_tracked("a", 0)
    assert t.done("a", 0) is False
    assert t.committable() == {"b": 0}


def test_duplicate_add_and_done_are_harmless() -> None:
    t = OffsetTracker()
    t.add("a", 0)
    t.add("a", 0)
    assert t.in_flight() == 1
    assert t.done("a", 0) is True and t.done("a", 0) is False
    assert t.in_flight() == 0


def test_wait_drained_wakes_when_the_last_record_finishes() -> None:
    t = OffsetTracker()
    t.add("a", 0)
    threading.Timer(0.05, t.done, args=("a", 0)).start()
    assert t.wait_drained(["a"], 2.0)
    t.add("a", 1)
    assert not t.wait_drained(None, 0.05)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 30)), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_the_batch_calls_keep_the_books_the_single_calls_keep(adds: list[tuple[int, int]], rnd: random.Random) -> None:
    one, many = OffsetTracker(), OffsetTracker()
    for p, o in adds:
        one.add(p, o)
    for p in {p for p, _ in adds}:
        many.add_many(p, [o for q, o in adds if q == p])
    assert (one.committable(), one.in_flight()) == (many.committable(), many.in_flight())
    finish = list(dict.fromkeys(adds))
    rnd.shuffle(finish)
    finish = finish[: len(finish) // 2] + [(9, 0)]  # and one never added
    assert many.done_many(finish) == sum(one.done(p, o) for p, o in finish)
    assert (one.committable(), one.in_flight()) == (many.committable(), many.in_flight())
    recs = [Rec(p, o) for p, o in adds]
    assert many.still_tracked(recs, lambda r: r.partition) == [r for r in recs if one.is_tracked(r.partition, r.offset)]


class Rec:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset
