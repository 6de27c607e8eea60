"""The command line's surface: --help (readable defaults, choices, descriptions, no torch), list settings, the registry's CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from ganomaly.cli.flags import default_text, settings_from_args
from ganomaly.cli.main import build_parser, main
from ganomaly.connections.redis import RedisSettings

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ["train", "evaluate", "bench model", "bench stream", "worker", "schemas", "produce", "replay", "feedback", "trainer", "models",
            "stack", "alerts", "demo-summary", "explain", "console"]
POSITIONAL = {"models": ("action", "version"), "stack": ("action",)}


def test_the_command_list_here_is_the_clis() -> None:
    from ganomaly.cli.main import COMMANDS as TABLE

    assert sorted(TABLE) == sorted(COMMANDS)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*command.split(), "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["", "feedback", *[c for c in COMMANDS if c != "feedback"]])
def test_help_does_not_import_torch(command: str) -> None:
    # torch costs seconds of start-up; --help (and a light command's parsing) must never pay it
    code = ("import sys\nfrom ganomaly.cli.main import main\n"
            "try:\n"
            f"    rc = main({[*command.split(), '--help']!r})\n"
            "except SystemExit as e:\n"
            "    rc = e.code\n"
            "assert rc == 0, rc\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print('torch-free')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage: ganomaly" in done.stdout and done.stdout.rstrip().endswith("torch-free")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_readable_defaults_and_every_env_variable(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(command, capsys)
    for junk in ("PydanticUndefined", "SecretStr(", "PosixPath(", "default: None", "default: ''"):
        assert junk not in text, f"{command} --help shows {junk}"
    from ganomaly.connections.compose import blocks, env_name

    cls = build_parser()[1][command][0]
    flat = " ".join(text.split()).replace("- ", "-")  # argparse wraps lines, sometimes inside a name
    composed = blocks(cls)  # the shared connection blocks are flattened into flags: each of their fields is checked
    fields = [(cls, n) for n in cls.model_fields if n not in composed] + [(b, n) for b in composed.values() for n in b.model_fields]
    for owner, name in fields:
        if name not in POSITIONAL.get(command, ()):
            assert f"env {env_name(owner, name)}" in flat, f"{command} --help lacks the env variable of {name}"


def test_help_shows_secrets_as_secret_and_factories_by_what_they_compute(capsys: pytest.CaptureFixture[str]) -> None:
    worker = " ".join(_help("worker", capsys).split())
    assert "GANOMALY_REDIS_URL; default: redis://127.0.0.1:6379/0]" in worker  # the shipped default holds no password
    assert RedisSettings.model_fields["redis_url"].default.get_secret_value() == "redis://127.0.0.1:6379/0"  # ... and is the one said

    class WithSecret(BaseSettings):
        token: SecretStr = SecretStr("s3cret")

    assert default_text(WithSecret.model_fields["token"]) == "default: (secret)"
    assert "GANOMALY_WORKER_ID; default: $HOSTNAME, else <host>-<pid>]" in worker
    feedback = " ".join(_help("feedback", capsys).split())
    assert "GANOMALY_FEEDBACK_BY; default: the login name]" in feedback
    assert "GANOMALY_FEEDBACK_RESULT_ID; default: none]" in feedback
    models = " ".join(_help("models", capsys).split())
    assert "default: /var/lib/ganomaly/models]" in models


@pytest.mark.parametrize(
    ("command", "flag", "choices"),
    [
        ("replay", "--mode", "{rescore,audit}"),
        ("replay", "--amp", "{bf16,fp16}"),
        ("replay", "--channel-policy", "{convert,strict}"),
        ("produce", "--from", "{folder,files,idx,fashion-mnist}"),
        ("produce", "--reencode", "{png,jpeg}"),
        ("produce", "--compression", "{gzip,snappy,lz4,zstd}"),
        ("evaluate", "--amp", "{bf16,fp16}"),
        ("worker", "--amp", "{bf16,fp16}"),
        ("worker", "--channel-policy", "{convert,strict}"),
        ("bench stream", "--amp", "{bf16,fp16}"),
        ("train", "--score", "{latent,recon,hybrid}"),
        ("train", "--protocol", "{leave-one-out,one-class}"),
        ("feedback", "--verdict", "{normal,anomaly}"),
        ("models", "", "{list,promote,rollback,add,threshold}"),
        ("stack", "", "{up,down,status}"),
    ],
)
def test_help_lists_the_choices(command: str, flag: str, choices: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(command, capsys)
    assert f"{flag} {choices}".strip() in text


def test_every_command_has_a_description_and_models_no_phantom_flag(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()[0]
    described: dict[str, str] = {}
    for command in COMMANDS:
        leaf = parser._subparsers._group_actions[0].choices[command.split()[0]]  # type: ignore[union-attr]
        if " " in command:
            leaf = leaf._subparsers._group_actions[0].choices[command.split()[1]]  # type: ignore[union-attr]
        assert leaf.description and len(leaf.description) > 20, f"{command} has no description"
        # each its own: two commands in one module must not both show that module's docstring
        assert leaf.description not in described, f"{command} shows the description of {described.get(leaf.description)}"
        described[leaf.description] = command
    models = _help("models", capsys)
    alerts = _help("alerts", capsys)
    assert "--promote-now, --no-promote-now" in models  # documented, and a real flag
    assert "GANOMALY_ALERTS_COUNT" in alerts and "GANOMALY_COUNT" not in alerts


def _list_fields() -> list[tuple[str, str]]:
    from ganomaly.cli.flags import _is_list

    table = build_parser()[1]
    return [(command, name) for command in COMMANDS for name, f in table[command][0].model_fields.items() if _is_list(f.annotation)]


@pytest.mark.parametrize(("command", "name"), [("feedback", "result_id"), ("bench model", "shapes"), ("bench model", "batch_sizes"),
                                               ("bench model", "variants")])
def test_every_list_setting_parses_repeated_and_comma_separated(command: str, name: str) -> None:
    assert {(c, n) for c, n in _list_fields()} == {("feedback", "result_id"), ("bench model", "shapes"), ("bench model", "batch_sizes"),
                                                   ("bench model", "variants")}  # a new list setting gets its examples here
    parser, table = build_parser()
    cls = table[command][0]
    flag = "--" + name.replace("_", "-")
    examples = {"result_id": ["images:0:1", "images:0:2", "images:3:1234"], "shapes": ["16x1", "32x3", "64x1"],
                "batch_sizes": ["1", "16", "64"], "variants": ["baseline", "fast", "bf16"]}
    a, b, c = examples[name]
    required = {"feedback": ["--verdict", "normal"]}.get(command, [])
    ns = parser.parse_args([*command.split(), *required, flag, f"{a},{b}", flag, c])
    got = getattr(settings_from_args(cls, ns), name)
    assert [str(v) for v in got] == [a, b, c]
    ns = parser.parse_args([*command.split(), *required, flag, a])
    assert [str(v) for v in getattr(settings_from_args(cls, ns), name)] == [a]


def test_feedback_result_id_as_the_readme_writes_it_and_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from producers.feedback import FeedbackSettings

    parser, _ = build_parser()
    ns = parser.parse_args(["feedback", "--verdict", "normal", "--result-id", "images:3:1234"])
    assert settings_from_args(FeedbackSettings, ns).result_id == ["images:3:1234"]
    monkeypatch.setenv("GANOMALY_FEEDBACK_RESULT_ID", "images:0:7,images:1:8")
    assert FeedbackSettings(verdict="anomaly").result_id == ["images:0:7", "images:1:8"]


def test_bench_lists_parse_to_typed_values() -> None:
    from ganomaly.cli.commands.bench import BenchModelSettings

    parser, _ = build_parser()
    s = settings_from_args(BenchModelSettings, parser.parse_args(["bench", "model", "--batch-sizes", "1,16", "--shapes", "32x1"]))
    assert s.batch_sizes == [1, 16] and s.shapes == ["32x1"]


def test_settings_choices_match_the_modules_that_use_them() -> None:
    # ganomaly.cli.commands.common repeats them so that --help need not import torch
    from ganomaly.cli.commands import common
    from ganomaly.data.datasets import Protocol
    from ganomaly.model.loss import AdvLoss
    from ganomaly.model.scoring import SCORE_KINDS
    from ganomaly.training.fit import SelectBy

    assert get_args(common.Protocol) == get_args(Protocol)
    assert get_args(common.AdvLoss) == get_args(AdvLoss)
    assert get_args(common.SelectBy) == get_args(SelectBy)
    assert get_args(common.ScoreKind) == SCORE_KINDS


def test_models_list_on_a_store_that_does_not_exist_is_an_error_and_creates_nothing(tmp_path: Path,
                                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "modles"  # a typo
    assert main(["models", "list", "--model-store", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model store") and "does not exist" in err[0]
    assert not store.exists()


def test_models_add_promote_now_adds_and_points_at_the_version(tiny_model: Path, tmp_path: Path, redis_url: str, prefix: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import redis

    from ganomaly.registry import RedisPointer

    store = tmp_path / "store"
    common = ["--model-store", str(store), "--redis-url", redis_url, "--redis-prefix", prefix]
    assert main(["models", "add", "--artifact", str(tiny_model), "--promote-now", *common]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    manifest = json.loads((tiny_model / "manifest.json").read_text())
    assert out == {"current": manifest["version"], "added": manifest["version"]}
    r = redis.Redis.from_url(redis_url)
    try:
        cur = RedisPointer(r, prefix).get()
        assert cur is not None and cur.version == manifest["version"]
    finally:
        for key in r.scan_iter(f"{prefix}:*"):
            r.delete(key)


def test_stack_status_says_whose_redis_answers_when_the_stack_is_down(tmp_path: Path, redis_url: str,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # What `stack status` sees after `stack down`: no state file, and the machine's Redis still answering.
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    assert main(["stack", "status", "--state-dir", str(tmp_path / "stack"), "--redis-port", port]) == 1  # no broker
    status = json.loads(capsys.readouterr().out)
    assert status["redis_alive"] is True and status["redis_owner"] == "machine" and status["running"] is False
    assert "machine's own" in status["note"] and "stack is down" in status["note"]


@pytest.mark.parametrize(("argv", "flag"), [(["train", "--clas", "7"], "--clas"), (["feedback", "--verdict", "normal", "--result", "t:0:1"], "--result")])
def test_abbreviated_flags_are_refused(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    """argparse would take --clas for --class: a typo must not silently set another setting."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ") and flag in err


@pytest.mark.parametrize(("argv", "says"), [
    (["--pairs", "0:5"], "--pairs"),
    (["--soak-minutes", "inf"], "--soak-minutes"),
    (["--soak-minutes", "1", "--soak-load", "0"], "--soak-load"),
    (["--soak-minutes", "1", "--soak-load", "1.5"], "--soak-load"),
    (["--soak-minutes", "1", "--soak-window-s", "1e9"], "--soak-window-s"),
    (["--soak-minutes", "1", "--soak-window-s", "inf"], "--soak-window-s"),
    (["--live-seconds", "inf"], "--live-seconds"),
    (["--data-dir", "/nonexistent/fashion-mnist"], "/nonexistent/fashion-mnist"),
])
def test_bench_stream_bad_input_is_one_error_line_and_leaves_no_broker(argv: list[str], says: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = _brokers()
    assert main(["bench", "stream", "--images", "100", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert _brokers() <= before  # nothing started for a run that could not happen


def _brokers() -> set[int]:
    """Pids of running Tansu brokers (bench stream starts its own)."""
    out = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"tansu" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.add(int(pid))
        except OSError:
            pass
    return out
