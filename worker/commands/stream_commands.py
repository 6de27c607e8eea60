"""Stream-side subcommands: ``worker`` and ``schemas``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.settings_cli import LogLevel

if TYPE_CHECKING:
    from worker.stream.settings import WorkerSettings


class SchemasSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_SCHEMAS_", frozen=True)
    out: Path | None = Field(None, description="directory to write <name>.schema.json files (default: print)")
    log_level: LogLevel = "warning"


def run_worker(s: WorkerSettings) -> int:
    from worker.stream.app import run_worker as _run

    return _run(s)


def run_schemas(s: SchemasSettings) -> None:
    from worker.stream.messages import all_schemas

    schemas = all_schemas()
    if s.out is None:
        print(json.dumps(schemas, indent=2))
        return
    s.out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (s.out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")

