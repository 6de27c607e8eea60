"""Session-wide fixtures: a real Tansu broker, real Redis, and a small real model."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ganomaly.devstack import free_port, start_broker, start_redis, stop

FMNIST = Path(os.environ.get("GANOMALY_TEST_DATA_DIR", "/usr/share/datasets/fashion-mnist"))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("GANOMALY_TEST_BOOTSTRAP"):
        yield os.environ["GANOMALY_TEST_BOOTSTRAP"]
        return
    proc, bootstrap = start_broker(log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
    yield bootstrap
    stop(proc)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis if it answers, else a private redis-server for the session."""
    url = os.environ.get("GANOMALY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.exceptions.ConnectionError:
        pass
    port = free_port()
    proc = start_redis(port, dir_=tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    stop(proc)


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small GANomaly trained for real on Fashion-MNIST (leave-one-out, class 0): seconds on a CPU."""
    from ganomaly.cli.commands.train import TrainSettings, run

    out = tmp_path_factory.mktemp("models") / "tiny"
    run(TrainSettings(out=out, data_dir=FMNIST, protocol="leave-one-out", klass=0, epochs=1, max_train_images=1024, max_val_images=400,
                      ngf=16, nz=32, batch_size=64, evaluate_test=False, device="cpu", target_fpr=0.05))
    return out


@pytest.fixture(scope="session")
def trouser_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model whose only normal class is trousers (one-class protocol, class 1).

    It ships the reconstruction score: after a few short epochs the paper's latent score
    does not yet separate classes (every class scores alike), the reconstruction error
    does (it flags about 89% of bags), and the trainer tests need a champion that really
    flags a new class.
    """
    from ganomaly.cli.commands.train import TrainSettings, run

    out = tmp_path_factory.mktemp("models") / "trousers"
    run(TrainSettings(out=out, data_dir=FMNIST, protocol="one-class", klass=1, epochs=3, max_train_images=2048, max_val_images=400,
                      ngf=16, nz=32, batch_size=64, evaluate_test=False, device="cpu", target_fpr=0.05, score="recon"))
    return out
