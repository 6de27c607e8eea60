"""Posting verdicts to the feedback topic (library call and ``ganomaly feedback`` CLI)."""

from __future__ import annotations

import getpass
import json
import time
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ganomaly.connections.compose import ConnectedSettings, shared_env
from ganomaly.connections.kafka import KafkaSettings
from ganomaly.settings import CommaList, LogLevel

if TYPE_CHECKING:
    from ganomaly.contracts.messages import Feedback


def post_verdicts(kafka: KafkaSettings | str, topic: str, verdicts: list[Feedback], *, connect_timeout_s: float = 30.0) -> int:
    """Send and wait for every acknowledgement; returns how many were sent. ``kafka``: the broker settings, or a
    bare ``host:port`` list for a PLAINTEXT broker. Waits up to ``connect_timeout_s`` for the broker, then raises
    :class:`ganomaly.connections.startup.ConnectTimeout`."""
    from ganomaly.connections.kafka import as_kafka, make_producer
    from ganomaly.connections.startup import StartupWait, connect_kafka

    prod = connect_kafka(StartupWait(connect_timeout_s), as_kafka(kafka), lambda cfg: make_producer(cfg))
    try:
        futs = [prod.send(topic, key=v.subject.encode(), value=v.to_json()) for v in verdicts]
        prod.flush()
        for f in futs:
            f.get(timeout=30)
    finally:
        prod.close()
    return len(verdicts)


class FeedbackSettings(ConnectedSettings):
    """Env prefix ``GANOMALY_FEEDBACK_``; the broker and the feedback topic are read from the names every process shares."""

    model_config = SettingsConfigDict(env_prefix="GANOMALY_FEEDBACK_", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic: str = Field("image-feedback", description="the feedback topic the trainer reads", **shared_env("GANOMALY_FEEDBACK_TOPIC"))
    verdict: Literal["normal", "anomaly"] = Field(description="the verdict")
    result_id: CommaList[str] = Field(default_factory=list, description="the results judged, as topic:partition:offset of their inputs "
                                                                      "(the result's id, e.g. images:3:1234)")
    image_id: str | None = Field(None, description="the image's key, when judging by image rather than by result")
    by: str = Field(default_factory=getpass.getuser, description="who gives the verdict", json_schema_extra={"default_help": "the login name"})
    note: str | None = Field(None, description="free text kept with the verdict")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"


def run(s: FeedbackSettings) -> int:
    from ganomaly.contracts.messages import Feedback, InputRef
    from ganomaly.errors import UserError

    ids = [i for part in s.result_id for i in part.split(",") if i]
    if not ids and not s.image_id:
        msg = "give --result-id (topic:partition:offset) or --image-id"
        raise UserError(msg)
    now = int(time.time() * 1000)
    verdicts = []
    for rid in ids:
        try:
            topic, part, off = rid.rsplit(":", 2)
            ref = InputRef(topic=topic, partition=int(part), offset=int(off), key=s.image_id)
        except ValueError as e:
            msg = f"bad result id {rid!r}: expected topic:partition:offset"
            raise UserError(msg) from e
        verdicts.append(Feedback(verdict=s.verdict, input=ref, result_id=rid, image_id=s.image_id, by=s.by, at_ms=now, note=s.note))
    if not verdicts:
        verdicts.append(Feedback(verdict=s.verdict, image_id=s.image_id, by=s.by, at_ms=now, note=s.note))
    n = post_verdicts(s.kafka, s.topic, verdicts, connect_timeout_s=s.connect_timeout_s)
    print(json.dumps({"sent": n, "topic": s.topic, "verdict": s.verdict}))
    return 0

