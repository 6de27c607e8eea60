"""Every command line the README shows, run as written.

The README's code blocks are run as the user pastes them, through bash, from the repository root,
against real components: the demo (`bash scripts/demo.sh`) and the quick start (its own Tansu
broker and Redis from `ganomaly stack up`, a model trained on the spot, a worker, a stream,
alerts, verdicts, a trainer run and a replay). The environment only moves ports and state
directories out of the way of anything else on the machine; the command text is the README's.

Commands the prose names inline (the commands behind the README's numbers, such as a benchmark
that runs for hours) are parsed by the real command line, flags and all, so a renamed command or
flag fails here too. `bash scripts/test.sh` is the one command not run: it is this test suite.

A README command that none of this covers fails ``test_every_readme_command_is_covered``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis

from ganomaly.devstack import free_port, port_open
from tests.integration.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
README = ROOT / "README.md"
RUN_BY_CI = {"bash scripts/test.sh"}  # the test command itself: CI runs it, this module is part of it
DEMO = "bash scripts/demo.sh"


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _lines(block: str) -> list[str]:
    """A block's command lines, without comments (a trailing `# ...` after two spaces)."""
    out = []
    for raw in block.splitlines():
        line = re.sub(r"\s{2,}#.*$", "", raw).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def _quick_start() -> str:
    blocks = [b for b in _blocks() if "ganomaly stack up" in b]
    assert len(blocks) == 1, "the README has one quick-start block (the one that starts the stack)"
    return blocks[0]


def _inline_commands() -> list[str]:
    prose = re.sub(r"```.*?```", "", README.read_text(), flags=re.DOTALL)
    found = re.findall(r"`((?:ganomaly|python|bash) [^`]+)`", prose)
    return sorted({c for c in found if c != "ganomaly ..."})  # the commands table's header, not a command


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANOMALY_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return {**env, **extra}


@pytest.fixture
def aside() -> Iterator[None]:
    """The README's commands write under runs/: keep whatever a developer has there and put it back."""
    moved: list[tuple[Path, Path]] = []
    for name in ("quickstart", "demo"):
        p = ROOT / "runs" / name
        if p.exists():
            dst = ROOT / "runs" / f".{name}-kept-{os.getpid()}"
            p.rename(dst)
            moved.append((p, dst))
    try:
        yield
    finally:
        for p, dst in moved:
            shutil.rmtree(p, ignore_errors=True)
            dst.rename(p)


def test_every_readme_command_is_covered() -> None:
    first, *rest = _blocks()
    assert set(_lines(first)) == {DEMO} | RUN_BY_CI, "the first block is the two commands"
    assert rest == [_quick_start()], "every other code block is the quick start, run as a whole below"
    assert all(c.split()[0] in ("ganomaly", "python", "bash") for c in _inline_commands())


def test_inline_commands_exist_with_their_flags() -> None:
    """What the prose names (the commands behind its numbers, the registry steps) parses as written."""
    from ganomaly.cli.main import build_parser

    parser, _ = build_parser()
    checked = 0
    for cmd in _inline_commands():
        words = shlex.split(cmd)
        if words[0] == "ganomaly":
            # placeholders as the README writes them: <command> is any command, VERSION a version
            if "<command>" in words:
                words = [w if w != "<command>" else "worker" for w in words]
            args = [w for w in words[1:] if w != "--help"]
            if args[:1] == ["models"] and len(args) > 1 and args[1] in ("promote",):
                args = [w if w != "VERSION" else "m-0123456789abcdef" for w in args]
            try:
                parser.parse_args(args)
            except SystemExit as e:
                pytest.fail(f"README command {cmd!r} does not parse (exit {e.code})")
        elif words[0] == "python":
            script = ROOT / words[1]
            assert script.is_file(), f"README names {cmd!r}, but {words[1]} does not exist"
            out = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                                 check=False, env=_env())
            assert out.returncode == 0, f"{cmd} --help: {out.stderr[-2000:]}"
        else:
            assert cmd in RUN_BY_CI | {DEMO, "bash scripts/setup.sh"}, f"unknown README command {cmd!r}"
        checked += 1
    assert checked >= 5


def test_quick_start_as_written(tmp_path: Path, aside: None) -> None:
    broker_port, metrics_port = free_port(), free_port()
    env = _env(GANOMALY_STACK_STATE_DIR=str(tmp_path / "stack"), GANOMALY_STACK_BROKER_PORT=str(broker_port),
               GANOMALY_METRICS_PORT=str(metrics_port))
    script = "set -euo pipefail\nset -x\n" + _quick_start()
    t0 = time.monotonic()
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False)
    took = time.monotonic() - t0
    log = (ROOT / "runs/quickstart/worker.log").read_text(errors="replace") if (ROOT / "runs/quickstart/worker.log").exists() else ""
    assert out.returncode == 0, f"quick start failed after {took:.0f} s:\n{out.stderr[-6000:]}\nworker log:\n{log[-3000:]}"

    qs = ROOT / "runs/quickstart"
    manifest = json.loads((qs / "model/manifest.json").read_text())
    assert manifest["data"]["protocol"] == "one-class" and manifest["data"]["class"] == 7
    # alerts printed as JSON lines, the trainer's decision, the replay's report with its AUROC
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    decisions = [json.loads(ln) for ln in lines if '"action"' in ln]
    assert decisions and decisions[-1]["action"] in ("promoted", "rejected"), out.stdout[-3000:]
    report = json.loads((qs / "rescore.json").read_text())
    assert report["complete"] and report["counts"]["records"] == 500 and report["counts"]["labelled"] == 500
    (model,) = report["models"].values()
    assert model["scored"] == 500 and model["auroc"] > 0.8  # sneakers against the other nine classes
    # the worker ran, scored and stopped on SIGTERM without a crash; the stack is gone
    assert '"partitions_assigned"' in log and "stage_crashed" not in log and "Traceback" not in log
    assert not port_open("127.0.0.1", broker_port)
    # nothing of the quick start landed in the machine's Redis: `stack up` ran its own
    machine = redis.Redis(socket_connect_timeout=1)
    try:
        assert not list(machine.scan_iter("ganomaly:result:images:*", count=1000))
    except redis.exceptions.ConnectionError:
        pass


def _read_until_url(proc: subprocess.Popen[str], lines: list[str], url_seen: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("console: http"):
            url_seen.set()


def test_demo_as_written(tmp_path: Path, aside: None) -> None:
    """The README's demo command, as written: the product end to end and its summary, then the operator's
    console on the same stack (the URL it prints logs in), until Ctrl-C takes everything down and exits 0
    (a second Ctrl-C during that teardown used to abort it and leave the broker and Redis running)."""
    ports = {name: free_port() for name in ("BROKER", "METRICS", "CONSOLE")}
    env = _env(**{f"GANOMALY_DEMO_{name}_PORT": str(port) for name, port in ports.items()})
    errors = tmp_path / "demo.stderr"
    lines: list[str] = []
    url_seen = threading.Event()
    t0 = time.monotonic()
    with errors.open("w") as err:
        # its own process group, as a terminal's foreground job: Ctrl-C signals the whole group
        proc = subprocess.Popen(shlex.split(DEMO), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    reader = threading.Thread(target=_read_until_url, args=(proc, lines, url_seen), daemon=True)
    reader.start()
    try:
        while not url_seen.wait(1) and proc.poll() is None and time.monotonic() - t0 < 1500:
            pass
        took = time.monotonic() - t0
        text = "".join(lines)
        assert url_seen.is_set(), f"demo showed no console URL after {took:.0f} s (exit {proc.poll()}):\n{text[-3000:]}\n" \
                                  f"{errors.read_text()[-4000:]}"
        _check_summary(text)
        _check_console(text, ports["CONSOLE"])
        # Ctrl-C, then an impatient user pressing it again and again while the demo cleans up: everything still stops, exit 0
        os.killpg(proc.pid, signal.SIGINT)
        for _ in range(40):
            time.sleep(0.25)
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):  # the demo may end between the two lines
                os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=30)
        assert rc == 0, f"exit {rc} after SIGINT:\n{errors.read_text()[-3000:]}"
        # the worker and console get the Ctrl-C too and stop on their own: not reported as a failure
        assert not [ln for ln in errors.read_text().splitlines() if ln.startswith("error:")], errors.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.terminate()  # the demo's own teardown (its TERM trap), then the hard way
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        reader.join(10)
    # the stack, the worker and the console are gone
    redis_port = int(re.search(r"GANOMALY_REDIS_URL=\S*?:(\d+)", (ROOT / "runs/demo/env.sh").read_text()).group(1))  # type: ignore[union-attr]
    for what, port in [*ports.items(), ("REDIS", redis_port)]:
        assert not port_open("127.0.0.1", port), f"{what} still listens on {port} after the demo stopped"
    log = (ROOT / "runs/demo/worker.log").read_text(errors="replace")
    assert "stage_crashed" not in log and "Traceback" not in log, log[-3000:]
    assert "Traceback" not in (ROOT / "runs/demo/console.log").read_text(errors="replace")


def _check_summary(text: str) -> None:
    caught = re.search(r"Anomalies caught: (\d+) of (\d+) sent", text)
    false_alarms = re.search(r"False alarms: (\d+) of (\d+) normal images", text)
    latency = re.search(r"p50 (\d+) ms, p99 (\d+) ms", text)
    assert caught and false_alarms and latency, text[-3000:]
    sent, normals = int(caught.group(2)), int(false_alarms.group(2))
    assert sent + normals == 1000 and 20 <= sent <= 60  # 4 % of 1,000 images are other items
    # what the demo shows a newcomer: most anomalies caught, few false alarms
    assert int(caught.group(1)) >= sent // 2, text[-2000:]
    assert int(false_alarms.group(1)) <= normals // 20, text[-2000:]
    summary = json.loads((ROOT / "runs/demo/summary.json").read_text())
    assert (summary["anomalies_sent"], summary["anomalies_caught"], summary["normals_sent"], summary["false_alarms"]) == \
        (sent, int(caught.group(1)), normals, int(false_alarms.group(1)))
    for name in ("evaluate.json", "replay-audit.json", "replay-rescore.json", "worker.log"):
        assert (ROOT / "runs/demo" / name).is_file(), name


def _check_console(text: str, port: int) -> None:
    """The URL the demo shows is the console's, on this machine only, and it logs in: a session cookie, then the
    alerts page with the demo's alerts (the console reads the demo's stack and Redis prefix)."""
    heading = text.index("== 7. the operator's console: open this URL; Ctrl-C stops the demo")
    (url,) = [ln.split(" ", 1)[1].strip() for ln in text[heading:].splitlines() if ln.startswith("console: http")]
    parts = urlsplit(url)
    assert (parts.hostname, parts.port, parts.path) == ("127.0.0.1", port, "/login"), url
    (token,) = parse_qs(parts.query)["token"]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False, timeout=30) as client:
        health = client.get("/healthz")
        assert (health.status_code, health.text.strip()) == (200, "ok")
        assert client.get("/").status_code == 303  # no session yet
        assert client.get("/login", params={"token": token[::-1]}).status_code != 303 and not client.cookies  # only its token
        login = client.get(url)
        assert login.status_code == 303 and urlsplit(login.headers["location"]).path == "/", login.headers
        assert login.headers.get("set-cookie") and client.cookies
        page = client.get("/")
        assert page.status_code == 200, page.text[:2000]
        assert 'id="alerts"' in page.text and 'data-source="demo-cam"' in page.text, page.text[:3000]


def test_demo_flags() -> None:
    """--stop-at-end (or GANOMALY_DEMO_STOP_AT_END=1) is taken; anything else is one error line before any work."""
    def demo(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "scripts/demo.sh", *args], cwd=ROOT, env=_env(**extra), capture_output=True, text=True,
                              timeout=30, check=False)

    usage = demo("--help")
    assert usage.returncode == 0 and "--stop-at-end" in usage.stdout and "GANOMALY_DEMO_STOP_AT_END" in usage.stdout
    bad = demo("--stop-at-end", "--no-such-flag")
    assert bad.returncode == 2 and bad.stdout == "", bad.stdout
    assert bad.stderr.startswith("error: unknown argument --no-such-flag;") and len(bad.stderr.splitlines()) == 1, bad.stderr
    bad_env = demo("--stop-at-end", "--help", GANOMALY_DEMO_STOP_AT_END="yes")
    assert bad_env.returncode == 0  # --help first: nothing else is looked at
    bad_env = demo(GANOMALY_DEMO_STOP_AT_END="yes")
    assert bad_env.returncode == 2 and bad_env.stderr.startswith("error: GANOMALY_DEMO_STOP_AT_END=yes"), bad_env.stderr
