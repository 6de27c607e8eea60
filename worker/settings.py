"""Settings of the ``ganomaly worker`` process: env prefix ``GANOMALY_``, or CLI flags.

The broker and Redis connection settings are the shared blocks (``ganomaly.connections``);
the model store and the topic names are read from the names every process shares.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel


def _default_worker_id() -> str:
    # In Kubernetes the pod name (HOSTNAME) is stable for the pod's life.
    return os.environ.get("HOSTNAME") or f"{socket.gethostname()}-{os.getpid()}"


class WorkerSettings(ConnectedSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_", frozen=True)

    # Kafka
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    input_topic: str = Field("images", **shared_env("GANOMALY_INPUT_TOPIC"))
    results_topic: str = Field("image-results", **shared_env("GANOMALY_RESULTS_TOPIC"))
    alerts_topic: str = Field("image-alerts", **shared_env("GANOMALY_ALERTS_TOPIC"))
    dlq_topic: str = Field("image-dlq", **shared_env("GANOMALY_DLQ_TOPIC"))
    group_id: str = "ganomaly-workers"
    worker_id: str = Field(default_factory=_default_worker_id, description="client id; also names the Redis status key",
                           json_schema_extra={"default_help": "$HOSTNAME, else <host>-<pid>"})
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: int = Field(10_000, ge=1000, description="lower = faster failover and group joins")
    heartbeat_interval_ms: int = Field(2_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    max_poll_records: int = Field(500, ge=1)
    fetch_max_bytes: int = Field(52_428_800, ge=1024)
    fetch_max_wait_ms: int = Field(20, ge=0, description="how long the broker may hold a fetch for data: bounds the latency it adds")
    commit_interval_ms: int = Field(1000, ge=10, description="how often the poll thread commits finished offsets")
    producer_linger_ms: int = Field(5, ge=0)
    producer_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "none"
    delivery_timeout_ms: int = Field(30_000, ge=1000, description="per send; a failed send is retried by the worker")
    producer_max_request_bytes: int = Field(
        32 * 1024 * 1024, ge=1024,
        description="largest record the worker writes; a dead letter whose original bytes are larger (or larger than the broker takes "
                    "for the dead-letter topic) is written without them, with their size and SHA-256")
    create_topics: bool = Field(False, description="create missing topics at start (dev/test; production topics are managed)")
    topic_partitions: int = Field(4, ge=1, description="partitions for topics created with --create-topics")

    # Model and batching
    model: Path | None = Field(None, description="model artifact directory (used when the registry has no current model)")
    model_store: Path | None = Field(None, description="the model store shared with the trainer; enables hot model switches",
                                     **shared_env("GANOMALY_MODEL_STORE"))
    model_poll_s: float = Field(5.0, gt=0, description="how often to check the registry pointer in Redis")
    shadow_model: Path | None = Field(None, description="a challenger that scores the same batches into --shadow-topic only")
    shadow_topic: str = "image-results-shadow"
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    amp: Literal["bf16", "fp16"] | None = Field(None, description="autocast for scoring")
    threshold_override: float | None = Field(None, description="use this threshold instead of the artifact's")
    max_batch_size: int = Field(64, ge=1)
    max_wait_ms: float = Field(10.0, ge=0, description="batch timer, started by the batch's first image")
    decode_threads: int = Field(2, ge=1)
    decode_processes: int = Field(0, ge=0, description="0: decode in the decode threads; N: in N spawned processes, fed chunks by the "
                                                       "decode threads (off the interpreter lock: for GPU workers, whose model outruns "
                                                       "one Python process; a decoder crash then costs one dead letter, not the worker)")
    decode_chunk: int = Field(32, ge=1, description="most records a decode thread (or process) takes at once (what is queued, never waited for)")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads for CPU scoring, per score stream (default: "
                                                                       "torch's choice, one per core, shared out among the streams)")
    score_streams: int = Field(1, ge=1, le=32, description="batches scored at once, each on its own thread (on a CPU with its share of the "
                                                           "intra-op threads, so --torch-threads is then per stream); default 1. On a 2-core "
                                                           "CPU, 2 halved the median wait of 32x32 images at 256:20 and drained them faster "
                                                           "at 64:10 at a higher p99, and did not help 128x128x3 frames (docs/speed.md)")
    heap_trim_interval_s: float = Field(1.0, ge=0, allow_inf_nan=False,
                                        description="return freed C-heap pages to the system at most this often (batches of every size "
                                                    "otherwise keep growing resident memory); 0 never")
    max_in_flight: int = Field(2048, ge=1, description="pause partitions above this many unacknowledged records")
    resume_in_flight: int = Field(512, ge=0, description="resume paused partitions at or below this")

    # Input validation
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1)
    max_pixels: int = Field(40_000_000, ge=1)
    min_side: int = Field(8, ge=1)
    max_aspect: float = Field(16.0, ge=1)
    channel_policy: Literal["convert", "strict"] = Field(
        "convert", description="an image whose channel count is not the model's (a colour camera on a grayscale model): convert (default) "
                               "converts it to the model's channels (colour to luma, gray repeated), logs it once per source and counts it in "
                               "ganomaly_images_converted_total; strict dead-letters it with reason channels")

    # Redis
    redis: RedisSettings = Field(default_factory=RedisSettings)
    result_ttl_s: int = Field(7 * 24 * 3600, ge=1)
    alerts_stream_maxlen: int = Field(100_000, ge=1)
    status_ttl_s: int = Field(30, ge=1)

    # Operations
    metrics_port: int = Field(9100, ge=0, le=65535, description="HTTP /metrics, /healthz, /readyz; 0 disables")
    metrics_host: str = "0.0.0.0"  # all interfaces: a pod must be reachable by its probes
    drain_timeout_s: float = Field(20.0, ge=0, description="on SIGTERM or revoke: time to finish in-flight work")
    liveness_stale_s: float = Field(30.0, gt=0, description="/healthz fails when a loop has not reported for this long (at least "
                                                           "drain_timeout_s + 10); waiting out an outage counts as reporting")
    stall_timeout_s: float = Field(120.0, ge=0, allow_inf_nan=False,
                                   description="drain, commit and exit 1 (to be restarted) when partitions with records waiting have "
                                               "received none for this long while the broker is still heard from; 0 turns the check "
                                               "off, else at least 10")
    retry_backoff_max_s: float = Field(5.0, gt=0)
    # exit code 2 past it, so an orchestrator shows a crash loop with its reason; an outage after
    # start-up is waited out however long it lasts
    connect_timeout_s: float = Field(120.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "info"

    @model_validator(mode="after")
    def _check(self) -> WorkerSettings:
        if 0 < self.stall_timeout_s < 10:
            # below a few fetch waits and the 1 s sampling, a healthy worker between two polls would look stalled
            msg = "stall_timeout_s must be 0 (off) or at least 10 seconds"
            raise ValueError(msg)
        if self.resume_in_flight >= self.max_in_flight:
            msg = "resume_in_flight must be below max_in_flight"
            raise ValueError(msg)
        if self.model is None and self.model_store is None:
            msg = "give --model (an artifact) or --model-store (the registry), or both"
            raise ValueError(msg)
        if len({self.input_topic, self.results_topic, self.alerts_topic, self.dlq_topic, self.shadow_topic}) != 5:
            msg = "input, results, alerts, dead-letter and shadow topics must all differ"
            raise ValueError(msg)
        if self.model_store is not None and self.model_poll_s >= self.liveness_stale_s:
            # the model watcher reports between polls: a longer poll would fail /healthz every time
            msg = "model_poll_s must be shorter than liveness_stale_s"
            raise ValueError(msg)
        return self

    def kafka_common(self) -> KafkaSettings:
        """The broker settings, with the worker's id as its clients' id."""
        return self.kafka.for_client(self.worker_id)
