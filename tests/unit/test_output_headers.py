"""W3C traceparent continuation and CloudEvents binary-mode headers of result and alert records."""

from __future__ import annotations

import json
import re
import threading

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event
from hypothesis import given
from hypothesis import strategies as st

from ganomaly.contracts import messages as m
from ganomaly.contracts.headers import continue_trace, parse_traceparent, rfc3339_ms
from worker.sinks.kafka_sink import KafkaSink
from worker.sinks.outputs import OutputBatch

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_valid_incoming_traceparent_is_continued_with_a_new_parent_id() -> None:
    out = str(continue_trace(INCOMING, "ffffffffffffffffffffffffffffffff"))
    trace, parent, flags = TP.match(out).groups()  # type: ignore[union-attr]
    assert trace == "4bf92f3577b34da6a3ce929d0e0e4736"  # the input's trace, not the trace-id hint
    assert parent not in ("00f067aa0ba902b7", "0" * 16)
    assert flags == "01"
    assert str(continue_trace(INCOMING)) != out  # each scoring is its own span


def test_unsampled_flag_is_kept_and_unknown_flags_dropped() -> None:
    assert str(continue_trace(INCOMING[:-2] + "00")).endswith("-00")
    assert str(continue_trace(INCOMING[:-2] + "fe")).endswith("-00")  # only the sampled bit is defined in version 00


def test_higher_version_is_read_by_its_first_four_fields() -> None:
    tp = parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds")
    assert tp is not None and tp.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize("bad", [
    "", "garbage", INCOMING.upper(), INCOMING + "-extra",  # version 00 has exactly four fields
    "ff" + INCOMING[2:],  # version ff is forbidden
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  # short flags
    "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
])
def test_invalid_incoming_traceparent_starts_a_new_trace(bad: str) -> None:
    assert parse_traceparent(bad) is None
    trace, _, flags = TP.match(str(continue_trace(bad))).groups()  # type: ignore[union-attr]
    assert trace != "4bf92f3577b34da6a3ce929d0e0e4736" and trace != "0" * 32 and flags == "01"


def test_absent_traceparent_takes_the_trace_id_header_when_it_is_a_w3c_trace_id() -> None:
    hint = "0af7651916cd43dd8448eb211c80319c"
    assert TP.match(str(continue_trace(None, hint))).group(1) == hint  # type: ignore[union-attr]
    for not_w3c in ("req-42", "0" * 32, hint.upper(), None):
        trace = TP.match(str(continue_trace(None, not_w3c))).group(1)  # type: ignore[union-attr]
        assert trace != hint and trace != "0" * 32


@given(st.one_of(st.none(), st.text(max_size=80), st.binary(max_size=80)), st.one_of(st.none(), st.text(max_size=40)))
def test_any_incoming_header_gives_a_valid_traceparent_and_never_raises(incoming: str | bytes | None, hint: str | None) -> None:
    assert TP.match(str(continue_trace(incoming, hint)))


def test_rfc3339_time() -> None:
    assert rfc3339_ms(1_764_584_400_123) == "2025-12-01T10:20:00.123Z"


class _Fut:
    def get(self, timeout: float) -> None:
        return None


class _RecordingProducer:
    """Stands in for KafkaProducer to see exactly what the sink sends (the integration test sends for real)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send(self, topic: str, **kw: object) -> _Fut:
        self.sent.append((topic, kw))
        return _Fut()

    def flush(self, timeout: float) -> None:
        return None


def _result(*, anomaly: bool, traceparent: str | None, trace_id: str | None = None) -> m.Result:
    ref = m.InputRef(topic="images", partition=2, offset=41, key="t10k:7")
    return m.Result(id=ref.id, input=ref, image_id="t10k:7", source="cam-1", trace_id=trace_id, traceparent=traceparent, label=None,
                    score=2.0 if anomaly else 0.1, score_normalised=1.5 if anomaly else 0.2, threshold=1.0, is_anomaly=anomaly,
                    model_version="v1", record_timestamp_ms=1_764_584_400_000, scored_at_ms=1_764_584_400_050, latency_ms=50.0, worker="w1")


def _sink(prod: _RecordingProducer) -> KafkaSink:
    return KafkaSink(prod, results_topic="image-results", alerts_topic="image-alerts", dlq_topic="image-dlq",  # type: ignore[arg-type]
                     shadow_topic="image-results-shadow", worker_id="w1", abort=threading.Event(), backoff_max_s=0.1, timeout_s=1.0)


def _event(kw: dict) -> tuple[object, dict[str, bytes]]:
    hdrs = dict(kw["headers"])
    assert len(hdrs) == len(kw["headers"]), "a header sent twice"
    return from_binary_event(KafkaMessage(headers=hdrs, key=kw["key"], value=kw["value"])), hdrs


def test_result_and_alert_records_are_cloudevents_with_the_workers_traceparent() -> None:
    prod = _RecordingProducer()
    tp = str(continue_trace(INCOMING))
    _sink(prod).write(OutputBatch(results=[_result(anomaly=True, traceparent=tp, trace_id="abc")], keys=[b"t10k:7"]))
    (rt, rkw), (at, akw) = prod.sent
    assert (rt, at) == ("image-results", "image-alerts")
    res_ev, rh = _event(rkw)
    alert_ev, ah = _event(akw)
    alert = json.loads(akw["value"])
    assert res_ev.get_specversion() == alert_ev.get_specversion() == "1.0"
    assert (res_ev.get_type(), alert_ev.get_type()) == ("io.ganomaly.result.v1", "io.ganomaly.alert.v1")
    assert res_ev.get_id() == "images:2:41" and alert_ev.get_id() == alert["fingerprint"] == m.fingerprint(m.InputRef(topic="images", partition=2, offset=41))
    assert res_ev.get_source() == alert_ev.get_source() == "/ganomaly/images"
    assert res_ev.get_time().timestamp() == pytest.approx(1_764_584_400.050)
    assert RFC3339.match(rh["ce_time"].decode()) and RFC3339.match(ah["ce_time"].decode())
    assert res_ev.get_datacontenttype() == "application/json" and res_ev.get_subject() == "t10k:7"
    assert res_ev.get_data()["id"] == "images:2:41" and alert_ev.get_data()["result"]["id"] == "images:2:41"
    assert rh["traceparent"].decode() == ah["traceparent"].decode() == tp and rh["trace-id"] == b"abc"
    # the header contracts in messages.py (and docs/schemas) describe exactly these records
    m.ResultEventHeaders.model_validate({k: v.decode() for k, v in rh.items()})
    m.AlertEventHeaders.model_validate({k: v.decode() for k, v in ah.items()})


def test_a_result_without_traceparent_still_gets_a_valid_one() -> None:
    prod = _RecordingProducer()
    _sink(prod).write(OutputBatch(results=[_result(anomaly=False, traceparent=None, trace_id="0af7651916cd43dd8448eb211c80319c")], keys=[b"k"]))
    [(_, kw)] = prod.sent
    assert TP.match(dict(kw["headers"])["traceparent"].decode()).group(1) == "0af7651916cd43dd8448eb211c80319c"  # type: ignore[union-attr]
