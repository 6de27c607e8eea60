"""The Redis connection settings every process shares, and the only place Redis clients are built.

One env vocabulary whatever the process: ``GANOMALY_REDIS_URL`` (``redis://`` or, over TLS,
``rediss://``), ``GANOMALY_REDIS_PREFIX``, ``GANOMALY_REDIS_CA_FILE`` and the timeouts.
"""

from __future__ import annotations

from typing import Any

import redis
from pydantic import Field, FilePath, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_", frozen=True, extra="ignore")

    redis_url: SecretStr = Field(SecretStr("redis://127.0.0.1:6379/0"),
                                 description="redis://[:password@]host:port/db, or rediss://... over TLS",
                                 json_schema_extra={"default_help": "redis://127.0.0.1:6379/0"})  # no credentials in it to hide
    redis_prefix: str = Field("ganomaly", description="prefix of every key written or read (results, alerts, the model pointer)")
    redis_ca_file: FilePath | None = Field(None, description="with rediss://: the CA bundle (PEM) that signed Redis's certificate "
                                                            "(default: the system's)")
    redis_connect_timeout_s: float = Field(3.0, gt=0, description="per connection attempt")
    redis_socket_timeout_s: float = Field(5.0, gt=0, description="per command; a Redis that stops answering counts as an outage after it")

    def url(self) -> str:
        return self.redis_url.get_secret_value()

    def tls(self) -> bool:
        return self.url().startswith("rediss://")


def make_redis(settings: RedisSettings, **overrides: Any) -> redis.Redis:
    """A client for ``settings``; ``overrides`` are redis-py keyword arguments (a probe's short timeouts).

    Raises ValueError for a URL redis-py cannot parse."""
    kw: dict[str, Any] = {"socket_connect_timeout": settings.redis_connect_timeout_s, "socket_timeout": settings.redis_socket_timeout_s}
    if settings.tls() and settings.redis_ca_file is not None:
        kw["ssl_ca_certs"] = str(settings.redis_ca_file)
    return redis.Redis.from_url(settings.url(), **(kw | overrides))
