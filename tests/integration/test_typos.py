"""What a new user typed wrong, through the real ``ganomaly`` console script against a real broker and Redis.

A topic or partition that does not exist, a folder with no images: one ``error:`` line, exit 2,
nothing read, sent or written (these used to report an empty or whole run and exit 0). ``produce``
says an unreachable broker on a line of its own and draws no progress bar into redirected output.
``alerts --count`` bounds every alert printed, the backlog and the followed ones together.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
import redis

from ganomaly.connections.kafka import as_kafka, make_admin
from ganomaly.contracts import messages as m
from ganomaly.devstack import free_port
from tests.conftest import FMNIST
from tests.integration.helpers import Topics, produce_fmnist, read_topic
from worker.sinks.outputs import OutputBatch
from worker.sinks.redis_sink import RedisSink

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GANOMALY = str(Path(sys.executable).parent / "ganomaly")  # the installed console script


def ganomaly(*args: str, timeout: float = 300, stderr: int = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """stderr: a pipe (as when output is redirected), or a terminal's file descriptor."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([GANOMALY, *args], stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)


def one_error(done: subprocess.CompletedProcess[str]) -> str:
    """The run's single stderr line, which must be its ``error:`` line, after exit 2 and nothing on stdout."""
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert done.stdout == "" and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def _topics(bootstrap: str) -> set[str]:
    admin = make_admin(as_kafka(bootstrap).config())
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


@pytest.mark.parametrize("mode", ["rescore", "audit"])
def test_replay_of_a_topic_that_does_not_exist_names_it_and_the_closest_that_do(broker: str, tiny_model: Path, tmp_path: Path,
                                                                               mode: str) -> None:
    topics = Topics(broker, partitions=1)
    produce_fmnist(broker, topics.input, 3, data_dir=FMNIST)
    typo = topics.input.replace("images-", "imagse-")
    flag = "--topic"
    args = ["replay", "--bootstrap-servers", broker, "--report", str(tmp_path / "out" / "r.json"), "--idle-ms", "500"]
    if mode == "rescore":
        args += ["--topic", typo, "--model", str(tiny_model), "--device", "cpu"]
    else:  # the input topic is there; the results topic the audit joins is the typo
        typo, flag = topics.results.replace("results-", "resluts-"), "--results-topic"
        args += ["--mode", "audit", "--topic", topics.input, "--results-topic", typo]
    line = one_error(ganomaly(*args))
    assert line.startswith(f"error: topic '{typo}' ({flag}") and f"does not exist on {broker}" in line, line
    named = line.split("; it has ", 1)[1]
    closest = topics.input if mode == "rescore" else topics.results
    assert named.split(", ")[0] == closest, line  # the typo's closest real name comes first
    assert len(named.split(" and ")[0].split(", ")) <= 5, line  # a few at most, however many the broker holds
    assert typo not in _topics(broker)  # asking created nothing
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("selection", "message"), [
    (["--start-offsets", "9:5"], "--start-offsets names partition 9, but topic '{t}' has partitions 0-1"),
    (["--end-offsets", "0:2,7:1,8:1"], "--end-offsets names partitions 7,8, but topic '{t}' has partitions 0-1"),
    (["--partitions", "0,3"], "--partitions names partition 3, but topic '{t}' has partitions 0-1"),
    (["--partitions", "0", "--start-offsets", "1:2"], "--start-offsets names partition 1, which --partitions 0 leaves out"),
], ids=["start offset", "end offsets", "partitions", "offset outside --partitions"])
def test_replay_of_a_partition_the_topic_lacks_is_refused(broker: str, tiny_model: Path, tmp_path: Path, selection: list[str],
                                                          message: str) -> None:
    topics = Topics(broker, partitions=2)
    produce_fmnist(broker, topics.input, 6, data_dir=FMNIST)  # records to replay: the old code replayed them all and exited 0
    out = tmp_path / "out"
    line = one_error(ganomaly("replay", "--bootstrap-servers", broker, "--topic", topics.input, "--model", str(tiny_model), "--device", "cpu",
                              "--report", str(out / "r.json"), "--scores", str(out / "s.csv"), "--idle-ms", "500", *selection))
    assert line == "error: " + message.format(t=topics.input)
    assert not out.exists()


def test_replay_with_partitions_the_topic_has_still_runs(broker: str, tiny_model: Path) -> None:
    topics = Topics(broker, partitions=2)
    produce_fmnist(broker, topics.input, 6, data_dir=FMNIST)
    done = ganomaly("replay", "--bootstrap-servers", broker, "--topic", topics.input, "--model", str(tiny_model), "--device", "cpu",
                    "--partitions", "0,1", "--start-offsets", "0:0,1:0", "--end-offsets", "1", "--idle-ms", "2000")
    assert done.returncode == 0, done.stderr[-3000:]
    brief = json.loads(done.stdout.strip().splitlines()[-1])
    filled = {r.partition for r in read_topic(broker, topics.input, want=6, timeout_s=20)}
    assert brief["complete"] and brief["records"] == len(filled)  # the first record of each partition that has one


def test_produce_from_a_folder_without_images_names_it_and_the_types_looked_for(broker: str, tmp_path: Path) -> None:
    topics = Topics(broker, partitions=1)
    empty = tmp_path / "images" / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("not an image")
    (empty / "scan.PDF").write_bytes(b"%PDF-1.4")
    line = one_error(ganomaly("produce", "--bootstrap-servers", broker, "--topic", topics.input, "--from", "folder", "--path", str(empty)))
    assert line.startswith(f"error: no images in {empty} ") and ".png" in line and ".jpg" in line, line
    listing = tmp_path / "list.txt"
    listing.write_text("\n  \n")
    line = one_error(ganomaly("produce", "--bootstrap-servers", broker, "--topic", topics.input, "--from", "files", "--path", str(listing)))
    assert line == f"error: the file list {listing} names no files"
    assert read_topic(broker, topics.input, settle_s=1.0, timeout_s=10) == []


def test_produce_says_an_unreachable_broker_on_its_own_first_line(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    line = one_error(ganomaly("produce", "--bootstrap-servers", closed, "--data-dir", str(FMNIST), "--count", "1", "--connect-timeout-s", "2",
                              timeout=120))
    assert line.startswith(f"error: cannot reach the Kafka broker at {closed}")


def test_produce_draws_its_progress_bar_on_a_terminal_only(broker: str) -> None:
    topics = Topics(broker, partitions=1)
    piped = ganomaly("produce", "--bootstrap-servers", broker, "--topic", topics.input, "--data-dir", str(FMNIST), "--count", "5")
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["sent"] == 5
    assert piped.stderr == ""  # redirected: no bar, no carriage returns
    # On a terminal the bar is there (tqdm's disable=None decides by isatty).
    main_fd, term = pty.openpty()
    fcntl.ioctl(term, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal's size (a new pty has 0 columns)
    try:
        done = ganomaly("produce", "--bootstrap-servers", broker, "--topic", topics.input, "--data-dir", str(FMNIST), "--count", "5",
                        stderr=term)
        os.close(term)
        drawn = b""
        while True:
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main_fd)
    assert done.returncode == 0 and json.loads(done.stdout)["sent"] == 5
    assert b"5/5" in drawn, drawn


def _alert(i: int) -> m.Result:
    ref = m.InputRef(topic="images", partition=0, offset=i, key=f"img-{i}")
    return m.Result(id=ref.id, input=ref, image_id=ref.key, source="cam-1", score=2.0, score_normalised=1.5, threshold=1.0, is_anomaly=True,
                    model_version="m-test", record_timestamp_ms=1_000_000 + i, scored_at_ms=1_000_005 + i, latency_ms=5.0, worker="w")


def test_alerts_count_bounds_the_backlog_and_the_followed_alerts_together(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    sink = RedisSink(client, prefix=prefix, ttl_s=60, maxlen=10_000, status_ttl_s=60, abort=threading.Event(), backoff_max_s=1)
    base = ["alerts", "--redis-url", redis_url, "--redis-prefix", prefix]

    def printed(out: str) -> list[str]:
        return [line.split()[5] for line in out.splitlines()]  # each line's result id (after id, severity, source, score, thr)

    try:
        sink.write(OutputBatch(results=[_alert(i) for i in range(8)]))  # the workers' own alert stream
        t0 = time.monotonic()
        done = ganomaly(*base, "--follow", "--seconds", "60", "--count", "5", timeout=120)
        assert done.returncode == 0, done.stderr
        assert printed(done.stdout) == [_alert(i).id for i in range(3, 8)]  # the five most recent, oldest first
        assert time.monotonic() - t0 < 30  # five printed: nothing left to wait for

        client.delete(f"{prefix}:alerts")
        sink.write(OutputBatch(results=[_alert(i) for i in range(100, 103)]))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([GANOMALY, *base, "--follow", "--seconds", "60", "--count", "5"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            backlog = [proc.stdout.readline() for _ in range(3)]  # then it follows
            sink.write(OutputBatch(results=[_alert(i) for i in range(200, 204)]))  # four new: one too many for --count 5
            out, err = proc.communicate(timeout=30)  # ends by itself once five are printed, long before --seconds
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == 0, err
        assert printed("".join(backlog) + out) == [_alert(i).id for i in (100, 101, 102, 200, 201)]
    finally:
        for k in client.scan_iter(f"{prefix}:*"):
            client.delete(k)
