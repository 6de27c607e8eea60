"""A replay that cannot read its whole stretch says so and fails (issue 19, defect 1), instead of reporting a part as the whole.

The broker goes away while the replay is still reading: a proxy between the replay and the broker
(tests/proxy.py) lets the first fetch of partition 0 through, then kills the broker and cuts the
line. The rest of the partition cannot be read, and ``ganomaly replay`` exits 1 with
``incomplete:`` lines naming it, and a report whose ``stretch`` says what was read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ganomaly.cli.main import main as cli
from ganomaly.connections.kafka import ensure_topics, make_producer
from ganomaly.devstack import free_port, start_broker, stop
from tests.proxy import KafkaResponseCut

pytestmark = pytest.mark.integration

RECORD = 1024 * 1024
IN_P0 = 20  # 20 MiB in partition 0: more than one fetch (Tansu answers with about 5 MiB)


def test_broker_gone_mid_read_exits_1_with_incomplete_lines(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inner, outer = free_port(), free_port()
    proc, bootstrap = start_broker(inner, advertised_port=outer, log_path=tmp_path / "tansu.log")
    # Every connection goes through the proxy. The first response carrying 4 MiB or more is partition 0's first
    # fetch (the reader's probe for each partition's end fetches one 1 MiB record): the broker is killed and the
    # line cut right after it, so the replay holds part of partition 0 and can never fetch the rest.
    try:
        with KafkaResponseCut(outer, inner, min_bytes=4 * RECORD, on_cut=proc.kill) as line:
            common = {"bootstrap_servers": [bootstrap]}
            ensure_topics(common, ["big"], 2)
            prod = make_producer(common)
            for i in range(IN_P0):
                # one record per batch: the end probe then fetches a single 1 MiB record, under the cut's 4 MiB
                prod.send("big", os.urandom(RECORD), partition=0, key=f"p0-{i}".encode()).get(timeout=30)
            for i in range(5):
                prod.send("big", os.urandom(1000), partition=1, key=f"p1-{i}".encode())
            prod.flush()
            prod.close()
            rc = cli(["replay", "--bootstrap-servers", bootstrap, "--topic", "big", "--model", str(tiny_model), "--device", "cpu",
                      "--idle-ms", "2000", "--report", str(tmp_path / "r.json")])
            assert line.cut_after is not None and proc.wait(10) is not None  # the broker really went away mid-read
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
