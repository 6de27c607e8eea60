"""``ganomaly models list|add|promote VERSION|rollback``: the model registry by hand."""


from __future__ import annotations

import json
import time
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
    from ganomaly.registry import ModelStore, Pointer, RedisPointer

    if s.action != "add" and not s.model_store.is_dir():
        # ModelStore() would create it: a mistyped path would list nothing and look like an empty registry
        msg = f"model store {s.model_store} does not exist; check --model-store (env GANOMALY_MODEL_STORE)"
        raise UserError(msg)
    if s.promote_now and s.action != "add":
        msg = "--promote-now goes with add; use promote VERSION to point at a version already in the store"
        raise UserError(msg)
    if s.action == "add" and s.artifact is not None:
        from ganomaly.artifact import load_artifact

        load_artifact(s.artifact)  # refuse a broken artifact before ModelStore() creates a store for it
    store = ModelStore(s.model_store)
    if s.action != "add":  # the only action that leaves the pointer alone
        wait_for_redis(StartupWait(s.connect_timeout_s), s.redis)
    ptr = RedisPointer(make_redis(s.redis), s.redis.redis_prefix)
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

