"""``ganomaly stack up/down`` as the demo runs it: the stack's keys go with it, the machine's Redis is left as found."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis

from ganomaly.devstack import free_port, port_open
from tests.integration.helpers import ROOT

pytestmark = pytest.mark.integration


def _ganomaly(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganomaly", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def test_stack_down_leaves_no_keys_behind_in_any_redis(tmp_path: Path, redis_url: str) -> None:
    machine = redis.Redis.from_url(redis_url)  # the Redis already on the machine (or the tests' own)
    state = tmp_path / "stack"
    up = _ganomaly("stack", "up", "--state-dir", str(state), "--broker-port", str(free_port()))
    assert up.returncode == 0, up.stderr
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", up.stdout, re.MULTILINE))
    stack_url = exports["GANOMALY_REDIS_URL"]
    assert stack_url != redis_url
    status = _ganomaly("stack", "status", "--state-dir", str(state))
    assert status.returncode == 0, status.stdout

    # what the demo writes: a registry entry, results, alerts, all under its prefix, through the URL the stack exported
    probe = f"demo:probe:{uuid.uuid4().hex}"
    stack_redis = redis.Redis.from_url(stack_url)
    stack_redis.set(probe, "1")
    stack_redis.xadd("demo:alerts", {"alert": "{}"})
    assert not machine.exists(probe), "the stack handed out the machine's Redis"
    pids = [int(p) for p in re.findall(r'"(?:broker|redis)_pid": (\d+)', (state / "state.json").read_text())]
    assert len(pids) == 2

    down = _ganomaly("stack", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert not any(_alive(p) for p in pids), "stack down returned before its processes were gone"
    port = int(stack_url.rsplit(":", 1)[1].split("/")[0])
    assert not port_open("127.0.0.1", port)
    assert not machine.exists(probe)
    assert not (state / "state.json").exists()


def test_stack_up_on_a_taken_redis_port_is_one_error_line(tmp_path: Path, redis_url: str) -> None:
    taken = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    up = _ganomaly("stack", "up", "--state-dir", str(tmp_path / "s"), "--broker-port", str(free_port()), "--redis-port", str(taken))
    assert up.returncode == 2 and up.stderr.startswith("error: ") and len(up.stderr.strip().splitlines()) == 1, up.stderr
    assert not (tmp_path / "s" / "state.json").exists()
