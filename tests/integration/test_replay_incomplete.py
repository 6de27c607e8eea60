"""A replay that cannot read its whole stretch says so and fails (issue 19, defect 1), instead of reporting a part as the whole.

The broker goes away while the replay is still reading: a partition holding more than one fetch
(16 MiB) of records cannot be read to its end, and ``ganomaly replay`` exits 1 with
``incomplete:`` lines naming it, and a report whose ``stretch`` says what was read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ganomaly.cli.main import main as cli
from ganomaly.connections.kafka import ensure_topics, make_producer
from ganomaly.devstack import start_broker, stop
from replay import rescore as rescore_mod

pytestmark = pytest.mark.integration

RECORD = 1024 * 1024
IN_P0 = 20  # 20 MiB in partition 0: more than one 16 MiB partition fetch


def test_broker_gone_mid_read_exits_1_with_incomplete_lines(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    proc, bootstrap = start_broker(log_path=tmp_path / "tansu.log")
    try:
        common = {"bootstrap_servers": [bootstrap]}
        ensure_topics(common, ["big"], 2)
        prod = make_producer(common)
        for i in range(IN_P0):
            prod.send("big", os.urandom(RECORD), partition=0, key=f"p0-{i}".encode())
        for i in range(5):
            prod.send("big", os.urandom(1000), partition=1, key=f"p1-{i}".encode())
        prod.flush()
        prod.close()

        real_decode = rescore_mod.decode_image
        def decode_then_lose_broker(*a: Any, **kw: Any) -> Any:
            stop(proc)  # the first record is being decoded: the broker goes away
            return real_decode(*a, **kw)

        monkeypatch.setattr(rescore_mod, "decode_image", decode_then_lose_broker)
        rc = cli(["replay", "--bootstrap-servers", bootstrap, "--topic", "big", "--model", str(tiny_model), "--device", "cpu",
                  "--idle-ms", "2000", "--report", str(tmp_path / "r.json")])
    finally:
        stop(proc)
    captured = capsys.readouterr()
    assert rc == 1, captured.err[-2000:]
    incomplete = [ln for ln in captured.err.splitlines() if ln.startswith("incomplete: ")]
    assert not any(ln.startswith("error: ") for ln in captured.err.splitlines())
    report = json.loads((tmp_path / "r.json").read_text())
    st = report["stretch"]
    assert report["complete"] is False and st["complete"] is False
    assert st["partitions"]["0"]["status"] == "stalled" and st["partitions"]["0"]["expected"] == IN_P0
    assert 0 < st["partitions"]["0"]["read"] < IN_P0
    # Partition 1 (5 small records) may or may not have come in the fetches before the broker went: each stalled partition has its line.
    stalled = {p for p, v in st["partitions"].items() if v["status"] == "stalled"}
    assert {ln.split(":")[1].split()[-1] for ln in incomplete if ln.startswith("incomplete: big partition ")} == stalled
    assert all(v["read"] == v["expected"] for p, v in st["partitions"].items() if p not in stalled)
    assert any(ln.startswith(f"incomplete: the report covers {st['read']} of the stretch's {st['expected']} records") for ln in incomplete)
    assert sum(report["unreadable"].values()) == st["read"]  # random bytes: every record read was unreadable, and counted
    assert json.loads(captured.out.strip().splitlines()[-1])["complete"] is False
