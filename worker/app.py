"""The worker process: the model to start with, start-up (bounded waits), then the pipeline until stopped.

The stages and their wiring live in worker/pipeline.py and worker/stages/; this module owns the
process's life: device, initial model, the metrics endpoint, connecting, signals and exit codes.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import structlog
import torch

from ganomaly.connections.startup import ConnectError, StartupStopped, StartupWait
from ganomaly.data.images import decode_many_pixels
from ganomaly.device import resolve_device
from ganomaly.errors import UserError
from ganomaly.registry import ModelStore, RedisPointer
from worker.clients import connect, registry_pointer, wait_redis
from worker.decode_pool import DecodePool
from worker.metrics import serve_http
from worker.model_holder import ModelHolder, ServingModel
from worker.pipeline import Pipeline
from worker.settings import WorkerSettings
from worker.sinks.outputs import Acked
from worker.stages.model_watch import load_serving
from worker.stages.score import stream_threads

log = structlog.get_logger("worker")


class Worker:
    def __init__(self, settings: WorkerSettings, startup: StartupWait | None = None) -> None:
        self.s = settings
        # one bound for everything start-up waits for (Redis for the registry, the broker); its stop
        # event is the worker's, so a SIGTERM while waiting ends the wait at once
        self.startup = startup or StartupWait(settings.connect_timeout_s, backoff_max_s=settings.retry_backoff_max_s,
                                              attempt_level=logging.WARNING)
        self.device = resolve_device(settings.device)
        if self.device.type == "cpu" and settings.score_streams > torch.get_num_threads():  # each stream needs a core of its own
            log.warning("score_streams_above_cores", score_streams=settings.score_streams, cores=torch.get_num_threads())
        threads = stream_threads(self.device, settings.score_streams, settings.torch_threads)
        if threads:
            torch.set_num_threads(threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        pointer = registry_pointer(settings)
        model = self._initial_model(pointer)  # fails fast on a bad artifact
        self.models = ModelHolder(model)
        shadow = load_serving(settings.shadow_model, self.device, settings.amp, None) if settings.shadow_model is not None else None
        # spawned processes start clean whatever this one has begun (threads, CUDA); checked here, before polling
        try:
            decode_pool = DecodePool(settings.decode_processes, fn=decode_many_pixels) if settings.decode_processes else None
        except RuntimeError as e:
            msg = f"--decode-processes {settings.decode_processes}: {e}"
            raise UserError(msg) from e
        self.pipeline = Pipeline(settings, models=self.models, shadow=shadow, device=self.device, decode_pool=decode_pool, pointer=pointer,
                                 stop=self.startup.stop)
        self.pipeline.metrics.set_model(model.version, model.threshold, model.expected_anomaly_rate)
        self._http: Any = None
        self.on_acked: Callable[[Acked], None] | None = None  # optional: each written batch's latencies (benchmarks)

    def _initial_model(self, pointer: RedisPointer | None) -> ServingModel:
        """The registry's current version when there is one, else ``--model``."""
        s = self.s
        path = s.model
        if pointer is not None:
            wait_redis(s, self.startup)
            try:
                ptr = pointer.get()
            except redis.RedisError as e:
                if s.model is None:
                    raise UserError(f"the registry pointer is unreadable ({e}) and no --model was given") from e
                ptr = None
            if ptr is not None:
                assert s.model_store is not None  # a pointer exists only with a model store
                path = ModelStore(s.model_store).path_of(ptr.version)
        if path is None:
            msg = "the registry has no current model and no --model was given"
            if s.model_store is not None and not Path(s.model_store).is_dir():
                msg = f"model store {s.model_store} does not exist (check --model-store, env GANOMALY_MODEL_STORE) and no --model was given"
            raise UserError(msg)
        return load_serving(path, self.device, s.amp, s.threshold_override)

    def _readiness(self) -> dict[str, Any]:
        return {"model_version": self.models.current().version, "partitions": self.pipeline.partitions(),
                "waiting_for": self.startup.waiting_for}

    def _abandon_startup(self) -> None:
        """Start-up gave up or was stopped: release what it had made, nothing was polled."""
        if self.pipeline.decode_pool is not None:
            self.pipeline.decode_pool.close()
        if self._http is not None:
            self._http.shutdown()

    def run(self) -> int:
        s = self.s
        try:
            if s.metrics_port:
                # up while start-up waits: /healthz live (a restart would not bring the broker sooner; the
                # start-up bound ends a wait that lasts too long), /readyz false and saying what is awaited
                self._http = serve_http(s.metrics_host, s.metrics_port, self.pipeline.metrics, self.pipeline.health, self._readiness)
            clients = connect(s, self.startup)
        except BaseException:
            self._abandon_startup()
            raise
        p = self.pipeline
        p.start(clients, on_acked=self.on_acked)
        model = self.models.current()
        log.info("started", worker=s.worker_id, model_version=model.version, threshold=model.threshold,
                 device=str(self.device), input_topic=s.input_topic, group_id=s.group_id, decode_processes=s.decode_processes,
                 score_streams=s.score_streams, torch_threads=torch.get_num_threads())
        try:
            p.run()
        finally:
            if self._http is not None:
                self._http.shutdown()
            assert p.sink is not None
            assert p.poll is not None
            stalled = bool(p.poll.stalled)
            log.info("stopped", scored=p.sink.scored_total, dead_letters=p.sink.dead_total, drained=p.drained, crashed=p.crashed,
                     consumer_stalled=stalled)
        return 0 if p.crashed is None and not stalled else 1

    def request_stop(self, *_: object) -> None:
        self.startup.stop.set()


def run_worker(settings: WorkerSettings) -> int:
    """The worker's exit status: 0 after a stop (SIGTERM or SIGINT, during start-up too), 1 when a
    stage crashed or the consumer stalled (worker/stages/stall.py), 2 when the broker or Redis did not answer within ``connect_timeout_s`` (or refused us)."""
    startup = StartupWait(settings.connect_timeout_s, backoff_max_s=settings.retry_backoff_max_s, attempt_level=logging.WARNING)
    # before the model loads and the first wait: a stop during start-up must end it, not kill it mid-way
    signal.signal(signal.SIGTERM, lambda *_: startup.stop.set())
    signal.signal(signal.SIGINT, lambda *_: startup.stop.set())
    try:
        return Worker(settings, startup).run()
    except StartupStopped as e:
        log.info("stopped", during="start-up", waiting_for=str(e), elapsed_s=round(startup.elapsed(), 1))
        return 0
    except ConnectError as e:
        # the worker writes JSON lines only (cli.py's plain `error:` line is for the one-shot commands)
        log.error("startup_failed", error=str(e), connect_timeout_s=settings.connect_timeout_s)
        return 2
    finally:
        # the process ends next, everything is closed: spare its exit the final collection over
        # torch's objects (a second and more on a busy CPU), so that a stop is prompt
        gc.freeze()
