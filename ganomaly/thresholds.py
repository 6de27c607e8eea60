"""Thresholds set by operators: a deliberate, audited change per model version, never an edit of an artifact.

A model version's artifact carries the threshold calibrated on its held-out normals. An operator
(``ganomaly models threshold VERSION --value X``, the console) may set another one for that
version; it lives in Redis beside the registry pointer:

    {prefix}:model:threshold:{version}   JSON of the latest change for the version (threshold null once cleared)
    {prefix}:model:audit                 stream of every change (who, when, old, new, note), newest last
    {prefix}:model:events                the registry's events stream and pub/sub channel, which also carry the changes

Thresholds are per version: a newly promoted version starts at its own calibrated threshold.
Workers poll the key of the version they serve and apply it without reloading the model; a
worker started with ``--threshold`` keeps its flag (:func:`effective_threshold`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Literal

import redis

from ganomaly.errors import UserError

Source = Literal["cli", "operator", "calibrated"]
AUDIT_MAXLEN = 1000


@dataclass(frozen=True)
class ThresholdChange:
    version: str
    threshold: float | None  # None: cleared, back to the artifact's calibrated threshold
    previous: float  # the threshold in effect before (the operator's, else the calibrated one)
    by: str
    at_ms: int
    note: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ThresholdChange:
        d = json.loads(raw)
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


def check_threshold(value: float, median: float | None = None) -> float:
    """``value`` as a threshold, or a UserError: scores are finite and never negative, and with the calibration's
    ``median`` the threshold must lie above it (at or below, at least half of normal images are flagged and the
    normalised score, 0 at the median and 1 at the threshold, has no scale; workers refuse such a threshold too)."""
    v = float(value)
    if not math.isfinite(v) or v < 0:
        msg = f"a threshold must be a finite number >= 0 (scores are never negative), got {value}"
        raise UserError(msg)
    if median is not None and v <= median:
        msg = (f"threshold {value} is at or below the median score of the version's held-out normals ({median:.6g}): "
               "it would flag at least half of normal images; choose a higher one")
        raise UserError(msg)
    return v


def servable(threshold: float, median: float) -> bool:
    """Whether a worker can serve ``threshold`` for a model whose held-out normals' median score is ``median``."""
    return threshold > median


class OperatorThresholds:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r = client
        self.prefix = prefix
        self.audit_key = f"{prefix}:model:audit"
        self.events = f"{prefix}:model:events"

    def key(self, version: str) -> str:
        return f"{self.prefix}:model:threshold:{version}"

    def latest(self, version: str) -> ThresholdChange | None:
        """The latest change for ``version``, a clear included (its ``threshold`` None); None when there never was one."""
        raw = self.r.get(self.key(version))
        return ThresholdChange.from_json(raw) if raw else None

    def get(self, version: str) -> ThresholdChange | None:
        """The operator's threshold for ``version``; None when never set or cleared."""
        change = self.latest(version)
        return change if change is not None and change.threshold is not None else None

    def get_many(self, versions: list[str]) -> dict[str, ThresholdChange]:
        """The operator's thresholds of those ``versions`` that have one (one round trip)."""
        if not versions:
            return {}
        changes = (ThresholdChange.from_json(raw) if raw else None for raw in self.r.mget([self.key(v) for v in versions]))
        return {v: c for v, c in zip(versions, changes, strict=True) if c is not None and c.threshold is not None}

    def set(self, version: str, threshold: float, *, by: str, calibrated: float, note: str | None = None,
            median: float | None = None) -> ThresholdChange:
        """Set ``version``'s threshold to ``threshold``; ``calibrated`` is its artifact's, the previous value when none was set.

        With ``median`` (the calibration's), a threshold at or below it is refused (:func:`check_threshold`)."""
        value = check_threshold(threshold, median)
        return self._change(version, value, by=by, calibrated=calibrated, note=note)  # type: ignore[return-value]

    def clear(self, version: str, *, by: str, calibrated: float, note: str | None = None) -> ThresholdChange | None:
        """Back to the calibrated threshold; None (and nothing audited) when no operator threshold was set."""
        return self._change(version, None, by=by, calibrated=calibrated, note=note)

    def _change(self, version: str, value: float | None, *, by: str, calibrated: float, note: str | None) -> ThresholdChange | None:
        key = self.key(version)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # "previous" is what was in effect when the change landed, not a value read before a concurrent one
                    raw = pipe.get(key)
                    cur = ThresholdChange.from_json(raw) if raw else None
                    if cur is not None and cur.threshold is None:
                        cur = None  # cleared: as if never set
                    if value is None and cur is None:
                        pipe.unwatch()
                        return None
                    previous = cur.threshold if cur is not None and cur.threshold is not None else calibrated
                    change = ThresholdChange(version=version, threshold=value, previous=float(previous), by=by,
                                             at_ms=int(time.time() * 1000), note=note or None)
                    pipe.multi()
                    pipe.set(key, change.to_json())  # a clear too: a worker then logs who cleared it
                    pipe.xadd(self.audit_key, {"change": change.to_json()}, maxlen=AUDIT_MAXLEN, approximate=True)
                    event = "threshold_set" if value is not None else "threshold_cleared"
                    pipe.xadd(self.events, {"event": event, "change": change.to_json()}, maxlen=1000, approximate=True)
                    pipe.publish(self.events, change.to_json())
                    pipe.execute()
                    return change
                except redis.WatchError:
                    continue

    def audit(self, count: int = 50) -> list[ThresholdChange]:
        """The latest ``count`` changes, newest first."""
        rows = self.r.xrevrange(self.audit_key, count=count)
        return [ThresholdChange.from_json(fields.get(b"change") or fields["change"]) for _, fields in rows]


def effective_threshold(artifact_threshold: float, operator: ThresholdChange | None, cli_override: float | None) -> tuple[float, Source]:
    """The threshold a worker serves and where it comes from: its ``--threshold`` flag wins over the
    operator's threshold, which wins over the artifact's calibrated one."""
    if cli_override is not None:
        return float(cli_override), "cli"
    if operator is not None and operator.threshold is not None:
        return float(operator.threshold), "operator"
    return float(artifact_threshold), "calibrated"
