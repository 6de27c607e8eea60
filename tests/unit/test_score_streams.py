"""Score streams: the layout a worker picks, several stages sharing one ready queue, one heap trim per interval."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import torch

from ganomaly.data.images import DecodeLimits, decode_pixels
from ganomaly.model import GanomalyConfig, Generator
from ganomaly.model.scoring import Scorer
from tests.unit.stage_kit import CPU, GREY, grey_png, in_thread, model, record
from worker.conversions import ChannelConversions
from worker.heap import HeapTrimmer
from worker.metrics import Health, WorkerMetrics
from worker.model_holder import ModelHolder
from worker.offsets import OffsetTracker
from worker.stages.decode import Decoder
from worker.stages.flow import Decoded, Lifecycle
from worker.stages.score import ScoreStage, stream_threads


def test_each_cpu_stream_scores_on_its_share_of_the_threads() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(4)
        assert stream_threads(CPU, 1, None) is None  # the default: one stream, torch's own count
        assert stream_threads(CPU, 2, None) == 2  # the cores shared out
        assert stream_threads(CPU, 3, None) == 1
        assert stream_threads(CPU, 2, 3) == 3  # --torch-threads is per stream
        assert stream_threads(CPU, 1, 3) == 3
        torch.set_num_threads(1)
        assert stream_threads(CPU, 2, None) == 1  # never below one thread
        cuda = torch.device("cuda")  # only the type is read: no GPU needed
        assert stream_threads(cuda, 2, None) is None  # the device's threads are not torch's to share
    finally:
        torch.set_num_threads(before)


def test_streams_sharing_a_ready_queue_score_every_record_once(tmp_path: Path) -> None:
    serving = model(tmp_path / "m")
    ready_q: queue.Queue[list[Decoded]] = queue.Queue()
    out_q: queue.Queue[Any] = queue.Queue(maxsize=8)
    metrics, health = WorkerMetrics(), Health()
    life = Lifecycle(threading.Event(), OffsetTracker())
    heap = HeapTrimmer(0.01)
    decoder = Decoder(DecodeLimits(), ChannelConversions(metrics.converted))
    stages = [ScoreStage(ready_q, out_q, models=ModelHolder(serving), shadow=None, decoder=decoder, device=CPU, max_batch_size=8,
                         max_wait_s=0.005, worker_id="w", metrics=metrics, health=health, life=life, heap=heap, name=f"score-{i}")
              for i in range(2)]
    n = 300
    for first in range(0, n, 5):  # chunks of five, as decoders hand them on
        chunk = [Decoded(rec, decode_pixels(rec.value, GREY), 0.0) for rec in (record(i, grey_png(i)) for i in range(first, first + 5))]
        ready_q.put(chunk)
    threads = [in_thread(s.run) for s in stages]
    offsets: list[int] = []
    while len(offsets) < n:
        offsets += [r.input.offset for r in out_q.get(timeout=30).results]
    life.abort.set()
    for t in threads:
        t.join(timeout=5)

    assert sorted(offsets) == list(range(n))  # each record in exactly one stream's batch
    assert set(health.live()[1]) == {"score-0", "score-1"}  # each stream's liveness on its own


def test_streams_share_one_heap_trim_per_interval() -> None:
    heap = HeapTrimmer(0.05)
    time.sleep(0.06)
    start = threading.Barrier(8)

    def trim() -> None:
        start.wait()
        heap.maybe_trim()

    threads = [in_thread(trim) for _ in range(8)]
    for t in threads:
        t.join(timeout=5)
    assert heap.trims == 1


def test_the_raw_baseline_is_the_faster_layout_and_leaves_the_threads_as_they_were() -> None:
    from ganomaly.cli.commands.bench_raw import raw_baseline

    torch.manual_seed(0)
    scorer = Scorer(Generator(GanomalyConfig(isize=32, nc=1, ngf=8)), traced=True)
    before = torch.get_num_threads()
    base = raw_baseline(scorer, torch.rand(50, 1, 32, 32), 16, CPU, streams=2, threads=1)
    assert torch.get_num_threads() == before
    assert set(base.by_layout) == {f"1x{before}", "2x1"}
    assert round(base.images_per_s, 1) == max(base.by_layout.values()) > 0
    assert base.cpu_ms_per_image > 0
