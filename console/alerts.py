"""The alerts as operators see them: the workers' Redis alert stream joined with the operators' reviews.

The workers append each alert once (``{prefix}:alerts``, fields ``fingerprint`` and ``alert``); the
console keeps each alert's review in ``{prefix}:review:{fingerprint}`` and announces every review on
``{prefix}:reviews`` so that every open page updates. Nothing here writes to the workers' keys.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import redis

STATUSES = ("new", "normal", "anomaly")
# how far back a lookup by fingerprint reads the stream when the alert is not in the recent cache
LOOKUP_SCAN = 100_000


@dataclass(frozen=True)
class Review:
    verdict: str
    by: str
    at_ms: int
    note: str | None = None


@dataclass
class AlertView:
    stream_id: str
    fingerprint: str
    alert: dict[str, Any]
    review: Review | None = None

    @property
    def result(self) -> dict[str, Any]:
        return self.alert["result"]

    @property
    def status(self) -> str:
        return self.review.verdict if self.review else "new"

    @property
    def at_ms(self) -> int:
        return int(self.alert.get("starts_at_ms") or self.result.get("record_timestamp_ms") or 0)

    def row(self) -> dict[str, Any]:
        """What a page or the event stream shows of the alert (plain JSON; the page escapes it)."""
        r = self.result
        return {"fingerprint": self.fingerprint, "result_id": r["id"], "source": r.get("source") or "", "image_id": r.get("image_id") or "",
                "severity": self.alert.get("severity", ""), "score": r["score"], "threshold": r["threshold"],
                "score_normalised": r["score_normalised"], "model_version": r["model_version"], "at_ms": self.at_ms,
                "status": self.status, "reviewed_by": self.review.by if self.review else None}


@dataclass(frozen=True)
class AlertFilter:
    status: str = "all"
    source: str = ""
    model_version: str = ""
    since_min: int = 0  # 0: any time

    def matches(self, a: AlertView, now_ms: int) -> bool:
        if self.status != "all" and a.status != self.status:
            return False
        if self.source and (a.result.get("source") or "") != self.source:
            return False
        if self.model_version and a.result.get("model_version") != self.model_version:
            return False
        return not (self.since_min and a.at_ms < now_ms - self.since_min * 60_000)


@dataclass
class Listing:
    alerts: list[AlertView]
    sources: list[str] = field(default_factory=list)
    model_versions: list[str] = field(default_factory=list)
    scanned: int = 0


class AlertBoard:
    def __init__(self, client: redis.Redis, prefix: str, *, recent: int) -> None:
        self.r = client
        self.prefix = prefix
        self.stream = f"{prefix}:alerts"
        self.reviews_stream = f"{prefix}:reviews"
        self.recent = recent
        self._cache: OrderedDict[str, AlertView] = OrderedDict()  # fingerprint -> alert, bounded
        self._lock = threading.Lock()

    def review_key(self, fingerprint: str) -> str:
        return f"{self.prefix}:review:{fingerprint}"

    def _parse(self, entries: list[Any]) -> list[AlertView]:
        out = []
        for eid, fields in entries:
            try:
                alert = json.loads(fields[b"alert"])
                out.append(AlertView(eid.decode(), fields[b"fingerprint"].decode(), alert))
            except (KeyError, ValueError):  # not an alert entry: skip rather than fail the page
                continue
        with self._lock:
            for a in out:
                self._cache[a.fingerprint] = a
                self._cache.move_to_end(a.fingerprint)
            while len(self._cache) > 4 * self.recent:
                self._cache.popitem(last=False)
        return out

    def attach_reviews(self, alerts: list[AlertView]) -> None:
        if not alerts:
            return
        pipe = self.r.pipeline(transaction=False)
        for a in alerts:
            pipe.hgetall(self.review_key(a.fingerprint))
        for a, h in zip(alerts, pipe.execute(), strict=True):
            a.review = _review(h)

    def listing(self, flt: AlertFilter) -> Listing:
        """The newest ``recent`` alerts, newest first, those matching ``flt`` kept; and the filter choices seen."""
        alerts = self._parse(self.r.xrevrange(self.stream, count=self.recent))
        self.attach_reviews(alerts)
        now = int(time.time() * 1000)
        return Listing([a for a in alerts if flt.matches(a, now)], sorted({a.result.get("source") or "" for a in alerts} - {""}),
                       sorted({a.result["model_version"] for a in alerts}), len(alerts))

    def get(self, fingerprint: str) -> AlertView | None:
        """One alert by fingerprint (from the recent cache, else read back through the stream), with its review."""
        with self._lock:
            a = self._cache.get(fingerprint)
        if a is None:
            last = "+"
            left = LOOKUP_SCAN
            while left > 0 and a is None:
                entries = self.r.xrevrange(self.stream, max=last, count=min(2000, left))
                if not entries:
                    break
                found = [e for e in entries if e[1].get(b"fingerprint", b"").decode() == fingerprint]
                if found:
                    a = self._parse(found)[0]
                left -= len(entries)
                last = "(" + entries[-1][0].decode()
        if a is None:
            return None
        view = AlertView(a.stream_id, a.fingerprint, a.alert)
        self.attach_reviews([view])
        return view

    def after(self, alerts_id: str, reviews_id: str, block_ms: int) -> tuple[list[AlertView], list[dict[str, Any]], str, str]:
        """New alerts and review events after the given stream ids (blocking up to ``block_ms``), and the ids to continue from."""
        got = self.r.xread({self.stream: alerts_id, self.reviews_stream: reviews_id}, block=block_ms, count=200)
        new: list[AlertView] = []
        reviews: list[dict[str, Any]] = []
        for key, entries in got or []:
            if key.decode() == self.stream:
                new = self._parse(entries)
                alerts_id = entries[-1][0].decode()
            else:
                reviews = [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries]
                reviews_id = entries[-1][0].decode()
        self.attach_reviews(new)
        return new, reviews, alerts_id, reviews_id

    def last_ids(self) -> tuple[str, str]:
        """Where a new event stream starts: after everything already written."""
        ids = []
        for key in (self.stream, self.reviews_stream):
            last = self.r.xrevrange(key, count=1)
            ids.append(last[0][0].decode() if last else "0-0")
        return ids[0], ids[1]


def _review(h: dict[bytes, bytes]) -> Review | None:
    if not h or b"verdict" not in h:
        return None
    note = h.get(b"note", b"").decode() or None
    return Review(h[b"verdict"].decode(), h.get(b"by", b"").decode(), int(h.get(b"at_ms", b"0")), note)
