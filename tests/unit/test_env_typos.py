"""A GANOMALY_* variable no command reads is a typo: one error naming it and the closest name, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GANOMALY_")}
    return subprocess.run([sys.executable, "-m", "ganomaly", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize(("env", "said"), [
    ({"GANOMALY_BOOTSTRAP_SERVER": "127.0.0.1:1"}, "GANOMALY_BOOTSTRAP_SERVER (did you mean GANOMALY_BOOTSTRAP_SERVERS?)"),
    ({"GANOMALY_TRAIN_EPOCH": "3"}, "GANOMALY_TRAIN_EPOCH (did you mean GANOMALY_TRAIN_EPOCHS?)"),
    ({"GANOMALY_TRAINER_BOOTSTRAP_SERVERS": "x:1"}, "GANOMALY_TRAINER_BOOTSTRAP_SERVERS is now GANOMALY_BOOTSTRAP_SERVERS"),
])
def test_a_misspelled_variable_is_one_error_before_anything_runs(env: dict[str, str], said: str) -> None:
    # produce would otherwise publish to the default broker: the typo must stop it before it connects
    p = _run(env, "produce", "--count", "1", "--connect-timeout-s", "1")
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: unknown environment variable: "), p.stderr
    assert said in p.stderr and p.stdout == ""


def test_names_other_commands_read_and_the_scripts_own_names_pass() -> None:
    p = _run({"GANOMALY_TRAIN_EPOCHS": "2", "GANOMALY_TRAINER_EVERY": "60", "GANOMALY_DEMO_COUNT": "5", "GANOMALY_TEST_ANYTHING": "1"}, "schemas")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("{")
