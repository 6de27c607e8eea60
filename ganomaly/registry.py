"""Model registry: versioned artifacts in a store directory, the current version in Redis.

Layout of the store (local disk, or a volume shared by the trainer and the workers):

    STORE/versions/<version>/{model.safetensors,manifest.json}   immutable, written atomically
    STORE/decisions/<utc>-<version>.json                          every gate decision with its metrics
    STORE/.lock                                                   serialises writers (flock)

Redis holds the pointer ``{prefix}:model:current`` (JSON: version, path, by, at_ms), a
history list for rollback, and an events stream plus a pub/sub channel that workers
may use as a wake-up; workers also poll the pointer, so a missed notification only
delays a switch. Promotion is compare-and-set on the pointer: a trainer that
evaluated against champion A never overwrites a promotion of B that happened meanwhile.

:class:`Registry` joins the two and is the one way to promote (``ganomaly models``, the
trainer, the demo through ``models``): the version must be in the store and load before
the pointer moves, so workers are never pointed at nothing or at a broken artifact.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from ganomaly.artifact import Artifact, load_artifact, read_manifest, save_artifact
from ganomaly.errors import ArtifactError, UserError


@dataclass(frozen=True)
class Pointer:
    version: str
    path: str
    by: str
    at_ms: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Pointer:
        return cls(**json.loads(raw))


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.decisions = self.root / "decisions"

    def ensure(self) -> None:
        self.versions.mkdir(parents=True, exist_ok=True)
        self.decisions.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self, timeout_s: float = 600.0) -> Iterator[None]:
        """Exclusive lock for writers (trainer runs, promotions) on this store."""
        self.ensure()
        with (self.root / ".lock").open("a+") as f:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        msg = f"the model store {self.root} is locked by another writer"
                        raise UserError(msg) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def path_of(self, version: str) -> Path:
        return self.versions / version

    def add(self, artifact_dir: Path) -> str:
        """Copy an artifact into the store (atomic; idempotent for the same content)."""
        art = load_artifact(artifact_dir)  # validates before anything is published
        dest = self.path_of(art.version)
        if dest.exists():
            return art.version
        self.ensure()
        tmp = self.versions / f".{art.version}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(artifact_dir, tmp)
        try:
            tmp.rename(dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.exists():
                raise
        return art.version

    def save(self, generator: Any, input_spec: Any, calibration: Any, **meta: Any) -> str:
        """Write a freshly trained model straight into the store."""
        self.ensure()
        staging = self.versions / f".staging-{os.getpid()}-{time.monotonic_ns()}"
        manifest = save_artifact(staging, generator, input_spec, calibration, **meta)
        dest = self.path_of(manifest["version"])
        if dest.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.rename(dest)
        return str(manifest["version"])

    def load(self, version: str, device: Any = "cpu") -> Artifact:
        return load_artifact(self.path_of(version), device)

    def list(self) -> list[dict[str, Any]]:
        out = []
        for d in sorted(self.versions.glob("m-*")) if self.versions.exists() else []:
            try:
                mf = read_manifest(d)
                out.append({"version": mf["version"], "created": mf["created"], "threshold": mf["calibration"]["threshold"],
                            "parent": mf.get("parent_version"), "metrics": mf.get("metrics", {}), "path": str(d)})
            except ArtifactError as e:
                out.append({"version": d.name, "error": str(e), "path": str(d)})
        return sorted(out, key=lambda r: r.get("created", ""))

    def record_decision(self, decision: dict[str, Any]) -> Path:
        self.ensure()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = self.decisions / f"{stamp}-{decision.get('challenger', 'none')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(decision, indent=2, default=str))
        tmp.rename(path)
        return path


class RedisPointer:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.key = f"{prefix}:model:current"
        self.history = f"{prefix}:model:history"
        self.events = f"{prefix}:model:events"

    def get(self) -> Pointer | None:
        raw = self.r.get(self.key)
        return Pointer.from_json(raw) if raw else None

    def set(self, ptr: Pointer, *, expect: str | None | bool = False) -> bool:
        """Set the pointer; with ``expect`` (a version or None for 'unset'), only if it still points there."""
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(self.key)
                    raw = pipe.get(self.key)
                    cur = Pointer.from_json(raw) if raw else None
                    if expect is not False and (cur.version if cur else None) != expect:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.set(self.key, ptr.to_json())
                    if cur is not None and cur.version != ptr.version:
                        pipe.lpush(self.history, cur.to_json())
                        pipe.ltrim(self.history, 0, 99)
                    pipe.xadd(self.events, {"event": "promoted", "pointer": ptr.to_json()}, maxlen=1000, approximate=True)
                    pipe.publish(self.events, ptr.to_json())
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def previous(self) -> Pointer | None:
        raw = self.r.lindex(self.history, 0)
        return Pointer.from_json(raw) if raw else None

    def rollback(self, by: str) -> Pointer:
        """Point back at the previous version (the history's head is consumed)."""
        prev = self.r.lpop(self.history)
        if prev is None:
            msg = "no previous model version to roll back to"
            raise UserError(msg)
        old = Pointer.from_json(prev)
        ptr = Pointer(version=old.version, path=old.path, by=by, at_ms=int(time.time() * 1000))
        self.r.set(self.key, ptr.to_json())
        self.r.xadd(self.events, {"event": "rollback", "pointer": ptr.to_json()}, maxlen=1000, approximate=True)
        self.r.publish(self.events, ptr.to_json())
        return ptr


class Registry:
    """The store and the pointer together: add, promote, roll back, look up the current version.

    Writers are serialised by the store's lock. ``promote`` and ``rollback`` take it themselves
    unless the caller already holds it through :meth:`lock` (the trainer holds it for a whole
    run): ``flock`` on a second descriptor would wait on our own lock. One Registry per thread.
    """

    def __init__(self, store: ModelStore, pointer: RedisPointer) -> None:
        self.store = store
        self.pointer = pointer
        self._held = 0

    @contextlib.contextmanager
    def lock(self, timeout_s: float = 600.0) -> Iterator[None]:
        """The store's writer lock; re-entrant within this object."""
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        with self.store.lock(timeout_s):
            self._held = 1
            try:
                yield
            finally:
                self._held = 0

    def current(self) -> Pointer | None:
        return self.pointer.get()

    def add(self, artifact_dir: Path) -> str:
        """Copy a validated artifact into the store; the pointer is left alone."""
        with self.lock():
            return self.store.add(artifact_dir)

    def promote(self, version: str, by: str, *, expect: str | None | bool = False) -> bool:
        """Point the workers at ``version``, which must be in the store and load.

        ``expect`` as :meth:`RedisPointer.set`: a version (or None for 'no current model') the
        pointer must still hold, else nothing changes and False comes back; False (the default)
        sets it whatever it holds.
        """
        with self.lock():
            path = self.store.path_of(version)
            if not path.is_dir():
                msg = f"version {version} is not in the model store {self.store.root} (ganomaly models list shows what is)"
                raise UserError(msg)
            self.store.load(version)  # refuse to point workers at a broken artifact (raises ArtifactError)
            return self.pointer.set(Pointer(version, str(path), by, int(time.time() * 1000)), expect=expect)

    def rollback(self, by: str) -> Pointer:
        """Point back at the version before the current one."""
        with self.lock():
            return self.pointer.rollback(by)

    def list(self) -> dict[str, Any]:
        """The current version and every version in the store, each marked whether it is current."""
        cur = self.current()
        rows = [{**r, "current": bool(cur and cur.version == r["version"])} for r in self.store.list()]
        return {"current": cur.version if cur else None, "versions": rows}
