"""Stream-side subcommands: ``worker``, ``schemas`` and ``bench stream``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.settings_cli import add_settings_arguments
from worker.stream.settings import WorkerSettings


class SchemasSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_SCHEMAS_", frozen=True)
    out: Path | None = Field(None, description="directory to write <name>.schema.json files (default: print)")
    log_level: str = "warning"


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


def register_all(sub: argparse._SubParsersAction, table: dict[str, tuple[type, Callable[[Any], Any]]]) -> None:
    p = sub.add_parser("worker", help="run a streaming worker (Kafka -> GANomaly -> Kafka + Redis)",
                       description="Consume encoded images, score them in micro-batches, write results, alerts and dead letters.")
    add_settings_arguments(p, WorkerSettings)
    table["worker"] = (WorkerSettings, run_worker)
    p = sub.add_parser("schemas", help="print or write the JSON Schemas of the worker's messages")
    add_settings_arguments(p, SchemasSettings)
    table["schemas"] = (SchemasSettings, run_schemas)
    from producers.cli import register as register_produce

    register_produce(sub, table)
    from producers.feedback import register as register_feedback
    from worker.commands import replay, stack, trainer

    replay.register(sub, table)
    register_feedback(sub, table)
    trainer.register(sub, table)
    stack.register(sub, table)
    from worker.commands import bench_stream

    bench_stream.register(sub, table)
