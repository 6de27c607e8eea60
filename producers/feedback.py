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
    from ganomaly.contracts.messages import Feedback, InputRef


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
    image_id: str | None = Field(None, description="the image's key (image id), kept with the verdicts; needs --result-id, which says where the image is")
    by: str = Field(default_factory=getpass.getuser, description="who gives the verdict", json_schema_extra={"default_help": "the login name"})
    note: str | None = Field(None, description="free text kept with the verdict")
    connect_timeout_s: float = Field(30.0, ge=0, description="how long start-up waits for the broker and Redis before exiting with an error")
    log_level: LogLevel = "warning"


def parse_result_id(rid: str, key: str | None = None) -> InputRef:
    """``topic:partition:offset`` (the input record's coordinates, which are the result's id) -> InputRef."""
    from ganomaly.contracts.messages import InputRef
    from ganomaly.errors import UserError

    try:
        topic, part, off = rid.rsplit(":", 2)
        ref = InputRef(topic=topic, partition=int(part), offset=int(off), key=key)
    except ValueError as e:
        msg = f"bad result id {rid!r}: expected topic:partition:offset"
        raise UserError(msg) from e
    if not ref.topic or ref.partition < 0 or ref.offset < 0:
        msg = f"bad result id {rid!r}: expected topic:partition:offset with a topic name and a partition and offset of 0 or more"
        raise UserError(msg)
    return ref


def check_inputs_exist(kafka: KafkaSettings | str, refs: list[InputRef], *, connect_timeout_s: float = 30.0) -> None:
    """Raise UserError naming every ref whose topic or partition is missing, or whose offset is outside the partition's
    records now (deleted by retention, or not yet written): a verdict on it could never be trained on."""
    from ganomaly.connections.kafka import as_kafka, make_consumer
    from ganomaly.connections.offsets import partition_ranges
    from ganomaly.connections.startup import StartupWait, connect_kafka
    from ganomaly.errors import UserError

    by_topic: dict[str, set[int]] = {}
    for ref in refs:
        by_topic.setdefault(ref.topic, set()).add(ref.partition)
    c = connect_kafka(StartupWait(connect_timeout_s), as_kafka(kafka), lambda cfg: make_consumer(cfg, group_id=None))
    try:
        ranges = {topic: partition_ranges(c, topic, parts) for topic, parts in by_topic.items()}
    finally:
        c.close()
    bad = []
    for ref in refs:
        span = ranges[ref.topic][ref.partition]
        if isinstance(span, str):
            bad.append(f"{ref.id}: {span}" + (f" (topic {ref.topic!r} has no partition {ref.partition})" if span == "no such partition" else ""))
        elif ref.offset < span[0]:
            bad.append(f"{ref.id}: offset {ref.offset} is before the partition's first record ({span[0]}), deleted by retention")
        elif ref.offset >= span[1]:
            bad.append(f"{ref.id}: offset {ref.offset} is past the partition's end ({span[1]})")
    if bad:
        msg = f"no input record for result id {'; '.join(bad)}; nothing sent"
        raise UserError(msg)


def run(s: FeedbackSettings) -> int:
    from ganomaly.contracts.messages import Feedback
    from ganomaly.errors import UserError

    ids = [i for part in s.result_id for i in part.split(",") if i]
    if not ids and not s.image_id:
        msg = "give --result-id (topic:partition:offset) or --image-id"
        raise UserError(msg)
    if not ids:
        # The trainer fetches a judged image by its input coordinates; an image id alone names none (and may stand
        # for several inputs), so such a verdict could never be trained on.
        msg = (f"--image-id {s.image_id!r} alone cannot be used: the trainer fetches the image by its input coordinates, so give "
               "--result-id (the id of the result or alert, topic:partition:offset) as well")
        raise UserError(msg)
    refs = [parse_result_id(rid, s.image_id) for rid in ids]  # every id's syntax before any connection
    check_inputs_exist(s.kafka, refs, connect_timeout_s=s.connect_timeout_s)  # all or nothing: checked before anything is sent
    now = int(time.time() * 1000)
    verdicts = [Feedback(verdict=s.verdict, input=ref, result_id=rid, image_id=s.image_id, by=s.by, at_ms=now, note=s.note)
                for rid, ref in zip(ids, refs, strict=True)]
    n = post_verdicts(s.kafka, s.topic, verdicts, connect_timeout_s=s.connect_timeout_s)
    print(json.dumps({"sent": n, "topic": s.topic, "verdict": s.verdict}))
    return 0
