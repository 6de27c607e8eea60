"""``bench stream``'s in-process worker stopping mid-run: one line saying how far the run got, never a thread's traceback."""

from __future__ import annotations

import threading

import pytest

from ganomaly.cli.commands.bench_live import WorkerThread
from ganomaly.errors import UserError


class _Stops:
    """Stands in for the worker: runs until released, then raises ``error`` (or returns)."""

    def __init__(self, error: BaseException | None) -> None:
        self.release = threading.Event()
        self.error = error

    def run(self) -> None:
        self.release.wait(10)
        if self.error is not None:
            raise self.error


def _stopped(error: BaseException | None) -> WorkerThread:
    worker = _Stops(error)
    th = WorkerThread(worker)
    th.start()
    th.check("running", done=True)  # alive and done: nothing to say
    worker.release.set()
    th.join(5)
    return th


def test_a_worker_crash_mid_run_is_one_line_naming_the_progress() -> None:
    th = _stopped(RuntimeError("stage score-1 crashed"))
    with pytest.raises(UserError, match=r"^the worker stopped \(1200 of 4000 pre-filled images answered\): RuntimeError: stage score-1"):
        th.check("1200 of 4000 pre-filled images answered", done=False)


def test_a_worker_user_error_is_passed_on_as_it_is() -> None:
    th = _stopped(UserError("Redis at redis://127.0.0.1:1 did not answer within 1 s"))
    with pytest.raises(UserError, match=r"^Redis at redis://127.0.0.1:1 did not answer"):
        th.check("no record answered", done=False)


def test_a_worker_that_returned_early_and_one_that_is_late_each_say_so() -> None:
    th = _stopped(None)
    with pytest.raises(UserError, match=r"^the worker stopped \(live phase: 10 of 20 records answered\)$"):
        th.check("live phase: 10 of 20 records answered", done=True)
    worker = _Stops(None)
    running = WorkerThread(worker)
    running.start()
    try:
        with pytest.raises(UserError, match=r"^the worker did not finish in time \(5 of 9\)$"):
            running.check("5 of 9", done=False)
    finally:
        worker.release.set()
        running.join(5)
