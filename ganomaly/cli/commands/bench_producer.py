"""The benchmarks' camera stand-in: pre-encoded images published at a steady rate from a process of its own.

A camera encodes on its own hardware and shares nothing with the worker. On one machine the stand-in
cannot be elsewhere, so it costs the worker as little as it can: the bytes are encoded before the
clock starts (``ganomaly produce --from idx`` would PNG-encode each image on the worker's cores: about
145 us of CPU per image, measured), and it runs in its own process, off the bench's interpreter lock.
``bench stream``'s live phases and its soak both publish through it.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ganomaly.connections.kafka import KafkaSettings


class PacedProducer:
    """``python -m ganomaly.cli.commands.bench_producer`` publishing ``payloads`` in turn at ``rate`` per second for ``seconds``.

    The constructor returns once the producer is connected (``ready_at``, ``time.perf_counter()``), so a
    caller's clock starts with the first record, not with the process's start-up.
    """

    def __init__(self, kafka: KafkaSettings, topic: str, payload_file: Path, rate: float, seconds: float, content_type: str,
                 log: Path, *, name: str = "paced") -> None:
        with log.open("ab") as err:  # the child keeps its own copy
            self.proc = subprocess.Popen([sys.executable, "-m", __name__, str(payload_file), topic, f"{rate:.3f}", str(seconds), content_type,
                                          name], env={**os.environ, **kafka.as_env()}, stdout=subprocess.PIPE, stderr=err,
                                         start_new_session=True)  # a terminal's Ctrl-C reaches the bench, which ends this
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # connected (or exited: its summary then says it sent nothing)
        self.ready_at = time.perf_counter()
        self.pid = self.proc.pid

    def summary(self, timeout_s: float) -> dict[str, Any]:
        """Waits for the end of its run; what it sent (``sent``, ``failed``, ``seconds``, ``images_per_s``)."""
        out, _ = self.proc.communicate(timeout=timeout_s)
        lines = out.decode().strip().splitlines()
        return json.loads(lines[-1]) if lines else {"sent": 0, "failed": 0, "exit_code": self.proc.returncode}

    def end(self, timeout_s: float = 5) -> int:
        """SIGTERM (it flushes and stops early), SIGKILL after ``timeout_s``; its exit code."""
        return end_session(self.proc, timeout_s)


def end_session(proc: subprocess.Popen, timeout_s: float) -> int:
    """SIGTERM a process started in its own session (its whole group), then SIGKILL after ``timeout_s``; its exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.wait()


def write_payloads(payloads: list[bytes], path: Path) -> Path:
    """The file a PacedProducer reads (repeated objects are pickled once: camera frames repeat 200 distinct ones)."""
    path.write_bytes(pickle.dumps(payloads))
    return path


def publish(payload_file: str, topic: str, rate: float, seconds: float, content_type: str, name: str) -> None:
    """The producer process: the payloads in turn at ``rate`` per second for ``seconds``; prints what it sent as JSON.
    SIGTERM ends it early, after a flush."""
    from ganomaly.connections.kafka import KafkaSettings
    from producers import ImagePublisher

    payloads: list[bytes] = pickle.loads(Path(payload_file).read_bytes())  # a file the bench wrote a moment ago
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    i = 0
    with ImagePublisher(KafkaSettings(), topic, linger_ms=2) as pub:  # the broker from the GANOMALY_* env the bench set
        print(json.dumps({"ready": True}), flush=True)  # connected: the bench starts its clock now
        t0 = time.monotonic()
        while not stop.is_set() and (now := time.monotonic()) < t0 + seconds:
            due = t0 + i / rate
            if due > now:  # ahead of schedule; behind it, send at once (the rate is the mean, not a per-record promise)
                time.sleep(min(due - now, 0.05))
                continue
            pub.publish(payloads[i % len(payloads)], key=f"{name}-{i}", source=name, content_type=content_type)
            i += 1
    secs = time.monotonic() - t0
    print(json.dumps({"sent": pub.stats.sent, "failed": pub.stats.failed, "seconds": round(secs, 1), "images_per_s": round(pub.stats.sent / secs, 1)}))


if __name__ == "__main__":
    publish(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6])
