"""``ganomaly bench stream --soak-minutes M``: one real worker held at half load (--soak-load) for M minutes.

What an operator sizing a deployment wants to know before trusting a worker for days: does its
memory stay flat, do its queues stay short, does its latency hold, and is every input answered?

1. Starts a Tansu broker (unless --bootstrap-servers names one), creates fresh input, results,
   alerts and dead-letter topics (--partitions), and starts ONE ``ganomaly worker`` as a
   subprocess (the model of ``bench stream``: --model, else an untrained one of --shape and
   --width; --max-batch-size and --max-wait-ms from the first --pairs entry; Redis from the settings,
   under a key prefix of its own that is deleted at the end), so the resident memory measured
   (/proc/PID/status VmRSS, its decode processes included) is the worker's alone.
2. Pre-fills --images images, one record per batch as the live stream sends them, and times the
   worker draining them (from the results' record timestamps, the first batch excluded): its
   maximum rate on this machine for such a stream.
3. Publishes at --soak-load (0.5) of that rate from a separate producer process (it does not share the bench's
   interpreter lock) for M minutes, rounded up to whole windows of --soak-window-s.
4. A reader consumes the results and dead-letter topics; once a second the worker's /metrics
   (queue depths per internal queue, in-flight records, consumer lag) and RSS are sampled. One
   JSON row per window: results, p50/p99/max latency (the result record's timestamp, set when the
   worker sent it, minus the input record's timestamp), the worker's RSS, queue and in-flight maxima.
5. Stops the producer, waits for the worker to catch up, checks that every input offset got a
   result or a dead letter and that the group's committed offsets reach the input topic's ends
   (measured the Tansu-safe way, ganomaly/connections/offsets.py), SIGTERMs the worker and checks
   it exits 0. A summary row says pass or fail per criterion (issue 22): RSS growth after warm-up
   (the window ending at min(5 min, 10 % of the run)) under 5 %; queue depths and in-flight not
   growing; p99 steady; 0 lost; committed to the end. "Not growing" compares the windows in the last
   third after warm-up with those in the first third: the later median (of the per-window maxima, or
   of the per-window p99) may exceed the earlier by 50 % plus a slack (one max batch of images for
   queues, max_wait_ms for p99), because at half load those figures swing by about that much from
   window to window.

Ctrl-C (or SIGTERM) stops the producer, the worker and the broker: each runs in its own session,
so the interrupt reaches only this process, which then ends them.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ganomaly.cli.commands.bench_inputs import camera_frames, png_images, untrained_artifact
from ganomaly.cli.commands.bench_producer import PacedProducer, end_session, write_payloads
from ganomaly.cli.commands.bench_soak_io import Reader, rss_mb, scrape
from ganomaly.cli.commands.bench_stream import check_services

if TYPE_CHECKING:
    from ganomaly.cli.commands.bench_stream import BenchStreamSettings
    from ganomaly.connections.kafka import KafkaSettings

SAMPLE_S = 1.0
# Tansu 0.6's in-memory store stopped answering fetches between 30,000 and 35,000 one-record batches
# into a partition (measured; docs/speed.md): the soak's own broker warns well before that
TANSU_BATCHES_PER_PARTITION = 20_000


def _pcts(lat_ms: list[float]) -> dict[str, float | None]:
    if not lat_ms:
        return {"latency_p50_ms": None, "latency_p99_ms": None, "latency_max_ms": None}
    p50, p99 = np.percentile(lat_ms, [50, 99])
    return {"latency_p50_ms": round(float(p50), 1), "latency_p99_ms": round(float(p99), 1), "latency_max_ms": round(max(lat_ms), 1)}


def _flat(series: list[float | None], slack: float) -> bool:
    """The last third's median within 1.5x the first third's plus ``slack`` (None values skipped): medians,
    so that one noisy window on a shared machine neither hides a trend nor makes one."""
    xs = [x for x in series if x is not None]
    if len(xs) < 2:
        return True
    k = max(1, len(xs) // 3)
    return float(np.median(xs[-k:])) <= 1.5 * float(np.median(xs[:k])) + slack


def _worker(s: BenchStreamSettings, kafka: KafkaSettings, model: Path, topics: dict[str, str], group: str, prefix: str, port: int,
            mbs: int, wait: float, log: Path) -> subprocess.Popen:
    env = {**os.environ, **kafka.as_env(), "GANOMALY_REDIS_URL": s.redis.url(), "PYTHONUNBUFFERED": "1"}
    if s.redis.redis_ca_file is not None:
        env["GANOMALY_REDIS_CA_FILE"] = str(s.redis.redis_ca_file)
    args = ["--input-topic", topics["in"], "--results-topic", topics["res"], "--alerts-topic", topics["alr"], "--dlq-topic", topics["dlq"],
            "--group-id", group, "--model", str(model), "--device", s.device, "--max-batch-size", str(mbs), "--max-wait-ms", str(wait),
            "--redis-prefix", prefix, "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--session-timeout-ms", "3000",
            "--heartbeat-interval-ms", "500", "--decode-threads", str(s.decode_threads), "--decode-processes", str(s.decode_processes),
            "--max-in-flight", str(max(2048, 8 * mbs)), "--resume-in-flight", "512",
            # results expire soon and the alert stream is short: an hour's outputs would otherwise fill a shared Redis
            "--result-ttl-s", "300", "--alerts-stream-maxlen", "10000", "--log-level", s.log_level]
    args += ["--amp", s.amp] if s.amp else []
    args += ["--torch-threads", str(s.torch_threads)] if s.torch_threads else []
    args += ["--score-streams", str(s.score_streams)]
    return subprocess.Popen([sys.executable, "-m", "ganomaly", "worker", *args], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _end(proc: subprocess.Popen | None, timeout_s: float) -> int | None:
    """SIGTERM the process's group (its own session), then SIGKILL after ``timeout_s``; its exit code."""
    return end_session(proc, timeout_s) if proc is not None else None


def _clean_redis(s: BenchStreamSettings, prefix: str) -> None:
    from ganomaly.connections.redis import make_redis

    try:
        r = make_redis(s.redis)
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 1000):
            r.delete(*keys[i : i + 1000])
    except Exception as e:  # noqa: BLE001 - cleaning a shared Redis is a courtesy, not the result
        print(f"soak: keys {prefix}* left in Redis: {type(e).__name__}: {e}", file=sys.stderr)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # a SIGTERM (timeout, a supervisor) cleans up as Ctrl-C does


def _check(ok: bool, what: str, log: Path) -> None:
    """Stop the soak with one error line naming what failed and the worker's last word (its log has the rest)."""
    if not ok:
        from ganomaly.errors import UserError

        msg = f"soak: {what}; the worker's last log line: {_last_line(log)} (log {log})"
        raise UserError(msg)


def _last_line(log: Path) -> str:
    lines = [ln for ln in (log.read_text(errors="replace").splitlines() if log.exists() else []) if ln.strip()]
    return lines[-1][-400:] if lines else "no output"


def run_soak(s: BenchStreamSettings) -> list[dict[str, Any]]:
    from ganomaly.connections.kafka import as_kafka, ensure_topics, make_consumer
    from ganomaly.connections.offsets import fixed_ends
    from ganomaly.devstack import free_port, start_broker, stop
    from producers import ImagePublisher

    size, ch = (int(v) for v in s.shape.lower().split("x"))
    mbs, wait = int(s.pairs.split(",")[0].split(":")[0]), float(s.pairs.split(",")[0].split(":")[1])
    windows = max(1, math.ceil(s.soak_minutes * 60 / s.soak_window_s - 1e-9))
    tmp = Path(tempfile.mkdtemp(prefix="ganomaly-soak-"))
    tag = uuid.uuid4().hex[:8]
    topics = {k: f"soak-{k}-{tag}" for k in ("in", "res", "alr", "dlq")}
    group, prefix, port = f"soak-{tag}", f"{s.redis.redis_prefix}-soak-{tag}", free_port()
    broker = worker = producer = None
    reader: Reader | None = None
    wlog = tmp / "worker.log"
    on_term = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        kafka = s.kafka
        if "bootstrap_servers" not in s.kafka.model_fields_set:
            broker, bootstrap = start_broker(log_path=tmp / "tansu.log")
            kafka = as_kafka(bootstrap)
        check_services(s, kafka)
        camera = s.frames == "camera"
        # camera frames decode in draft (DCT-scaled), what a camera deployment would ship (docs/speed.md)
        model = s.model or untrained_artifact(size, ch, tmp, s.width, camera=camera, jpeg_draft=camera)
        payloads = camera_frames(s.images) if camera else png_images(s.images, size, ch, s.data_dir)
        ensure_topics(kafka.config(), topics.values(), s.partitions)
        # one record per batch, as the paced live stream arrives: a worker reads many small batches
        # more slowly than a few large ones, and the load is a share of what it drains of the former
        with ImagePublisher(kafka, topics["in"], linger_ms=0) as pub:
            for i, p in enumerate(payloads):
                pub.publish(p, key=f"fill-{i}", source="soak-fill")
                pub.producer.flush()
        reader = Reader(kafka, topics["res"], topics["dlq"])
        reader.start()
        worker = _worker(s, kafka, model, topics, group, prefix, port, mbs, wait, wlog)
        deadline = time.monotonic() + 600
        while reader.answered < len(payloads) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.05)
        _check(reader.answered >= len(payloads), f"the worker drained {reader.answered} of {len(payloads)} pre-filled images", wlog)
        ts = np.array([t for t, _ in reader.take()[0]])
        drain = float((ts > ts.min()).sum() / max(1e-3, (ts.max() - ts.min()) / 1000))
        rate = s.soak_load * drain
        seconds = windows * s.soak_window_s
        producer = PacedProducer(kafka, topics["in"], write_payloads(payloads, tmp / "payloads.pkl"), rate, seconds,
                                 "image/jpeg" if camera else "image/png", tmp / "producer.log", name="soak")
        rows: list[dict[str, Any]] = []
        start_row = {"bench": "soak-start", "drain_images_per_s": round(drain, 1), "load": s.soak_load, "rate_images_per_s": round(rate, 1), "seconds": seconds,
                     "windows": windows, "worker_pid": worker.pid, "producer_pid": producer.pid,
                     "broker_pid": broker.pid if broker else None, "input_topic": topics["in"], "group": group,
                     "worker_log": str(wlog)}
        records = rate * seconds + len(payloads)
        per_partition = round(records / s.partitions)
        start_row["records_per_partition_est"] = per_partition
        if broker is not None and per_partition > TANSU_BATCHES_PER_PARTITION:
            start_row["warning"] = (f"Tansu's in-memory store stops answering fetches past about 30,000 record batches in a partition "
                                    f"(docs/speed.md); this run sends about {per_partition} records, most in batches of one, to each of "
                                    f"{s.partitions} partitions: give --partitions {math.ceil(records / TANSU_BATCHES_PER_PARTITION)} "
                                    f"or more, or --bootstrap-servers for a broker that holds the volume")
            print(f"soak: warning: {start_row['warning']}", file=sys.stderr, flush=True)
        print(json.dumps(start_row), flush=True)
        rows.append(start_row)
        t0 = time.monotonic()
        for k in range(windows):
            end = t0 + (k + 1) * s.soak_window_s
            samples: list[dict[str, Any]] = []
            while (now := time.monotonic()) < end:
                time.sleep(min(SAMPLE_S, end - now))
                if worker.poll() is not None:  # a failed soak (exit 1), not a bad setting: say so and end here
                    row = {"bench": "soak-summary", "passed": False, "failed": f"the worker exited with code {worker.returncode} "
                           f"in window {k}", "worker_exit_code": worker.returncode, "worker_last_log_line": _last_line(wlog),
                           "worker_log": str(wlog)}
                    print(f"soak: failed: {row['failed']}; its last log line: {row['worker_last_log_line']}", file=sys.stderr, flush=True)
                    print(json.dumps(row), flush=True)
                    return [*rows, row]
                try:
                    samples.append(scrape(port) | {"rss": rss_mb(worker.pid)})
                except OSError:
                    pass
            got, dead = reader.take()
            lat = [float(a - b) for a, b in got]
            queues = {q: max(x["queues"].get(q, 0) for x in samples) for q in sorted({q for x in samples for q in x["queues"]})}
            row = {"bench": "soak", "window": k, "t_s": round(time.monotonic() - t0, 1), "results": len(got),
                   "images_per_s": round(len(got) / s.soak_window_s, 1), "dead_letters": dead, **_pcts(lat),
                   "worker_rss_mb": samples[-1]["rss"] if samples else None, "worker_rss_mb_max": max((x["rss"] for x in samples), default=None),
                   "queue_depth_max": queues, "queue_depth_total_max": max((sum(x["queues"].values()) for x in samples), default=None),
                   "in_flight_max": max((x["in_flight"] for x in samples), default=None), "lag_max": max((x["lag"] for x in samples), default=None)}
            print(json.dumps(row), flush=True)
            rows.append(row)
        sent = producer.summary(timeout_s=60)
        producer = None
        # every input offset the topic holds now, the Tansu-safe way
        c = make_consumer(kafka.config(), group_id=None)
        try:
            from kafka import TopicPartition

            tps = [TopicPartition(topics["in"], p) for p in sorted(c.partitions_for_topic(topics["in"]) or ())]
            c.assign(tps)
            ends = fixed_ends(c, tps, timeout_s=30)
        finally:
            c.close()
        total = sum(ends.values())
        t_catch = time.monotonic()
        while reader.answered < total and time.monotonic() - t_catch < 120 and worker.poll() is None:
            time.sleep(0.1)
        catch_up_s = round(time.monotonic() - t_catch, 1)
        g = make_consumer(kafka.config(), group_id=group)
        try:
            committed: dict[Any, int | None] = {}
            while time.monotonic() - t_catch < 150:
                committed = {tp: g.committed(tp) for tp in tps}
                if all((committed[tp] or 0) >= ends[tp] for tp in tps):
                    break
                time.sleep(0.5)
            exit_code = _end(worker, 60)
            committed = {tp: g.committed(tp) for tp in tps}  # a clean stop commits what it finished last
        finally:
            g.close()
        reader.stopping = True
        rows.append(_summary(s, rows[1:], size, ch, mbs, wait, drain, rate, seconds, total, sent, reader, catch_up_s,
                             all((committed[tp] or 0) >= ends[tp] for tp in tps), exit_code))
        print(json.dumps(rows[-1]), flush=True)
        return rows
    finally:
        # a second Ctrl-C (or the SIGINT a wrapper such as `timeout` forwards) must not cut the clean-up short
        on_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        if producer is not None:
            producer.end(5)
        _end(worker, 30)
        if reader is not None:
            reader.stopping = True
        if broker is not None:
            stop(broker)
        if worker is not None:  # else nothing was written under the prefix (and Redis may not even answer)
            _clean_redis(s, prefix)
        signal.signal(signal.SIGINT, on_int)


def _summary(s: BenchStreamSettings, wins: list[dict[str, Any]], size: int, ch: int, mbs: int, wait: float, drain: float, rate: float,
             seconds: float, total: int, sent: dict[str, Any], reader: Reader, catch_up_s: float, committed_to_end: bool,
             exit_code: int | None) -> dict[str, Any]:
    warm_s = min(300.0, 0.1 * seconds)
    w0 = next(i for i, w in enumerate(wins) if w["t_s"] >= warm_s - 1e-6)  # the window whose end closes warm-up
    rss0, rss1 = wins[w0]["worker_rss_mb"], wins[-1]["worker_rss_mb"]
    growth = round(100 * (rss1 - rss0) / rss0, 2) if rss0 and rss1 else None
    after = wins[w0 + 1 :] or wins[w0:]
    qs = [w["queue_depth_total_max"] for w in wins]
    inf = [w["in_flight_max"] for w in wins]
    p99 = [w["latency_p99_ms"] for w in wins]
    lost = total - reader.answered
    verdict = {"rss_growth_under_5pct": growth is not None and growth < 5.0,
               "queue_depths_flat": _flat([w["queue_depth_total_max"] for w in after], mbs) and _flat([w["in_flight_max"] for w in after], mbs),
               "p99_steady": _flat([w["latency_p99_ms"] for w in after], wait), "none_lost": lost == 0, "committed_to_end": committed_to_end,
               "worker_exit_0": exit_code == 0}
    return {"bench": "soak-summary", "minutes": s.soak_minutes, "seconds": seconds, "window_s": s.soak_window_s, "shape": f"{size}x{size}x{ch}",
            "frames": s.frames, "model": str(s.model) if s.model else f"untrained width {s.width}", "device": s.device,
            "max_batch_size": mbs, "max_wait_ms": wait, "partitions": s.partitions, "drain_images_per_s": round(drain, 1),
            "load": s.soak_load, "rate_images_per_s": round(rate, 1), "producer_sent": sent.get("sent"), "producer_images_per_s": sent.get("images_per_s"),
            "inputs": total, "answered": reader.answered, "dead_letters": reader.dead, "duplicates": reader.duplicates, "lost": lost,
            "committed_to_end": committed_to_end, "worker_exit_code": exit_code, "catch_up_s": catch_up_s, "warmup_window": w0,
            "rss_mb_after_warmup": rss0, "rss_mb_end": rss1, "rss_growth_pct": growth, "queue_depth_total_max_per_window": qs,
            "in_flight_max_per_window": inf, "latency_p99_ms_per_window": p99, "latency_p99_ms_first": p99[0] if p99 else None,
            "latency_p99_ms_after_warmup": wins[w0]["latency_p99_ms"], "latency_p99_ms_last": p99[-1] if p99 else None,
            "pass": verdict, "passed": all(verdict.values())}
