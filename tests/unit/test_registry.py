"""Registry: the one promotion path (store + Redis pointer), against the real Redis and real artifacts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch

from ganomaly.artifact import save_artifact
from ganomaly.data.images import InputSpec
from ganomaly.errors import ArtifactError, UserError
from ganomaly.model import GanomalyConfig, Generator, calibrate
from ganomaly.registry import ModelStore, RedisPointer, Registry


def _added(registry: Registry, path: Path, seed: int) -> str:
    """A small real artifact written to ``path`` and added to the registry's store; its version."""
    torch.manual_seed(seed)
    g = Generator(GanomalyConfig(nz=8, ngf=8))
    version = save_artifact(path, g, InputSpec(), calibrate(torch.rand(100).numpy()), data={"n_train": 1})["version"]
    assert registry.add(path) == version
    return str(version)


@pytest.fixture
def registry(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[Registry]:
    client = redis.Redis.from_url(redis_url)
    yield Registry(ModelStore(tmp_path / "store"), RedisPointer(client, prefix))
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_promote_points_at_the_stored_version_and_rollback_returns(registry: Registry, tmp_path: Path) -> None:
    v1, v2 = _added(registry, tmp_path / "a", 0), _added(registry, tmp_path / "b", 1)
    assert v1 != v2 and registry.current() is None
    assert registry.promote(v1, "me")
    cur = registry.current()
    assert cur is not None and (cur.version, cur.by, cur.path) == (v1, "me", str(registry.store.path_of(v1)))
    assert registry.promote(v2, "me")
    listing = registry.list()
    assert listing["current"] == v2 and {r["version"]: r["current"] for r in listing["versions"]} == {v1: False, v2: True}
    assert registry.rollback("ops").version == v1
    cur = registry.current()
    assert cur is not None and (cur.version, cur.by) == (v1, "ops")


def test_promote_is_compare_and_set(registry: Registry, tmp_path: Path) -> None:
    v1 = _added(registry, tmp_path / "a", 0)
    v2 = _added(registry, tmp_path / "b", 1)
    assert registry.promote(v1, "trainer-bootstrap", expect=None)
    assert not registry.promote(v2, "trainer-bootstrap", expect=None)  # someone set it already
    assert not registry.promote(v2, "trainer", expect="m-someoneelse")  # stale champion: not overwritten
    assert registry.current().version == v1  # type: ignore[union-attr]
    assert registry.promote(v2, "trainer", expect=v1)
    assert registry.current().version == v2  # type: ignore[union-attr]


def test_promote_refuses_a_version_the_store_lacks(registry: Registry) -> None:
    with pytest.raises(UserError, match=r"version m-0123 is not in the model store .*store \(ganomaly models list shows what is\)"):
        registry.promote("m-0123", "cli")
    assert registry.current() is None


def test_promote_refuses_a_broken_artifact_and_leaves_the_pointer(registry: Registry, tmp_path: Path) -> None:
    good = _added(registry, tmp_path / "a", 0)
    bad = _added(registry, tmp_path / "b", 1)
    assert registry.promote(good, "cli")
    weights = registry.store.path_of(bad) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the store's copy rotted after it was added
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        registry.promote(bad, "cli")
    assert registry.current().version == good  # type: ignore[union-attr]


def test_promote_waits_for_another_writer_and_is_reentrant_inside_its_own_lock(registry: Registry, tmp_path: Path) -> None:
    v1 = _added(registry, tmp_path / "a", 0)
    with registry.lock(5):  # the trainer's shape: a whole run under the lock, promoting inside it
        assert registry.promote(v1, "trainer", expect=None)
    # another writer (a second Registry on the same store, as another process would be) holds the lock
    other = Registry(ModelStore(registry.store.root), registry.pointer)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with other.lock(5):
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    t0 = time.monotonic()
    threading.Timer(0.5, release.set).start()
    assert registry.promote(v1, "cli")
    t.join()
    assert time.monotonic() - t0 >= 0.4  # it waited for the other writer's lock, not skipped it
