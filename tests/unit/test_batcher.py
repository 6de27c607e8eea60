import queue
import threading
import time

from worker.batcher import next_batch


def test_full_batch_returns_without_waiting() -> None:
    q: queue.Queue[int] = queue.Queue()
    for i in range(10):
        q.put(i)
    t0 = time.monotonic()
    assert next_batch(q, 4, 5.0) == [0, 1, 2, 3]
    assert time.monotonic() - t0 < 0.5


def test_partial_batch_leaves_after_max_wait_from_the_first_item() -> None:
    q: queue.Queue[int] = queue.Queue()
    q.put(1)
    t0 = time.monotonic()
    assert next_batch(q, 8, 0.1) == [1]
    assert 0.09 <= time.monotonic() - t0 < 1.0


def test_items_arriving_within_the_window_join_the_batch() -> None:
    q: queue.Queue[int] = queue.Queue()
    q.put(1)
    threading.Timer(0.03, q.put, args=(2,)).start()
    assert next_batch(q, 8, 0.3) == [1, 2]


def test_idle_queue_returns_empty() -> None:
    assert next_batch(queue.Queue(), 8, 0.1, idle_timeout_s=0.05) == []
