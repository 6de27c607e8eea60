"""Settings of ``ganomaly console``: where it listens, who may log in, and the shared broker, Redis, store and topics.

Env prefix ``GANOMALY_CONSOLE_``; the broker, Redis, the model store and the topic names are read
from the names every process shares, so the console sees what the workers and the trainer see.
Operators log in with a token: one shared ``GANOMALY_CONSOLE_TOKEN`` (recorded as "operator"), or a
users file of ``name:token`` lines (each verdict and change then names its author). There are no
default credentials: without either the console refuses to start, unless ``--demo-token`` asks for
a one-time random token (printed with the URL) for a local demo.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel


class ConsoleSettings(ConnectedSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_CONSOLE_", frozen=True)

    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 in a container)")
    port: int = Field(8080, ge=1, le=65535)
    token: SecretStr | None = Field(None, description="the operators' shared login token (recorded as user 'operator')")
    users_file: Path | None = Field(None, description="a file of 'name:token' lines, one per operator (a mounted Secret)")
    demo_token: bool = Field(False, description="make a one-time random token and print the login URL (local demos only)")
    secret_key: SecretStr | None = Field(None, description="signs session cookies; set the same one on every replica "
                                                           "(default: random per process, so sessions end on restart)")
    session_hours: float = Field(12.0, gt=0, description="how long a login lasts")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    model_store: Path = Field(Path("/var/lib/ganomaly/models"), description="the model store shared with the trainer and the workers",
                              **shared_env("GANOMALY_MODEL_STORE"))
    input_topic: str = Field("images", **shared_env("GANOMALY_INPUT_TOPIC"))
    results_topic: str = Field("image-results", **shared_env("GANOMALY_RESULTS_TOPIC"))
    feedback_topic: str = Field("image-feedback", **shared_env("GANOMALY_FEEDBACK_TOPIC"))
    shadow_topic: str = Field("image-results-shadow", description="where a shadow model's results go (the workers' --shadow-topic)")
    workers_group: str = Field("ganomaly-workers", description="the workers' consumer group, for the fleet's lag",
                               **shared_env("GANOMALY_GROUP_ID"))
    recent_alerts: int = Field(500, ge=10, le=20_000, description="how many of the newest alerts the alerts page filters")
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="larger records are not rendered (a placeholder is shown)")
    device: str = Field("cpu", description="where anomaly maps are computed: cpu, cuda or cuda:N (one image at a time: cpu is enough)")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "info"

    @model_validator(mode="after")
    def _credentials(self) -> ConsoleSettings:
        if self.token is None and self.users_file is None and not self.demo_token:
            msg = ("no credentials: set GANOMALY_CONSOLE_TOKEN (--token) or GANOMALY_CONSOLE_USERS_FILE (--users-file, 'name:token' lines), "
                   "or --demo-token for a local demo")
            raise ValueError(msg)
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            msg = "the console token is shorter than 16 characters: use a long random one (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
            raise ValueError(msg)
        return self
