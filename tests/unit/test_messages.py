import json
import threading
from pathlib import Path

from ganomaly.contracts.messages import Alert, DeadLetterHeaders, InputRef, Result, all_schemas, fingerprint, severity
from worker.sinks.kafka_sink import KafkaSink
from worker.sinks.outputs import DeadLetter, OutputBatch


def _result(score: float = 2.0) -> Result:
    ref = InputRef(topic="images", partition=1, offset=42, key="img-1")
    return Result(id=ref.id, input=ref, image_id="img-1", source="cam-1", score=score, score_normalised=2.5, threshold=1.0, is_anomaly=True,
                  model_version="m-1", record_timestamp_ms=1, scored_at_ms=2, latency_ms=1.0, worker="w")


def test_result_json_carries_model_and_schema() -> None:
    d = json.loads(_result().to_json())
    assert d["schema"] == "ganomaly.result/v1" and d["model_version"] == "m-1" and d["threshold"] == 1.0
    assert d["id"] == "images:1:42"


def test_fingerprint_is_stable_per_input_and_distinct_across_inputs() -> None:
    a = InputRef(topic="t", partition=0, offset=1)
    assert fingerprint(a) == fingerprint(InputRef(topic="t", partition=0, offset=1, key="x"))
    assert fingerprint(a) != fingerprint(InputRef(topic="t", partition=0, offset=2))


def test_severity_grows_with_distance_over_threshold() -> None:
    assert [severity(x) for x in (1.1, 2.0, 3.5)] == ["minor", "major", "critical"]
    alert = json.loads(Alert.from_result(_result()).to_json())
    assert alert["severity"] == "major" and alert["result"]["id"] == "images:1:42" and alert["status"] == "firing"


def test_schemas_are_generated_from_the_models() -> None:
    s = all_schemas()
    assert set(s) == {"result", "alert", "result-headers", "alert-headers", "dead-letter-headers", "worker-status", "feedback"}
    assert "model_version" in s["result"]["properties"] and "dlq-reason" in s["dead-letter-headers"]["properties"]


def test_committed_schemas_match_the_code() -> None:
    # consumers read docs/schemas; a contract change without `ganomaly schemas --out docs/schemas` fails here
    committed = Path(__file__).parents[2] / "docs" / "schemas"
    for name, schema in all_schemas().items():
        assert json.loads((committed / f"{name}.schema.json").read_text()) == schema, f"docs/schemas/{name}.schema.json is stale"


def test_each_dead_letter_names_the_model_that_refused_it() -> None:
    # A hot swap can land between a refusal and the write: one output batch then holds letters of
    # two models, and each must name its own, not whichever model serves when the batch is written.
    sink = KafkaSink(None, results_topic="r", alerts_topic="a", dlq_topic="d", shadow_topic="s",  # type: ignore[arg-type]
                     worker_id="w", abort=threading.Event(), backoff_max_s=1, timeout_s=1)
    dead = [DeadLetter("images", 0, off, b"k", b"\x89PNG", [("source", b"cam")], "truncated", "OSError", "cut", version)
            for off, version in ((7, "m-old"), (8, "m-new"))]
    sends = sink._sends(OutputBatch(results=[_result()], keys=[b"img-1"], dead=dead))
    letters = [kw for topic, kw in sends if topic == "d"]
    parsed = [DeadLetterHeaders.model_validate({k: v.decode() for k, v in kw["headers"]}) for kw in letters]
    assert [(h.dlq_offset, h.dlq_model_version) for h in parsed] == [(7, "m-old"), (8, "m-new")]
    assert all(kw["value"] == b"\x89PNG" and ("source", b"cam") in kw["headers"] for kw in letters)
