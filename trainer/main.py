"""``ganomaly trainer``: refit on confirmed normals, gate against the champion, promote; once or every N seconds."""

from __future__ import annotations

import json
import signal
import threading
import time

from trainer.settings import TrainerSettings


def run_trainer(s: TrainerSettings) -> int:
    import structlog

    from ganomaly.connections.startup import ConnectTimeout, StartupStopped, StartupWait
    from ganomaly.settings import check_one_weight_average
    from trainer.job import run_once

    check_one_weight_average(s.ema_decay, s.swa_start)
    if s.every is None:
        print(json.dumps(run_once(s), default=str))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    first = True
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            print(json.dumps(run_once(s, StartupWait(s.connect_timeout_s, stop=stop)), default=str), flush=True)
        except StartupStopped:
            return 0
        except ConnectTimeout as e:
            if first:  # a trainer that never reached its broker or Redis is misconfigured: say so and exit 2
                raise
            # later, an outage: this run is skipped, the next one tries again
            structlog.get_logger("trainer").error("run_skipped", error=str(e))
        first = False
        stop.wait(max(0.0, s.every - (time.monotonic() - t0)))
    return 0
