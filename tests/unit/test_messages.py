import json

from worker.stream.messages import Alert, InputRef, Result, all_schemas, fingerprint, severity


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
    assert set(s) == {"result", "alert", "dead-letter-headers", "worker-status", "feedback"}
    assert "model_version" in s["result"]["properties"] and "dlq-reason" in s["dead-letter-headers"]["properties"]
