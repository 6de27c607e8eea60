"""Standard headers on the worker's output records, so consumers need none of our code to read them.

* W3C Trace Context (https://www.w3.org/TR/trace-context/): ``traceparent`` continues the input's
  trace with a new parent id (the worker's scoring of that input), or starts a trace when the input
  has none or an invalid one. Malformed input never fails a record: it starts a new trace.
* CloudEvents 1.0 in Kafka binary content mode (the CloudEvents Kafka protocol binding): the value
  is the event data (our JSON) and the attributes travel as ``ce_*`` headers plus ``content-type``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime

H_TRACEPARENT = "traceparent"
H_CONTENT_TYPE = "content-type"
CE_SPECVERSION = "ce_specversion"
CE_ID = "ce_id"
CE_SOURCE = "ce_source"
CE_TYPE = "ce_type"
CE_TIME = "ce_time"
CE_SUBJECT = "ce_subject"

CE_TYPE_RESULT = "io.ganomaly.result.v1"
CE_TYPE_ALERT = "io.ganomaly.alert.v1"

# version-traceid-parentid-flags, lowercase hex only; a future version may append "-..." fields.
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_SAMPLED = 0x01


@dataclass(frozen=True)
class TraceParent:
    trace_id: str
    parent_id: str
    flags: int

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags:02x}"


def parse_traceparent(value: str | bytes | None) -> TraceParent | None:
    """The incoming trace context, or None when absent or invalid (the caller then starts a new trace)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    m = _TRACEPARENT.match(value.strip())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    # ff is forbidden; version 00 has exactly four fields; a higher version is read by its first four.
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


# Ids need to be unique, not secret (W3C Trace Context asks for randomness, as OpenTelemetry's SDKs
# do with a seeded PRNG): the system's CSPRNG cost a system call per result at thousands a second.
_random = random.Random()


def _span_id() -> str:
    while not (sid := _random.getrandbits(64)):
        pass
    return f"{sid:016x}"


def _trace_id() -> str:
    while not (tid := _random.getrandbits(128)):
        pass
    return f"{tid:032x}"


def continue_trace(incoming: str | bytes | None, trace_id_hint: str | None = None) -> TraceParent:
    """The worker's traceparent for one input: the input's trace id with a new parent id.

    Without a valid incoming traceparent a new trace starts, taking the input's ``trace-id`` header as
    its id when that is a valid W3C trace id (our producer's is), so both headers name the same trace.
    Only the sampled flag is carried over (the one flag version 00 defines); a new trace is marked
    sampled, so that downstream consumers which follow their parent's decision record their spans.
    """
    parent = parse_traceparent(incoming)
    if parent is not None:
        return TraceParent(parent.trace_id, _span_id(), parent.flags & _SAMPLED)
    hint = (trace_id_hint or "").strip()
    trace_id = hint if _HEX32.match(hint) and hint != "0" * 32 else _trace_id()
    return TraceParent(trace_id, _span_id(), _SAMPLED)


def rfc3339_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloudevent_headers(*, ce_id: str, ce_type: str, source: str, time_ms: int, subject: str | None = None) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 binary-mode Kafka headers for a JSON value."""
    hdrs = [
        (CE_SPECVERSION, b"1.0"),
        (CE_ID, ce_id.encode()),
        (CE_SOURCE, source.encode()),
        (CE_TYPE, ce_type.encode()),
        (CE_TIME, rfc3339_ms(time_ms).encode()),
        (H_CONTENT_TYPE, b"application/json"),
    ]
    if subject:
        hdrs.append((CE_SUBJECT, subject.encode()))
    return hdrs
