"""scripts/tansu_fetch_probe.py, which docs/speed.md cites for the Tansu limit, as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.helpers import ROOT

pytestmark = pytest.mark.integration
PROBE = [sys.executable, "scripts/tansu_fetch_probe.py"]


@pytest.mark.parametrize("args", [["3"], ["500", "500"], ["1000", "500"], ["--timeout-s", "0"], ["--timeout-s", "nan"], ["--timeout-s", "inf"]])
def test_bad_arguments_are_one_error_line(args: list[str]) -> None:
    out = subprocess.run([*PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: "), out.stderr


def test_a_small_probe_prints_a_line_per_checkpoint() -> None:
    out = subprocess.run([*PROBE, "200", "400", "--timeout-s", "10"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["200", "400"], lines
    assert all("from 0:" in ln and " s" in ln and ">" not in ln for ln in lines), lines  # short partitions answer at once
