"""``bench stream``'s live phases: a paced producer process beside the in-process worker, every record's result awaited."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganomaly.cli.commands.bench_producer import PacedProducer

if TYPE_CHECKING:
    from ganomaly.cli.commands.bench_latency import LatencyLog
    from ganomaly.connections.kafka import KafkaSettings


def paced_phase(kafka: KafkaSettings, topic: str, payload_file: Path, rate: float, seconds: float, content_type: str, log: LatencyLog,
                name: str, th: WorkerThread) -> tuple[float, int]:
    """Publishes at ``rate`` for ``seconds`` from a producer process (bench_producer.py) and waits for every record's
    result; the rate they were answered at, from the producer's first record to the last result acknowledged, and
    how many it sent."""
    log.clear()
    producer = PacedProducer(kafka, topic, payload_file, rate, seconds, content_type, payload_file.parent / f"{name}.log", name=name)
    try:
        sent = int(producer.summary(timeout_s=seconds + 60).get("sent", 0))
    finally:
        producer.end()
    deadline = time.monotonic() + 120
    while len(log.e2e) < sent and time.monotonic() < deadline and th.is_alive():
        time.sleep(0.01)
    th.check(f"{name} phase: {len(log.e2e)} of {sent} records answered", done=True)  # a shortfall is the row's live_answered
    return len(log.e2e) / max(1e-3, (log.last_at or producer.ready_at) - producer.ready_at), sent


class WorkerThread(threading.Thread):
    """The in-process worker: a start-up error (a bad Redis URL, Redis away past --connect-timeout-s) or a
    crash ends the benchmark with one line saying so, instead of a thread's traceback and a wait for nothing."""

    def __init__(self, worker: Any) -> None:
        super().__init__(daemon=True, name="bench-worker")
        self.worker = worker
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.worker.run()
        except BaseException as e:  # noqa: BLE001 - handed to the benchmark's thread, which says it
            self.error = e

    def check(self, progress: str, *, done: bool) -> None:
        """Raise a UserError naming ``progress`` if the worker stopped, or if it is not ``done`` when its wait ended."""
        from ganomaly.errors import UserError

        if isinstance(self.error, UserError):
            raise self.error
        if self.error is not None:
            msg = f"the worker stopped ({progress}): {type(self.error).__name__}: {self.error}"
            raise UserError(msg) from self.error
        if not self.is_alive():
            msg = f"the worker stopped ({progress})"
            raise UserError(msg)
        if not done:
            msg = f"the worker did not finish in time ({progress})"
            raise UserError(msg)
