"""Prometheus metrics and the HTTP endpoints probes use: /metrics, /healthz, /readyz."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LAT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# score_normalised is 0 at the held-out normals' median and 1 at the threshold, the same scale for
# every model, so one set of buckets serves all; fine steps between 0 and 1, where drift shows first
_SCORE_BUCKETS = (-1.0, -0.5, -0.25, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class WorkerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.scored = Counter("ganomaly_images_scored_total", "Images scored", ["model_version"], registry=r)
        self.anomalies = Counter("ganomaly_anomalies_total", "Images over the threshold", ["model_version"], registry=r)
        self.dead_letters = Counter("ganomaly_dead_letters_total", "Inputs sent to the dead-letter topic", ["reason"], registry=r)
        self.batch_size = Histogram("ganomaly_batch_size", "Images per scored batch", buckets=_SIZE_BUCKETS, registry=r)
        self.queue_wait = Histogram("ganomaly_queue_wait_seconds", "Record taken off the poll queue -> its batch starts scoring (decoding and batching)", buckets=_LAT_BUCKETS, registry=r)
        self.compute = Histogram("ganomaly_compute_seconds", "Model time per batch", buckets=_LAT_BUCKETS, registry=r)
        self.sink = Histogram("ganomaly_sink_seconds", "Kafka + Redis write time per output batch", buckets=_LAT_BUCKETS, registry=r)
        self.e2e = Histogram("ganomaly_end_to_end_seconds", "Record timestamp -> outputs acknowledged", buckets=_LAT_BUCKETS, registry=r)
        self.in_flight = Gauge("ganomaly_in_flight", "Records polled but not yet acknowledged", registry=r)
        self.queue_depth = Gauge("ganomaly_queue_depth", "Items waiting per internal queue", ["queue"], registry=r)
        self.lag = Gauge("ganomaly_consumer_lag", "High watermark minus position", ["topic", "partition"], registry=r)
        self.paused = Gauge("ganomaly_paused_partitions", "Partitions paused for backpressure", registry=r)
        self.assigned = Gauge("ganomaly_assigned_partitions", "Partitions assigned to this worker", registry=r)
        self.retries = Counter("ganomaly_output_retries_total", "Output writes retried (an outage or a refusal being waited out)", ["sink"], registry=r)
        self.converted = Counter("ganomaly_images_converted_total", "Images converted to the model's channel count (--channel-policy convert)",
                                 ["from_channels", "to_channels"], registry=r)
        self.values_omitted = Counter("ganomaly_dead_letter_values_omitted_total",
                                      "Dead letters written without their original bytes (too large for the dead-letter topic)", registry=r)
        self.commits = Counter("ganomaly_commits_total", "Offset commits", ["outcome"], registry=r)
        self.model_swaps = Counter("ganomaly_model_swaps_total", "Hot model switches", registry=r)
        self.model_refused = Counter("ganomaly_model_refused_total", "New model versions refused (corrupt, failed warm-up)", registry=r)
        self.model_info = Gauge("ganomaly_model_info", "The model in use (value 1)", ["model_version", "threshold"], registry=r)
        # drift: on data like the held-out normals, half the scores fall below 0 and a share
        # expected_anomaly_rate above 1; deploy/k8s/base/prometheusrule.yaml alerts on departures
        self.score = Histogram("ganomaly_score_normalised", "Scores on the calibrated scale: 0 at the held-out normals' median, 1 at the threshold",
                               ["model_version"], buckets=_SCORE_BUCKETS, registry=r)
        self.expected_rate = Gauge("ganomaly_expected_anomaly_rate", "Share of normal images the threshold was calibrated to flag (NaN under a threshold override)",
                                   ["model_version"], registry=r)

    def set_model(self, version: str, threshold: float, expected_rate: float) -> None:
        self.model_info.clear()
        self.model_info.labels(version, f"{threshold:.6g}").set(1)
        self.expected_rate.clear()
        self.expected_rate.labels(version).set(expected_rate)


class Health:
    """Liveness: every loop reported within ``stale_s``; readiness: model loaded and partitions assigned."""

    def __init__(self, stale_s: float = 30.0) -> None:
        self.stale_s = stale_s
        self._beats: dict[str, float] = {}
        self.model_loaded = False
        self.assigned = False
        self._lock = threading.Lock()

    def beat(self, loop: str) -> None:
        with self._lock:
            self._beats[loop] = time.monotonic()

    def live(self) -> tuple[bool, dict[str, float]]:
        now = time.monotonic()
        with self._lock:
            ages = {k: round(now - v, 2) for k, v in self._beats.items()}
        return all(a < self.stale_s for a in ages.values()), ages

    def ready(self) -> bool:
        return self.model_loaded and self.assigned and self.live()[0]


def serve_http(host: str, port: int, metrics: WorkerMetrics, health: Health, extra: Callable[[], dict] | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server dispatches on
            if self.path.startswith("/metrics"):
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                ok, ages = health.live()
                self._send(200 if ok else 503, json.dumps({"live": ok, "loop_age_s": ages}).encode())
            elif self.path.startswith("/readyz"):
                ok = health.ready()
                body = {"ready": ok, "model_loaded": health.model_loaded, "assigned": health.assigned, **(extra() if extra else {})}
                self._send(200 if ok else 503, json.dumps(body).encode())
            else:
                self._send(404, b"not found")

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # probes every few seconds: keep them out of the logs
            return

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:  # a port another process holds is a setting to change, not a crash
        from ganomaly.errors import UserError

        msg = f"cannot serve metrics on {host}:{port} ({e.strerror or e}); pick another --metrics-port (env GANOMALY_METRICS_PORT), 0 for none"
        raise UserError(msg) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
