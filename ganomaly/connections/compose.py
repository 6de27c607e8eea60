"""Composing the shared connection blocks into each process's settings.

A process's settings class derives from ``ConnectedSettings`` and declares the blocks it
uses as fields (``kafka: KafkaSettings``, ``redis: RedisSettings``). Each block reads its
own env names (``GANOMALY_BOOTSTRAP_SERVERS``, ``GANOMALY_REDIS_URL``, ...) whatever the
process's prefix, and the process still takes the block's settings flat
(``TrainerSettings(bootstrap_servers=..., redis_url=...)``, ``--bootstrap-servers``):
they are routed into the block, which then lays them over its env variables.

Other settings several processes must agree on (the model store, topic names) are
declared per process with ``shared_env("GANOMALY_X")``: read from that one name.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SHARED_PREFIX = "GANOMALY_"


def shared_env(name: str) -> dict[str, Any]:
    """Field keyword arguments for a setting read from one env name shared by every process (``Field(..., **shared_env(...))``)."""
    assert name.startswith(SHARED_PREFIX)
    return {"validation_alias": name}


def blocks(cls: type[BaseSettings]) -> dict[str, type[BaseSettings]]:
    """The connection blocks composed into ``cls``: field name -> block class."""
    out: dict[str, type[BaseSettings]] = {}
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseSettings):
            out[name] = ann
    return out


def env_name(cls: type[BaseSettings], name: str) -> str:
    """The env variable a field of ``cls`` is read from."""
    alias = cls.model_fields[name].validation_alias
    if isinstance(alias, str):
        return alias
    return f"{cls.model_config.get('env_prefix', '')}{name.upper()}"


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Every env variable ``cls`` reads, its blocks' included."""
    composed = blocks(cls)
    out: set[str] = set()
    for name in cls.model_fields:
        out |= env_names(composed[name]) if name in composed else {env_name(cls, name)}
    return out


def renamed(cls: type[BaseSettings]) -> dict[str, str]:
    """Per-process env names of shared settings (``GANOMALY_TRAINER_BOOTSTRAP_SERVERS``) -> the shared name now read."""
    prefix = cls.model_config.get("env_prefix", "")
    composed = blocks(cls)
    shared = {n: env_name(cls, n) for n in cls.model_fields if n not in composed and isinstance(cls.model_fields[n].validation_alias, str)}
    shared |= {n: env_name(b, n) for b in composed.values() for n in b.model_fields}
    return {f"{prefix}{n.upper()}": new for n, new in shared.items() if f"{prefix}{n.upper()}" != new}


class ConnectedSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True)

    @model_validator(mode="before")
    @classmethod
    def _compose_blocks(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # an old per-process name would otherwise be ignored without a word, and the default used instead
        stale = {old: new for old, new in renamed(cls).items() if old in os.environ}
        if stale:
            said = ", ".join(f"{old} is now {new}" for old, new in sorted(stale.items()))
            msg = f"renamed environment variables ({said}): one name for what every process shares"
            raise ValueError(msg)
        data = dict(data)
        for name, block in blocks(cls).items():
            flat = {k: data.pop(k) for k in list(data) if k in block.model_fields}
            given = data.get(name)
            if isinstance(given, block) and not flat:
                continue
            if isinstance(given, BaseSettings):
                given = given.model_dump(exclude_unset=True)
            data[name] = block(**{**(given if isinstance(given, dict) else {}), **flat})
        return data
