"""``ganomaly trainer`` (refit on confirmed normals, gate, promote) and ``ganomaly models list|promote|rollback``."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.settings_cli import LogLevel


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_TRAINER_", frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    feedback_topic: str = "image-feedback"
    group_id: str = Field("ganomaly-trainer", description="consumer group on the feedback topic")
    data_dir: Path = Field(Path("/var/lib/ganomaly/confirmed"), description="the durable confirmed-image set")
    model_store: Path = Field(Path("/var/lib/ganomaly/models"), description="the model store (shared with the workers)")
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "ganomaly"
    bootstrap_model: Path | None = Field(None, description="artifact to register as current when Redis has none")
    every: float | None = Field(None, gt=0, description="seconds between runs (default: run once, as a CronJob)")
    min_new_normals: int = Field(100, ge=1, description="refit only with at least this many new confirmed normals")
    warm_start: bool = Field(True, description="start from the champion's weights (else from scratch)")
    include_original: bool = Field(True, description="add the champion's original training data when available")
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-4, gt=0)
    target_fpr: float = Field(0.01, gt=0, lt=1)
    swa_start: int = Field(0, ge=0, description="as in train: ship the average of the challenger's epoch-end weights from this epoch (0: off)")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="as in train: ship a moving average of the challenger's weights with this decay (0: off)")
    seed: int = 0
    fpr_tolerance: float = Field(0.01, ge=0)
    auroc_tolerance: float = Field(0.01, ge=0)
    min_anomalies: int = Field(5, ge=1)
    idle_ms: int = Field(2000, ge=100)
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    lock_timeout_s: float = Field(600.0, ge=0, description="wait this long for a concurrent run to finish")
    device: str = "auto"
    log_level: LogLevel = "info"


def run_trainer(s: TrainerSettings) -> int:
    import structlog

    from worker.commands.common import check_one_weight_average
    from worker.connect import ConnectTimeout, StartupStopped, StartupWait
    from worker.trainer.job import run_once

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


class ModelsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_MODELS_", frozen=True)

    action: Literal["list", "promote", "rollback", "add"] = Field(description="list | promote VERSION | rollback | add --artifact DIR")
    version: str | None = Field(None, description="the version to promote")
    artifact: Path | None = Field(None, description="artifact directory to add to the store (with add)")
    promote_now: bool = Field(False, description="with add: also make the added version the current one (workers switch to it)")
    model_store: Path = Field(Path("/var/lib/ganomaly/models"), description="the model store shared with the trainer and the workers")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="the Redis holding the current-model pointer")
    redis_prefix: str = "ganomaly"
    by: str = Field("cli", description="who made the change, recorded with the pointer")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"


def run_models(s: ModelsSettings) -> int:
    import redis

    from worker.connect import StartupWait, wait_for_redis
    from worker.errors import UserError
    from worker.registry import ModelStore, Pointer, RedisPointer

    if s.action != "add" and not s.model_store.is_dir():
        # ModelStore() would create it: a mistyped path would list nothing and look like an empty registry
        msg = f"model store {s.model_store} does not exist; check --model-store (env GANOMALY_MODELS_MODEL_STORE)"
        raise UserError(msg)
    if s.promote_now and s.action != "add":
        msg = "--promote-now goes with add; use promote VERSION to point at a version already in the store"
        raise UserError(msg)
    if s.action == "add" and s.artifact is not None:
        from worker.artifact import load_artifact

        load_artifact(s.artifact)  # refuse a broken artifact before ModelStore() creates a store for it
    store = ModelStore(s.model_store)
    if s.action != "add":  # the only action that leaves the pointer alone
        wait_for_redis(StartupWait(s.connect_timeout_s), s.redis_url)
    ptr = RedisPointer(redis.Redis.from_url(s.redis_url), s.redis_prefix)
    if s.action == "list":
        cur = ptr.get()
        rows = [{**r, "current": bool(cur and cur.version == r["version"])} for r in store.list()]
        print(json.dumps({"current": cur.version if cur else None, "versions": rows}, indent=2, default=str))
        return 0
    if s.action == "rollback":
        with store.lock():
            p = ptr.rollback(s.by)
        print(json.dumps({"current": p.version}))
        return 0
    with store.lock():
        if s.action == "add":
            if s.artifact is None:
                msg = "--artifact is required with add"
                raise UserError(msg)
            version = store.add(s.artifact)
            if not s.promote_now:
                print(json.dumps({"added": version}))
                return 0
            s = s.model_copy(update={"version": version})
        if not s.version:
            msg = "promote needs a version: ganomaly models promote VERSION (ganomaly models list shows them)"
            raise UserError(msg)
        if not store.path_of(s.version).is_dir():
            msg = f"version {s.version} is not in the model store {s.model_store} (ganomaly models list shows what is)"
            raise UserError(msg)
        store.load(s.version)  # refuse to point workers at a broken artifact
        ptr.set(Pointer(s.version, str(store.path_of(s.version)), s.by, int(time.time() * 1000)))
    print(json.dumps({"current": s.version, **({"added": s.version} if s.promote_now else {})}))
    return 0

