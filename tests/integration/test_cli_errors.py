"""Bad input a user can type, through the real ``ganomaly`` console script: one ``error:`` line, exit 2, nothing half-written.

Also the README's own commands that used to fail: ``feedback --result-id`` against a real broker,
and ``stack status`` after ``stack down`` next to the machine's Redis.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ganomaly.connections.kafka import ensure_topics, make_producer
from ganomaly.data.idx import load_split
from ganomaly.devstack import free_port
from producers import encode_png
from tests.conftest import FMNIST
from tests.integration.helpers import read_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
GANOMALY = str(Path(sys.executable).parent / "ganomaly")  # the installed console script, not main() in-process


def ganomaly(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([GANOMALY, *args], capture_output=True, text=True, env=full, cwd=ROOT, timeout=timeout, check=False)


@dataclass(frozen=True)
class Inputs:
    tmp: Path
    model: Path
    corrupt: Path
    small: Path
    empty: Path
    a_file: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Inputs:
    root = tmp_path_factory.mktemp("cli-errors")
    corrupt = root / "corrupt"
    shutil.copytree(tiny_model, corrupt)
    weights = corrupt / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the middle of the weights
    weights.write_bytes(bytes(data))
    images, labels = load_split(FMNIST, "t10k")
    small = root / "small"
    small.mkdir()
    for i in np.flatnonzero(labels == 1)[:40]:  # 36 train + 4 held out: fewer than one batch of 64
        (small / f"{i}.png").write_bytes(encode_png(images[i]))
    empty = root / "empty"
    empty.mkdir()
    a_file = root / "a-file.png"
    a_file.write_bytes((small / os.listdir(small)[0]).read_bytes())
    return Inputs(root, tiny_model, corrupt, small, empty, a_file)


Case = tuple[str, Callable[[Inputs, Path], list[str]], str]
CASES: list[Case] = [
    ("missing model", lambda i, o: ["evaluate", "--model", str(i.tmp / "nope"), "--report", str(o / "r.json")], "is not a directory"),
    ("missing data dir", lambda i, o: ["train", "--out", str(o / "m"), "--data-dir", str(i.tmp / "nope")], "no train-images-idx3-ubyte"),
    ("missing folder", lambda i, o: ["train", "--dataset", "folder", "--folder", str(i.tmp / "nope"), "--out", str(o / "m")],
     "is not a directory"),
    ("folder is a file", lambda i, o: ["train", "--dataset", "folder", "--folder", str(i.a_file), "--out", str(o / "m")], "is not a directory"),
    ("empty folder", lambda i, o: ["train", "--dataset", "folder", "--folder", str(i.empty), "--out", str(o / "m")], "holds 0 readable images"),
    ("fewer images than a batch", lambda i, o: ["train", "--dataset", "folder", "--folder", str(i.small), "--out", str(o / "m"), "--epochs", "1",
                                                "--device", "cpu"], "36 training images (after holding out 4 for validation) is fewer than one batch of 64"),
    ("wrong class, evaluate", lambda i, o: ["evaluate", "--model", str(i.model), "--class", "12", "--device", "cpu", "--report", str(o / "r.json")],
     "class 12 does not occur in the t10k split"),
    ("wrong class, train", lambda i, o: ["train", "--class", "12", "--out", str(o / "m"), "--device", "cpu"], "class 12 does not occur in the train split"),
    ("bad flag value", lambda i, o: ["train", "--out", str(o / "m"), "--epochs", "zero"], "--epochs (env GANOMALY_TRAIN_EPOCHS)"),
    ("bad number", lambda i, o: ["train", "--out", str(o / "m"), "--target-fpr", "2"], "--target-fpr"),
    ("bad device", lambda i, o: ["train", "--out", str(o / "m"), "--device", "gpu9"], "--device 'gpu9'"),
    ("bad choice", lambda i, o: ["replay", "--mode", "rewind"], "argument --mode: invalid choice: 'rewind'"),
    ("bad choice, produce --from", lambda i, o: ["produce", "--from", "camera"], "argument --from: invalid choice"),
    ("bad log level", lambda i, o: ["feedback", "--verdict", "normal", "--log-level", "loud"], "argument --log-level: invalid choice"),
    ("bad list item", lambda i, o: ["bench", "model", "--batch-sizes", "1,x"], "--batch-sizes[1]"),
    ("bench stream: bad Redis URL", lambda i, o: ["bench", "stream", "--redis-url", "foo://x", "--width", "4", "--images", "100", "--device", "cpu"],
     "bad Redis URL"),
    ("bench stream: a size of 0", lambda i, o: ["bench", "stream", "--pairs", "0:20"], "sizes from 1"),
    ("bad list choice", lambda i, o: ["bench", "model", "--variants", "fast,turbo"], "--variants[1]"),
    ("bad list shape", lambda i, o: ["bench", "model", "--shapes", "32x1,33x1"], "shape '33x1'"),
    ("bad partition list", lambda i, o: ["replay", "--partitions", "0,x"], "--partitions"),
    ("bad result id", lambda i, o: ["feedback", "--verdict", "normal", "--result-id", "images:3"], "bad result id 'images:3'"),
    ("negative offset in result id", lambda i, o: ["feedback", "--verdict", "normal", "--result-id", "images:0:-5"], "bad result id 'images:0:-5'"),
    ("image id alone", lambda i, o: ["feedback", "--verdict", "anomaly", "--image-id", "f003.jpg"],
     "--image-id 'f003.jpg' alone cannot be used: the trainer fetches the image by its input coordinates, so give --result-id"),
    ("unknown flag", lambda i, o: ["feedback", "--verdict", "normal", "--result-ids", "images:3:1234"],
     "unrecognized arguments: --result-ids images:3:1234 (see 'ganomaly feedback --help')"),
    ("missing required", lambda i, o: ["feedback", "--result-id", "images:3:1234"], "--verdict (env GANOMALY_FEEDBACK_VERDICT) is required"),
    ("no command", lambda i, o: [], "the following arguments are required: COMMAND"),
    ("corrupt artifact, evaluate", lambda i, o: ["evaluate", "--model", str(i.corrupt), "--device", "cpu", "--report", str(o / "r.json")],
     "sha256"),
    ("corrupt artifact, models add", lambda i, o: ["models", "add", "--artifact", str(i.corrupt), "--model-store", str(o / "store")], "sha256"),
    ("missing model store", lambda i, o: ["models", "list", "--model-store", str(o / "store")], "does not exist"),
    ("threshold without a value", lambda i, o: ["models", "threshold", "m-0123456789abcdef", "--model-store", str(o / "store")],
     "threshold needs --value X (the new threshold) or --clear"),
    ("threshold value and clear", lambda i, o: ["models", "threshold", "m-0123456789abcdef", "--value", "0.5", "--clear",
                                                "--model-store", str(o / "store")], "give --value X or --clear, not both"),
    ("negative threshold", lambda i, o: ["models", "threshold", "m-0123456789abcdef", "--value", "-0.5", "--model-store", str(o / "store")],
     "a threshold must be a finite number >= 0"),
    ("threshold without a version", lambda i, o: ["models", "threshold", "--value", "0.5", "--model-store", str(o / "store")],
     "threshold needs a version"),
    # Output paths that cannot be written are refused before the run, not after it (replay used to run to the end, then fail).
    ("report is a directory, replay", lambda i, o: ["replay", "--topic", "images", "--model", str(i.model), "--report", str(i.empty)],
     "is a directory: give a file path"),
    ("scores under a file, replay", lambda i, o: ["replay", "--topic", "images", "--model", str(i.model), "--scores", str(i.a_file / "s.csv")],
     "is a file, not a directory"),
    ("report under a file, evaluate", lambda i, o: ["evaluate", "--model", str(i.model), "--report", str(i.a_file / "r.json")],
     "is a file, not a directory"),
    ("plots is a file, evaluate", lambda i, o: ["evaluate", "--model", str(i.model), "--plots", str(i.a_file)], "is a file: give a directory"),
    ("out is a file, train", lambda i, o: ["train", "--out", str(i.a_file)], "is a file: give a directory"),
    ("missing labelled folder, evaluate", lambda i, o: ["evaluate", "--model", str(i.model), "--dataset", "folder", "--folder", str(i.tmp / "nope")],
     "nope does not exist"),
    ("missing model store, worker", lambda i, o: ["worker", "--model-store", str(o / "store")],
     "store does not exist (check --model-store, env GANOMALY_MODEL_STORE) and no --model was given"),
    # Permission bits say nothing to root, who may still not write in /proc: refused before any scoring too.
    ("report in /proc, evaluate", lambda i, o: ["evaluate", "--model", str(i.model), "--report", "/proc/ganomaly-nope/r.json"],
     "--report (env GANOMALY_EVAL_REPORT): cannot write in /proc"),
    ("plots under a file, evaluate", lambda i, o: ["evaluate", "--model", str(i.model), "--plots", str(i.a_file / "plots")],
     "a-file.png is a file, not a directory (got"),  # names the file in the way, not a path made up below it
]


@pytest.mark.parametrize(("argv", "message"), [pytest.param(a, m, id=n) for n, a, m in CASES])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(inputs: Inputs, argv: Callable[[Inputs, Path], list[str]], message: str) -> None:
    out = inputs.tmp / f"out-{uuid.uuid4().hex[:8]}"  # never created: outputs go below it
    done = ganomaly(*argv(inputs, out))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == lines[-1], done.stderr
    assert message in errors[0]
    assert not out.exists(), f"left {sorted(p.name for p in out.rglob('*'))}"
    assert done.stdout == ""


def test_few_held_out_images_warn_with_their_count(inputs: Inputs, tmp_path: Path) -> None:
    done = ganomaly("train", "--dataset", "folder", "--folder", str(inputs.small), "--out", str(tmp_path / "m"), "--epochs", "1",
                    "--batch-size", "16", "--ngf", "8", "--nz", "8", "--device", "cpu", "--log-level", "warning")
    assert done.returncode == 0, done.stderr
    (warning,) = [json.loads(line) for line in done.stderr.splitlines() if "few_held_out_images" in line]
    assert warning["n_val"] == 4 and "rests on only 4 held-out normal images" in warning["message"]
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["calibration"]["n"] == 4


def test_feedback_result_ids_as_the_readme_and_help_write_them(broker: str) -> None:
    topic = f"feedback-{uuid.uuid4().hex[:8]}"
    ensure_topics({"bootstrap_servers": [broker]}, [topic], 1)
    # feedback checks that each judged input exists: the README's ids name records of an `images` topic of 4 partitions
    ensure_topics({"bootstrap_servers": [broker]}, ["images"], 4)
    prod = make_producer({"bootstrap_servers": [broker]})
    for partition, n in ((0, 3), (1, 6), (3, 1235)):
        for i in range(n):
            prod.send("images", value=b"%d" % i, partition=partition)
    prod.flush()
    prod.close()
    common = ["feedback", "--bootstrap-servers", broker, "--topic", topic]
    done = ganomaly(*common, "--verdict", "normal", "--result-id", "images:3:1234")  # the README's form
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 1
    done = ganomaly(*common, "--verdict", "anomaly", "--result-id", "images:0:1,images:0:2", "--result-id", "images:1:5")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["sent"] == 3
    got = [json.loads(r.value) for r in read_topic(broker, topic, want=4)]
    assert [(g["result_id"], g["verdict"]) for g in got] == [("images:3:1234", "normal"), ("images:0:1", "anomaly"),
                                                              ("images:0:2", "anomaly"), ("images:1:5", "anomaly")]


def test_stack_status_after_down_names_the_machines_redis(tmp_path: Path, redis_url: str) -> None:
    redis_port = redis_url.rsplit(":", 1)[1].split("/")[0]
    state = ["--state-dir", str(tmp_path / "stack")]
    up = ganomaly("stack", "up", *state, "--broker-port", str(free_port()), "--partitions", "1", timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        stack_url = next(ln.split("=", 1)[1] for ln in up.stdout.splitlines() if ln.startswith("export GANOMALY_REDIS_URL="))
        assert stack_url != redis_url  # its own Redis, never the machine's
        running = ganomaly("stack", "status", *state)
        status = json.loads(running.stdout)
        assert running.returncode == 0 and status["running"] and status["redis_owner"] == "stack" and status["redis_url"] == stack_url
    finally:
        down = ganomaly("stack", "down", *state)
    assert down.returncode == 0, down.stderr
    after = ganomaly("stack", "status", *state, "--redis-port", redis_port)
    status = json.loads(after.stdout)
    assert after.returncode == 1 and not status["running"] and not status["broker_alive"]
    assert status["redis_alive"] is True and status["redis_owner"] == "machine"  # not "dead": it answers, and it is not the stack's
    assert "machine's own" in status["note"]


def test_a_worker_whose_metrics_port_is_taken_says_so_in_one_line(tiny_model: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = ganomaly("worker", "--model", str(tiny_model), "--metrics-host", "127.0.0.1", "--metrics-port", str(port),
                       "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--connect-timeout-s", "5", timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot serve metrics on 127.0.0.1:") and "--metrics-port" in last


def test_promoting_or_thresholding_a_version_the_store_lacks_names_the_store(tiny_model: Path, tmp_path: Path, redis_url: str, prefix: str) -> None:
    store = str(tmp_path / "store")
    assert ganomaly("models", "add", "--artifact", str(tiny_model), "--model-store", store).returncode == 0
    done = ganomaly("models", "promote", "m-0123456789abcdef", "--model-store", store, "--redis-url", redis_url, "--redis-prefix", prefix)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: version m-0123456789abcdef is not in the model store") and "models list" in done.stderr
    done = ganomaly("models", "threshold", "m-0123456789abcdef", "--value", "0.5", "--model-store", store, "--redis-url", redis_url,
                    "--redis-prefix", prefix)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: version m-0123456789abcdef is not in the model store") and done.stdout == ""
    version = json.loads((tiny_model / "manifest.json").read_text())["version"]
    done = ganomaly("models", "threshold", version, "--value", "0", "--model-store", store, "--redis-url", redis_url, "--redis-prefix", prefix)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "at or below the median score" in done.stderr and done.stdout == ""
