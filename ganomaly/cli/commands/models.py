"""``ganomaly models list|add|promote VERSION|rollback``: the model registry by hand."""


from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel


class ModelsSettings(ConnectedSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_MODELS_", frozen=True)

    action: Literal["list", "promote", "rollback", "add"] = Field(description="list | promote VERSION | rollback | add --artifact DIR")
    version: str | None = Field(None, description="the version to promote")
    artifact: Path | None = Field(None, description="artifact directory to add to the store (with add)")
    promote_now: bool = Field(False, description="with add: also make the added version the current one (workers switch to it)")
    model_store: Path = Field(Path("/var/lib/ganomaly/models"), description="the model store shared with the trainer and the workers",
                              **shared_env("GANOMALY_MODEL_STORE"))
    redis: RedisSettings = Field(default_factory=RedisSettings)
    by: str = Field("cli", description="who made the change, recorded with the pointer")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"


def run_models(s: ModelsSettings) -> int:
    from ganomaly.connections.redis import make_redis
    from ganomaly.connections.startup import StartupWait, wait_for_redis
    from ganomaly.errors import UserError
    from ganomaly.registry import ModelStore, RedisPointer, Registry

    if s.action == "promote" and not s.version:
        msg = "promote needs a version: ganomaly models promote VERSION (ganomaly models list shows them)"
        raise UserError(msg)
    if s.action != "add" and not s.model_store.is_dir():
        # ModelStore() would create it: a mistyped path would list nothing and look like an empty registry
        msg = f"model store {s.model_store} does not exist; check --model-store (env GANOMALY_MODEL_STORE)"
        raise UserError(msg)
    if s.promote_now and s.action != "add":
        msg = "--promote-now goes with add; use promote VERSION to point at a version already in the store"
        raise UserError(msg)
    if s.action == "add" and s.artifact is None:
        msg = "--artifact is required with add"
        raise UserError(msg)
    if s.action == "add" and s.artifact is not None:
        from ganomaly.artifact import load_artifact

        load_artifact(s.artifact)  # refuse a broken artifact before ModelStore() creates a store for it
    store = ModelStore(s.model_store)
    if s.action != "add" or s.promote_now:  # add alone leaves the pointer alone
        wait_for_redis(StartupWait(s.connect_timeout_s), s.redis)
    registry = Registry(store, RedisPointer(make_redis(s.redis), s.redis.redis_prefix))
    if s.action == "list":
        print(json.dumps(registry.list(), indent=2, default=str))
        return 0
    if s.action == "rollback":
        print(json.dumps({"current": registry.rollback(s.by).version}))
        return 0
    if s.action == "add":
        assert s.artifact is not None  # checked above
        with registry.lock():  # added and promoted under one lock: no other writer in between
            version = registry.add(s.artifact)
            if s.promote_now:
                registry.promote(version, s.by)
        print(json.dumps({"current": version, "added": version} if s.promote_now else {"added": version}))
        return 0
    assert s.version is not None  # checked above
    registry.promote(s.version, s.by)
    print(json.dumps({"current": s.version}))
    return 0
