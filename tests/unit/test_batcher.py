import queue
import threading
import time

from worker.batcher import ChunkBatcher


def test_full_batch_returns_without_waiting() -> None:
    q: queue.Queue[list[int]] = queue.Queue()
    for i in range(10):
        q.put([i])
    t0 = time.monotonic()
    assert ChunkBatcher(q, 4, 5.0).next() == [0, 1, 2, 3]
    assert time.monotonic() - t0 < 0.5


def test_partial_batch_leaves_after_max_wait_from_the_first_item() -> None:
    q: queue.Queue[list[int]] = queue.Queue()
    q.put([1])
    t0 = time.monotonic()
    assert ChunkBatcher(q, 8, 0.1).next() == [1]
    assert 0.09 <= time.monotonic() - t0 < 1.0


def test_items_arriving_within_the_window_join_the_batch() -> None:
    q: queue.Queue[list[int]] = queue.Queue()
    q.put([1])
    threading.Timer(0.03, q.put, args=([2],)).start()
    assert ChunkBatcher(q, 8, 0.3).next() == [1, 2]


def test_idle_queue_returns_empty() -> None:
    assert ChunkBatcher(queue.Queue(), 8, 0.1).next(idle_timeout_s=0.05) == []


def test_chunks_fill_a_batch_and_what_overflows_starts_the_next_at_once() -> None:
    q: queue.Queue[list[int]] = queue.Queue()
    for chunk in ([0, 1, 2], [3, 4, 5], [6]):
        q.put(chunk)
    b = ChunkBatcher(q, 4, 0.2)
    t0 = time.monotonic()
    assert b.next() == [0, 1, 2, 3]  # full: no waiting
    q.put([7, 8, 9])
    assert b.next() == [4, 5, 6, 7]  # the rest of the chunk first, in order
    assert b.next() == [8, 9] and b.next(idle_timeout_s=0.01) == []
    assert time.monotonic() - t0 < 1.0


def test_a_partial_chunk_batch_leaves_after_max_wait_and_an_idle_queue_returns_empty() -> None:
    q: queue.Queue[list[int]] = queue.Queue()
    b = ChunkBatcher(q, 8, 0.1)
    assert b.next(idle_timeout_s=0.05) == []
    q.put([1, 2])
    threading.Timer(0.03, q.put, args=([3],)).start()
    t0 = time.monotonic()
    assert b.next() == [1, 2, 3]
    assert 0.09 <= time.monotonic() - t0 < 1.0
