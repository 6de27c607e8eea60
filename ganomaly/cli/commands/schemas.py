"""``ganomaly schemas``: the JSON Schemas of the messages the worker reads and writes."""

from __future__ import annotations

import json

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ganomaly.settings import LogLevel, OutputDir


class SchemasSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_SCHEMAS_", frozen=True)
    out: OutputDir | None = Field(None, description="directory to write <name>.schema.json files (default: print)")
    log_level: LogLevel = "warning"


def run_schemas(s: SchemasSettings) -> None:
    from ganomaly.contracts.messages import all_schemas

    schemas = all_schemas()
    if s.out is None:
        print(json.dumps(schemas, indent=2))
        return
    s.out.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (s.out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2) + "\n")

