"""Resident memory of a scoring process fed batches of every size stays flat with the worker's heap trimming.

Runs in a fresh interpreter, so the C heap starts clean. Without trimming the same run grows by
about 500 MB over the passes after the first (1,048 -> 1,575 MB, measured) (glibc keeps freed batch-sized buffers; worker/heap.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.helpers import ROOT

CHILD = r"""
import json, random, sys, tempfile
from pathlib import Path
import torch
from ganomaly.artifact import load_artifact
from ganomaly.cli.commands.bench_inputs import untrained_artifact
from worker.heap import HeapTrimmer

def rss_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024

torch.set_num_threads(1)
art = load_artifact(untrained_artifact(32, 1, Path(tempfile.mkdtemp()), 64), torch.device("cpu"))
scorer = art.scorer(torch.device("cpu"), None, traced=True)
trimmer = HeapTrimmer(float(sys.argv[1]))
sizes = list(range(1, 257))
random.Random(0).shuffle(sizes)
sizes = sizes[:96]
after = []
for _ in range(3):
    for n in sizes:
        scorer.score(torch.rand(n, 1, 32, 32))
        trimmer.maybe_trim()
    after.append(rss_mb())
print(json.dumps({"rss_mb": after, "trims": trimmer.trims}))
"""


def test_batches_of_every_size_leave_resident_memory_flat_with_trimming() -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, "1e-9"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    first, last = got["rss_mb"][0], got["rss_mb"][-1]
    assert got["trims"] >= 3 * 96 - 3
    assert last - first < 60, f"resident memory grew {last - first:.0f} MB over two passes of the same batch sizes: {got}"
