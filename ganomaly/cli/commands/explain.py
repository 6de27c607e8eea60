"""``ganomaly explain``: why one image was (or was not) flagged, as pictures an operator can open.

Give a result id (the input's ``topic:partition:offset``, as on every result and alert) or an
image file. The image is read back from the input topic by its coordinates, scored by the model
that scored it (the result's ``model_version`` in Redis, else the registry's current one, or
``--model``) and written as ``overlay.png`` (the frame with its anomaly map laid over it) and
``heatmap.png`` (the map alone, on the frame's geometry), next to a JSON summary on stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from ganomaly.cli.commands.common import DEVICE
from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.connections.redis import RedisSettings
from ganomaly.settings import LogLevel, OutputDir


class ExplainSettings(ConnectedSettings):
    model_config = SettingsConfigDict(env_prefix="GANOMALY_EXPLAIN_", frozen=True)

    result_id: str | None = Field(None, description="the result to explain: topic:partition:offset of its input")
    image: Path | None = Field(None, description="or an image file to explain")
    model: Path | None = Field(None, description="the artifact to explain with (default: the model that scored the result, from the store)")
    model_store: Path | None = Field(None, description="the model store shared with the workers", **shared_env("GANOMALY_MODEL_STORE"))
    out: OutputDir = Field(Path("runs/explain"), description="directory for overlay.png and heatmap.png")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    device: str = DEVICE
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker (and Redis, with --model-store) before "
                                                             "exiting with an error")
    log_level: LogLevel = "warning"

    @model_validator(mode="after")
    def _one_input(self) -> ExplainSettings:
        if (self.result_id is None) == (self.image is None):
            msg = "give one of --result-id TOPIC:PARTITION:OFFSET and --image FILE"
            raise ValueError(msg)
        if self.model is None and self.model_store is None:
            msg = "give --model DIR (an artifact) or --model-store DIR (the registry the workers serve from)"
            raise ValueError(msg)
        return self


def _model_version_of(s: ExplainSettings, result_id: str | None) -> tuple[str, str]:
    """(version, where it came from): the result's own, else the registry's current one."""
    from ganomaly.connections.redis import make_redis
    from ganomaly.connections.startup import StartupWait, wait_for_redis
    from ganomaly.errors import UserError
    from ganomaly.registry import RedisPointer

    wait_for_redis(StartupWait(s.connect_timeout_s), s.redis)
    client = make_redis(s.redis)
    if result_id is not None:
        raw = client.get(f"{s.redis.redis_prefix}:result:{result_id}")
        if raw:
            return str(json.loads(raw)["model_version"]), "the result"
    ptr = RedisPointer(client, s.redis.redis_prefix).get()
    if ptr is None:
        msg = f"no current model in the registry (Redis prefix {s.redis.redis_prefix!r}) and no stored result {result_id}; give --model DIR"
        raise UserError(msg)
    return ptr.version, "the registry's current model"


def run(s: ExplainSettings) -> int:
    from ganomaly.artifact import load_artifact
    from ganomaly.data.images import BadImage
    from ganomaly.device import resolve_device
    from ganomaly.errors import UserError
    from ganomaly.explain import explain
    from ganomaly.registry import ModelStore

    device = resolve_device(s.device)
    if s.image is not None:
        if not s.image.is_file():
            msg = f"--image {s.image}: no such file"
            raise UserError(msg)
        data, what = s.image.read_bytes(), str(s.image)
    else:
        from ganomaly.connections.records import fetch_record
        from ganomaly.connections.startup import StartupWait, wait_for_kafka
        from producers.feedback import parse_result_id

        ref = parse_result_id(str(s.result_id))
        wait_for_kafka(StartupWait(s.connect_timeout_s), s.kafka)
        data, what = fetch_record(s.kafka, ref.topic, ref.partition, ref.offset), ref.id
    if s.model is not None:
        art, source = load_artifact(s.model, device), "--model"
    else:
        assert s.model_store is not None
        version, source = _model_version_of(s, None if s.image is not None else ref.id)
        path = ModelStore(s.model_store).path_of(version)
        if not path.is_dir():
            msg = f"model {version} (from {source}) is not in the model store {s.model_store}"
            raise UserError(msg)
        art = load_artifact(path, device)
    try:
        ex = explain(art, data, device=device)
    except BadImage as e:
        msg = f"{what} cannot be scored ({e.reason}): {e}"
        raise UserError(msg) from None
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "overlay.png").write_bytes(ex.overlay_png(art))
    (s.out / "heatmap.png").write_bytes(ex.heatmap_png(art))
    print(json.dumps({"input": what, **ex.summary(), "model_from": source, "overlay": str(s.out / "overlay.png"),
                      "heatmap": str(s.out / "heatmap.png")}))
    return 0
