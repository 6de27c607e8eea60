"""The retraining job's settings (``ganomaly trainer``)."""


from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel


class TrainerSettings(ConnectedSettings):
    """Env prefix ``GANOMALY_TRAINER_``; the broker, Redis, the model store and the feedback topic
    are read from the names every process shares (``GANOMALY_BOOTSTRAP_SERVERS``, ...)."""

    model_config = SettingsConfigDict(env_prefix="GANOMALY_TRAINER_", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    feedback_topic: str = Field("image-feedback", **shared_env("GANOMALY_FEEDBACK_TOPIC"))
    group_id: str = Field("ganomaly-trainer", description="consumer group on the feedback topic")
    data_dir: Path = Field(Path("/var/lib/ganomaly/confirmed"), description="the durable confirmed-image set")
    model_store: Path = Field(Path("/var/lib/ganomaly/models"), description="the model store (shared with the workers)",
                              **shared_env("GANOMALY_MODEL_STORE"))
    redis: RedisSettings = Field(default_factory=RedisSettings)
    bootstrap_model: Path | None = Field(None, description="artifact to register as current when Redis has none")
    every: float | None = Field(None, gt=0, description="seconds between runs (default: run once, as a CronJob)")
    min_new_normals: int = Field(100, ge=1, description="refit only with at least this many new confirmed normals")
    warm_start: bool = Field(True, description="start from the champion's weights (else from scratch)")
    include_original: bool = Field(True, description="add the champion's original training data when available")
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-4, gt=0)
    target_fpr: float = Field(0.01, gt=0, lt=1)
    swa_start: int = Field(0, ge=0, description="as in train: ship the average of the challenger's epoch-end weights from this epoch (0: off)")
    ema_decay: float = Field(0.0, ge=0, lt=1, description="as in train: ship a moving average of the challenger's weights with this decay (0: off)")
    seed: int = 0
    fpr_tolerance: float = Field(0.01, ge=0)
    auroc_tolerance: float = Field(0.01, ge=0)
    min_anomalies: int = Field(5, ge=1)
    idle_ms: int = Field(2000, ge=100)
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    lock_timeout_s: float = Field(600.0, ge=0, description="wait this long for a concurrent run to finish")
    device: str = "auto"
    log_level: LogLevel = "info"
