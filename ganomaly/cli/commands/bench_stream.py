"""``ganomaly bench stream``: end-to-end worker throughput and latency against a real broker and Redis.

For each (max_batch_size, max_wait_ms) pair: (1) pre-fill a fresh topic with N PNGs
and time a worker draining it (images/s acknowledged, i.e. results in Kafka and
Redis, from the first record polled to the last answered), next to the raw batched
model throughput of the same process on the same images (decode excluded; bench_raw.py)
and decode+score without Kafka; (2) offer the worker that rate live,
from a producer process (bench_producer.py), and time what it sustains with the producer and the
broker's writes on the same cores (``live_max``); (3) publish at half of that and report p50/p99
latency from record timestamp to outputs acknowledged, and where it went (``latency_parts_ms``:
arrival, wait, compute, output; bench_latency.py). Starts its own Tansu broker unless
--bootstrap-servers names one (the default shown for it is then unused); Redis must already answer
at --redis-url (the README's set-up starts one), under a key prefix of the run's own.

With --frames camera the images are 640x480 colour JPEG camera frames (quality 85) into a
letterbox model of --shape (e.g. 128x3), and each pair runs twice: with the JPEG decoder's
draft (DCT-scaled) decoding and with full decoding, so the rows show what draft saves end to end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ganomaly.cli.commands.bench import check_shape
from ganomaly.cli.commands.bench_inputs import camera_frames, png_images, untrained_artifact
from ganomaly.cli.commands.bench_latency import LatencyLog
from ganomaly.cli.commands.bench_live import WorkerThread, paced_phase
from ganomaly.cli.commands.bench_producer import write_payloads
from ganomaly.cli.commands.bench_raw import raw_baseline
from ganomaly.cli.commands.common import DEFAULT_DATA_DIR, Amp
from ganomaly.connections.compose import ConnectedSettings
from ganomaly.connections.kafka import KafkaSettings, as_kafka
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel

if TYPE_CHECKING:
    import torch


class BenchStreamSettings(ConnectedSettings):
    """The broker is one started for the run unless --bootstrap-servers (or GANOMALY_BOOTSTRAP_SERVERS) names one."""

    model_config = SettingsConfigDict(env_prefix="GANOMALY_BENCH_", frozen=True)

    images: int = Field(4000, ge=100, description="images pre-filled per pair")
    shape: str = Field("32x1", description="SIZExCHANNELS of the model and images")
    pairs: str = Field("64:5,128:10,256:20", pattern=r"^[1-9]\d*:\d+(\.\d+)?(,[1-9]\d*:\d+(\.\d+)?)*$",
                       description="comma-separated max_batch_size:max_wait_ms, sizes from 1, waits in ms from 0 (e.g. 64:5,256:20)")
    live_seconds: float = Field(5.0, ge=0, le=3600, allow_inf_nan=False, description="latency phase length (0 skips)")
    model: Path | None = Field(None, description="artifact to use (default: an untrained one of --shape; speed does not depend on weights)")
    width: int = Field(64, ge=1, description="base width (ngf) of the untrained default model: 64 is GANomaly's; a small one (4) "
                                             "costs almost nothing, so the run measures the pipeline's own ceiling, what a worker "
                                             "whose accelerator scores for free would reach")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    partitions: int = Field(4, ge=1, description="partitions of the fresh topics; a soak on the built-in Tansu broker needs about one per "
                                                 "20,000 records it sends (e.g. 64 for an hour at a few hundred images/s; docs/speed.md)")
    decode_threads: int = Field(2, ge=1)
    decode_processes: int = Field(0, ge=0, description="the worker's --decode-processes (0: decode in threads)")
    torch_threads: int | None = Field(None, ge=1, description="the worker's CPU scoring threads")
    score_streams: int = Field(1, ge=1, description="the worker's --score-streams (the raw baseline is then the faster of one stream on "
                                                    "every intra-op thread and the worker's layout)")
    device: str = "auto"
    amp: Amp | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    log_level: LogLevel = "warning"
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    frames: Literal["fashion-mnist", "camera"] = Field(
        "fashion-mnist", description="fashion-mnist: PNGs of Fashion-MNIST resized to --shape; camera: synthetic 640x480 colour JPEG "
                                     "camera frames into a letterbox model of --shape, each pair run with and without JPEG draft decoding "
                                     "(mind the memory: --images 1000 of 128x3 hold 200 MB decoded)")

    soak_minutes: float = Field(0, ge=0, le=7 * 24 * 60, allow_inf_nan=False, description="> 0: a soak instead of the pairs: one worker process, batched as the first "
                                                      "--pairs entry, held at --soak-load of its measured rate for this many minutes (whole windows; "
                                                      "--live-seconds unused); a JSON row per window, a summary, exit 1 when a criterion "
                                                      "failed (docs/speed.md)")
    soak_window_s: float = Field(60.0, ge=1, allow_inf_nan=False, description="with --soak-minutes: seconds per window row (at most the "
                                                                           "soak's length)")
    soak_load: float = Field(0.5, gt=0, le=1, allow_inf_nan=False,
                             description="with --soak-minutes: the share of the worker's measured drain rate to publish at; lower it when the "
                                         "broker and the producer share the worker's cores (the drain is timed without them)")

    @field_validator("shape")
    @classmethod
    def _shape_ok(cls, v: str) -> str:
        return check_shape(v)

    @model_validator(mode="after")
    def _window_within_soak(self) -> BenchStreamSettings:  # whole windows are run: a longer one would stretch the soak
        if self.soak_minutes > 0 and self.soak_window_s > 60 * self.soak_minutes:
            msg = f"--soak-window-s ({self.soak_window_s:g}) must be at most the soak's length ({60 * self.soak_minutes:g} s)"
            raise ValueError(msg)
        return self


def _cpu_seconds() -> float:
    """CPU time of this process and of its live children (the worker's decode processes)."""
    total = sum(os.times()[:2])
    tick = os.sysconf("SC_CLK_TCK")
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()  # Linux-only, as is this bench
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _host_cpu() -> list[int]:
    """The host's CPU time counters (/proc/stat: user nice system idle iowait irq softirq steal)."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def _steal_pct(before: list[int], after: list[int]) -> float:
    """Share of the host's CPU time the hypervisor gave to other machines in between: on a shared VM this
    moves from run to run, so rows say how much of the machine the benchmark actually had."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    return round(100 * d[7] / max(1, sum(d)), 1)


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)) * 1000, 1) if xs else None


def run(s: BenchStreamSettings) -> int:
    """Print one JSON row per measurement; with --soak-minutes, the soak's rows, and exit 1 when a criterion failed."""
    from ganomaly.device import resolve_device

    resolve_device(s.device)  # a device this machine lacks is one error line, before anything starts
    if s.soak_minutes > 0:  # another benchmark on the same settings, in its own module
        from ganomaly.cli.commands.bench_soak import run_soak

        rows = run_soak(s)
        return 0 if rows and rows[-1].get("passed") else 1
    measure(s)
    return 0


def measure(s: BenchStreamSettings) -> list[dict[str, Any]]:
    """The rows of every (pair, variant), each printed as it is measured."""
    import torch

    from ganomaly.device import resolve_device
    from ganomaly.devstack import start_broker, stop

    size, ch = (int(v) for v in s.shape.lower().split("x"))
    device = resolve_device(s.device)
    camera = s.frames == "camera"
    # inputs first: a missing dataset is one error line, with no broker started for nothing
    payloads = camera_frames(s.images) if camera else png_images(s.images, size, ch, s.data_dir)
    tmp = Path(tempfile.mkdtemp(prefix="ganomaly-bench-"))
    proc = None
    previous = signal.signal(signal.SIGTERM, _interrupted)  # a SIGTERM (timeout, a supervisor) cleans up as Ctrl-C does
    try:
        kafka = s.kafka
        if "bootstrap_servers" not in s.kafka.model_fields_set:  # no broker named: start one for the run
            proc, bootstrap = start_broker(log_path=tmp / "tansu.log")
            kafka = as_kafka(bootstrap)
        check_services(s, kafka)
        if camera:
            # the same weights twice, one decoding JPEGs in draft: the rows differ only in how frames decode
            variants = [(untrained_artifact(size, ch, tmp, s.width, camera=True, jpeg_draft=d), d) for d in (True, False)]
            if s.model is not None:
                variants = [(s.model, None)]
        else:
            variants = [(s.model or untrained_artifact(size, ch, tmp, s.width), None)]
        rows: list[dict[str, Any]] = []
        default_threads = torch.get_num_threads()
        for pair in s.pairs.split(","):
            mbs, wait = pair.split(":")
            for model_path, draft in variants:
                torch.set_num_threads(default_threads)
                row = _measure(s, kafka, model_path, payloads, int(mbs), float(wait), device, size, ch)
                if camera:
                    row |= {"frames": "camera 640x480 JPEG q85", "resize": "letterbox", "jpeg_draft": draft}
                rows.append(row)
                print(json.dumps(row), flush=True)
        return rows
    finally:
        on_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave the broker running
        signal.signal(signal.SIGTERM, previous)
        if proc is not None:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)  # untrained models (up to 150 MB each for camera frames)
        signal.signal(signal.SIGINT, on_int)


def check_services(s: BenchStreamSettings, kafka: KafkaSettings) -> None:
    """The broker and Redis answer, or one error line says which does not, before minutes of set-up."""
    from ganomaly.connections.startup import StartupWait, wait_for_kafka, wait_for_redis

    wait = StartupWait(s.connect_timeout_s)
    wait_for_kafka(wait, kafka)
    wait_for_redis(wait, s.redis)


def _time_drain(log: LatencyLog, images: int, batch: int, th: WorkerThread, deadline: float, cpu0: float) -> tuple[float, float | None, float]:
    """(images/s, steady images/s, the process's CPU ms per image) of a worker draining ``images`` pre-filled records.

    The rate is every image over the time from the first record polled to the last outputs
    acknowledged: it includes filling the pipeline and emptying it, so it never flatters. Timed from
    the first acknowledgement instead, the work already in flight then (the next decoded batch; with
    two score streams the other stream's batch too) counted with no time charged for it: two streams
    read 1.17 of raw at 1,000 images. The steady rate is between the moments 10 % and 90 % had been
    answered (None when less than six full batches' worth of images, or half the drain, lay
    between). The CPU is this process's (all its threads) from the worker's start to the end, per
    image: steadier than images/s on a shared machine, and the cost a deployment pays per image.
    """
    marks: list[tuple[float, int]] = []
    for share in (0.1, 0.9):
        want = max(1, int(images * share))
        while len(log.e2e) < want and time.monotonic() < deadline and th.is_alive():
            time.sleep(0.002)
        marks.append((time.perf_counter(), len(log.e2e)))
    while len(log.e2e) < images and time.monotonic() < deadline and th.is_alive():
        time.sleep(0.002)
    th.check(f"{len(log.e2e)} of {images} pre-filled images answered in 600 s", done=len(log.e2e) >= images)
    cpu_ms = 1000 * (_cpu_seconds() - cpu0) / len(log.e2e)
    if log.first_polled is not None and log.last_done is not None:
        rate = len(log.e2e) / (log.last_done - log.first_polled)
    else:  # results without their stages (not the worker's score stage): from the first acknowledgement
        rate = len(log.e2e) / (time.perf_counter() - (log.first_at or 0.0))
    (t0, n0), (t1, n1) = marks
    steady = (n1 - n0) / (t1 - t0) if n1 - n0 >= max(images // 2, 6 * batch) else None  # fewer batches: too lumpy to say
    return rate, steady, cpu_ms


def _interrupted(*_: object) -> None:
    raise KeyboardInterrupt


def _measure(s: BenchStreamSettings, kafka: KafkaSettings, model_path: Path, payloads: list[bytes], mbs_i: int, wait_f: float,
             device: torch.device, size: int, ch: int) -> dict[str, Any]:
    """One (model, max_batch_size, max_wait_ms) run: raw model, decode+score, a worker draining a topic, then live latency."""
    import torch

    from ganomaly.artifact import load_artifact
    from ganomaly.connections.kafka import ensure_topics
    from ganomaly.data.images import decode_image
    from producers import ImagePublisher
    from worker.app import Worker
    from worker.settings import WorkerSettings
    from worker.stages.score import stream_threads

    art = load_artifact(model_path, device)
    scorer = art.scorer(device, s.amp, traced=True)  # the worker's scorer: the ratio compares the pipeline, not two executions
    t0 = time.perf_counter()
    decoded = torch.from_numpy(np.stack([decode_image(p, art.input_spec) for p in payloads]))
    decode_ms = 1000 * (time.perf_counter() - t0) / len(payloads)
    streams, threads = s.score_streams, stream_threads(device, s.score_streams, s.torch_threads)  # the worker's layout
    host0 = _host_cpu()
    base = raw_baseline(scorer, decoded, mbs_i, device, streams, threads)
    raw, raw_cpu_ms = base.images_per_s, base.cpu_ms_per_image
    raw_steal = _steal_pct(host0, _host_cpu())

    def decode_and_score(batch: list[bytes]) -> None:
        scorer.score(torch.from_numpy(np.stack([decode_image(p, art.input_spec) for p in batch])))

    # freshly stacked batches are new inputs to the traced scorer, whose first calls on them re-profile
    # (about a second: with --images 200 this figure read 209 images/s beside a raw 5,567)
    for shape in {mbs_i, len(payloads) % mbs_i} - {0}:
        decode_and_score(payloads[:shape])
    t0 = time.perf_counter()
    for i in range(0, len(payloads), mbs_i):
        decode_and_score(payloads[i : i + mbs_i])
    decode_score = len(payloads) / (time.perf_counter() - t0)

    tag = uuid.uuid4().hex[:8]
    topics = {k: f"bench-{k}-{tag}" for k in ("in", "res", "alr", "dlq")}
    ensure_topics(kafka.config(), topics.values(), s.partitions)
    with ImagePublisher(kafka, topics["in"]) as pub:
        for i, p in enumerate(payloads):
            pub.publish(p, key=f"img-{i}", source=f"cam-{i % 4}")
    ws = WorkerSettings(
        kafka=kafka, input_topic=topics["in"], results_topic=topics["res"], alerts_topic=topics["alr"],
        dlq_topic=topics["dlq"], group_id=f"bench-{tag}", model=model_path, device=s.device, amp=s.amp, max_batch_size=mbs_i,
        max_wait_ms=wait_f, redis=s.redis, redis_prefix=f"{s.redis.redis_prefix}-bench-{tag}", metrics_port=0, session_timeout_ms=3000, connect_timeout_s=s.connect_timeout_s,
        heartbeat_interval_ms=500, decode_threads=s.decode_threads, decode_processes=s.decode_processes, torch_threads=s.torch_threads,
        score_streams=s.score_streams, max_in_flight=max(2048, 8 * mbs_i), resume_in_flight=512,
        result_ttl_s=600,
    )
    w = Worker(ws)
    w.on_acked = log = LatencyLog()
    th = WorkerThread(w)
    cpu0, host0 = _cpu_seconds(), _host_cpu()
    th.start()
    deadline = time.monotonic() + 600
    while log.first_at is None and time.monotonic() < deadline and th.is_alive():
        time.sleep(0.001)
    th.check("no record answered in 600 s", done=log.first_at is not None)
    e2e, steady, cpu_ms = _time_drain(log, s.images, mbs_i, th, deadline, cpu0)
    drain_steal = _steal_pct(host0, _host_cpu())
    live: list[float] = []
    live_max = live_rate = live_sent = None
    if s.live_seconds > 0:
        payload_file = write_payloads(payloads, Path(tempfile.mkdtemp(prefix="ganomaly-bench-live-")) / "payloads.pkl")
        content_type = "image/jpeg" if s.frames == "camera" else "image/png"
        try:
            # The most it sustains live: offered the drain rate by a producer on the same cores, as the
            # half-load phase's will be (the drain is timed without it, and reads high on a small machine).
            live_max, _ = paced_phase(kafka, topics["in"], payload_file, e2e, s.live_seconds, content_type, log, "live-max", th)
            live_rate = max(10.0, 0.5 * live_max)
            _, live_sent = paced_phase(kafka, topics["in"], payload_file, live_rate, s.live_seconds, content_type, log, "live", th)
            live = list(log.e2e)
        finally:
            shutil.rmtree(payload_file.parent, ignore_errors=True)
    w.request_stop()
    th.join(timeout=60)
    batch_ms = 1000 * mbs_i / raw  # one full batch's compute, from the raw model's throughput
    target_ms = wait_f + 2 * batch_ms + 50
    row = {
        "bench": "stream", "shape": f"{size}x{size}x{ch}", "max_batch_size": mbs_i, "max_wait_ms": wait_f, "images": s.images,
        "device": str(device), "raw_model_images_per_s": round(raw, 1), "decode_plus_score_images_per_s": round(decode_score, 1),
        "end_to_end_images_per_s": round(e2e, 1), "ratio_to_raw": round(e2e / raw, 3),
        # between 10 % and 90 % answered: the pipeline full at both ends (no filling or emptying)
        "steady_images_per_s": round(steady, 1) if steady else None,
        "end_to_end_cpu_ms_per_image": round(cpu_ms, 3), "raw_model_cpu_ms_per_image": round(raw_cpu_ms, 3),
        # the worker's own CPU that went to the model: unlike the wall-clock ratio, not moved by the broker and
        # Redis sharing this machine or by the hypervisor's steal (a deployment runs those elsewhere)
        "cpu_ratio_to_raw": round(raw_cpu_ms / cpu_ms, 3) if cpu_ms else None, "model_width": s.width, "decode_processes": s.decode_processes,
        # the rate it sustained when offered the drain rate live (a producer and the broker's writes on its cores), and half that
        "live_max_images_per_s": round(live_max, 1) if live_max else None, "live_rate_images_per_s": round(live_rate, 1) if live_rate else None,
        "live_sent": live_sent, "live_answered": len(live) if live_sent is not None else None,
        "latency_p50_ms": _pct(live, 50), "latency_p99_ms": _pct(live, 99), "torch_threads": torch.get_num_threads(), "score_streams": streams,
        "raw_by_layout_images_per_s": base.by_layout,  # STREAMSxTHREADS: the baseline is the faster
        # what a stream at half load should see at worst: a batch's wait, the batch in progress and its own, plus 50 ms
        "batch_compute_ms": round(batch_ms, 1), "latency_target_ms": round(target_ms, 1),
        "latency_p99_within_target": (_pct(live, 99) or 0.0) <= target_ms if live else None,
        "latency_parts_ms": log.summary_ms() if live else None,  # arrival / wait / compute / output (bench_latency.py)
        "decode_ms_per_image": round(decode_ms, 3), "host_steal_pct_raw": raw_steal, "host_steal_pct_drain": drain_steal,
    }
    return row
