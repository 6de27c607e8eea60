"""``ganomaly models list|add|promote VERSION|rollback|threshold VERSION``: the model registry by hand."""


from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel

if TYPE_CHECKING:  # imported when run: the light commands start without the artifact's imports
    from ganomaly.registry import ModelStore
    from ganomaly.thresholds import OperatorThresholds


class ModelsSettings(ConnectedSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_MODELS_", frozen=True)

    action: Literal["list", "promote", "rollback", "add", "threshold"] = Field(
        description="list | promote VERSION | rollback | add --artifact DIR | threshold VERSION --value X | threshold VERSION --clear")
    version: str | None = Field(None, description="the version to promote, or whose threshold to set")
    artifact: Path | None = Field(None, description="artifact directory to add to the store (with add)")
    promote_now: bool = Field(False, description="with add: also make the added version the current one (workers switch to it)")
    value: float | None = Field(None, description="with threshold: the operator threshold for VERSION (its workers serve it at once)")
    clear: bool = Field(False, description="with threshold: drop the operator threshold, back to VERSION's calibrated one")
    note: str | None = Field(None, description="with threshold: why, recorded in the audit")
    model_store: Path = Field(Path("/var/lib/ganomaly/models"), description="the model store shared with the trainer and the workers",
                              **shared_env("GANOMALY_MODEL_STORE"))
    redis: RedisSettings = Field(default_factory=RedisSettings)
    by: str = Field("cli", description="who made the change, recorded with the pointer and in the threshold audit")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"


def run_models(s: ModelsSettings) -> int:
    from ganomaly.connections.redis import make_redis
    from ganomaly.connections.startup import StartupWait, wait_for_redis
    from ganomaly.errors import UserError
    from ganomaly.registry import ModelStore, RedisPointer, Registry
    from ganomaly.thresholds import OperatorThresholds

    if s.action in ("promote", "threshold") and not s.version:
        msg = f"{s.action} needs a version: ganomaly models {s.action} VERSION (ganomaly models list shows them)"
        raise UserError(msg)
    check_threshold_flags(s)
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
    client = make_redis(s.redis)
    registry = Registry(store, RedisPointer(client, s.redis.redis_prefix))
    thresholds = OperatorThresholds(client, s.redis.redis_prefix)
    if s.action == "list":
        listing = registry.list()
        set_ = thresholds.get_many([r["version"] for r in listing["versions"]])
        for row in listing["versions"]:
            if row["version"] in set_:
                change = set_[row["version"]]
                row["operator_threshold"] = {"threshold": change.threshold, "by": change.by, "at_ms": change.at_ms, "note": change.note}
        print(json.dumps(listing, indent=2, default=str))
        return 0
    if s.action == "threshold":
        print(json.dumps(set_threshold(s, store, thresholds)))
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


def check_threshold_flags(s: ModelsSettings) -> None:
    """--value, --clear and --note go with threshold, and threshold needs exactly one of --value and --clear."""
    from ganomaly.errors import UserError
    from ganomaly.thresholds import check_threshold

    if s.action != "threshold":
        if s.value is not None or s.clear or s.note is not None:
            msg = f"--value, --clear and --note go with threshold VERSION, not {s.action}"
            raise UserError(msg)
        return
    if s.clear and s.value is not None:
        msg = "give --value X or --clear, not both"
        raise UserError(msg)
    if not s.clear and s.value is None:
        msg = "threshold needs --value X (the new threshold) or --clear (back to the calibrated one)"
        raise UserError(msg)
    if s.value is not None:
        check_threshold(s.value)


def set_threshold(s: ModelsSettings, store: ModelStore, thresholds: OperatorThresholds) -> dict[str, Any]:
    """Set or clear VERSION's operator threshold; VERSION must be in the store (its calibrated threshold is the fallback)."""
    from ganomaly.artifact import read_manifest
    from ganomaly.errors import UserError

    assert s.version is not None  # checked by the caller
    path = store.path_of(s.version)
    if not path.is_dir():
        msg = f"version {s.version} is not in the model store {store.root} (ganomaly models list shows what is)"
        raise UserError(msg)
    calibration = read_manifest(path)["calibration"]
    calibrated = float(calibration["threshold"])
    if s.clear:
        change = thresholds.clear(s.version, by=s.by, calibrated=calibrated, note=s.note)
        if change is None:
            return {"version": s.version, "threshold": calibrated, "source": "calibrated", "changed": False}
    else:
        assert s.value is not None  # checked by check_threshold_flags
        change = thresholds.set(s.version, s.value, by=s.by, calibrated=calibrated, note=s.note, median=float(calibration["median"]))
    source = "calibrated" if change.threshold is None else "operator"
    return {"version": s.version, "threshold": calibrated if change.threshold is None else change.threshold, "source": source,
            "previous": change.previous, "by": change.by, "at_ms": change.at_ms, "note": change.note, "changed": True}
