"""Operators' verdicts: to the feedback topic, once per input and verdict, then visible to every viewer.

A verdict is keyed by its input's coordinates (``topic:partition:offset``), so the compacted feedback
topic keeps the latest one per input and the trainer counts an input once. The console also sends
nothing when the verdict is the one already given (a double click, two operators agreeing): it holds
a short Redis lock per alert while it compares, sends, waits for the broker's acknowledgement and only
then records the review. If the broker does not acknowledge, nothing is recorded and the operator
sees the error: a review shown as done is always on the topic.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import redis
from kafka import KafkaProducer

from console.alerts import AlertBoard, AlertView
from ganomaly.contracts.messages import Feedback, InputRef

LOCK_MS = 30_000
REVIEW_TTL_S = 90 * 24 * 3600  # a review outlives the alert stream's retention of its alert
REVIEWS_MAXLEN = 10_000
MAX_NOTE = 2_000
MAX_BULK = 2_000


class ReviewBusy(Exception):
    """Another request holds the alert's lock for longer than we wait."""


@dataclass(frozen=True)
class Outcome:
    fingerprint: str
    status: str  # "sent" or "unchanged"


class Reviewer:
    def __init__(self, board: AlertBoard, producer: KafkaProducer, feedback_topic: str) -> None:
        self.board = board
        self.r: redis.Redis = board.r
        self.producer = producer
        self.topic = feedback_topic

    @contextmanager
    def _locked(self, fingerprint: str, wait_s: float = 10.0) -> Iterator[None]:
        key, token = f"{self.board.prefix}:review-lock:{fingerprint}", uuid.uuid4().hex
        deadline = time.monotonic() + wait_s
        while not self.r.set(key, token, nx=True, px=LOCK_MS):
            if time.monotonic() > deadline:
                raise ReviewBusy(fingerprint)
            time.sleep(0.02)
        try:
            yield
        finally:
            # release only our own lock (it may have expired and been taken by another request)
            self.r.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", 1, key, token)

    def review(self, alerts: list[AlertView], verdict: str, by: str, note: str | None) -> list[Outcome]:
        """Record ``verdict`` on each alert: sent to the feedback topic unless it is already the alert's verdict."""
        if verdict not in ("normal", "anomaly"):
            msg = f"verdict must be normal or anomaly, not {verdict!r}"
            raise ValueError(msg)
        note = (note or "").strip()[:MAX_NOTE] or None
        unique = list({a.fingerprint: a for a in alerts}.values())[:MAX_BULK]
        with ExitStack() as locks:
            for a in sorted(unique, key=lambda a: a.fingerprint):  # one order: two bulk reviews cannot deadlock
                locks.enter_context(self._locked(a.fingerprint))
            self.board.attach_reviews(unique)  # under the locks: the verdicts as they are now
            todo = [a for a in unique if a.status != verdict]
            now = int(time.time() * 1000)
            futures = []
            for a in todo:
                r = a.result
                fb = Feedback(verdict=verdict, input=InputRef(**r["input"]), result_id=r["id"], image_id=r.get("image_id"), by=by, at_ms=now,
                              note=note)
                futures.append(self.producer.send(self.topic, key=fb.subject.encode(), value=fb.to_json()))
            self.producer.flush(timeout=30)
            for f in futures:
                f.get(timeout=30)  # raises if the broker did not take it: then nothing below is recorded
            pipe = self.r.pipeline(transaction=False)
            for a in todo:
                key = self.board.review_key(a.fingerprint)
                pipe.hset(key, mapping={"verdict": verdict, "by": by, "at_ms": now, "note": note or "", "subject": a.result["id"]})
                pipe.expire(key, REVIEW_TTL_S)
                pipe.xadd(self.board.reviews_stream, {"fingerprint": a.fingerprint, "verdict": verdict, "by": by, "at_ms": now},
                          maxlen=REVIEWS_MAXLEN, approximate=True)
            pipe.execute()
        sent = {a.fingerprint for a in todo}
        return [Outcome(a.fingerprint, "sent" if a.fingerprint in sent else "unchanged") for a in unique]
