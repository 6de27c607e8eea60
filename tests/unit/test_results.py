"""One result builder for the worker and replay: the records are byte for byte what each wrote before it.

The expected bytes were produced by the code this builder replaced (worker/app.py's ``_results`` and
replay/main.py's ``_write_eval`` at 53961a9) on the same inputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganomaly.artifact import load_artifact, save_artifact
from ganomaly.contracts.messages import InputRef
from ganomaly.contracts.results import build_result
from ganomaly.data.images import InputSpec
from ganomaly.model import GanomalyConfig, Generator, calibrate
from replay.rescore import Row, eval_result

CAL = calibrate(np.linspace(0, 1, 200), target_fpr=0.05)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-a0963f0a70f74ae9-01"

WORKER_RESULT = (
    b'{"schema":"ganomaly.result/v1","id":"images:2:41","input":{"topic":"images","partition":2,"offset":41,"key":"img-41"},'
    b'"image_id":"img-41","source":"cam-7","trace_id":"0af7651916cd43dd8448eb211c80319c",'
    b'"traceparent":"00-0af7651916cd43dd8448eb211c80319c-a0963f0a70f74ae9-01","label":"anomaly","score":1.25,"score_normalised":1.875,'
    b'"threshold":0.9,"is_anomaly":true,"model_version":"m-1","record_timestamp_ms":1700000000000,"scored_at_ms":1700000000500,'
    b'"latency_ms":500.0,"worker":"w-1"}'
)
REPLAY_RESULT = (
    b'{"schema":"ganomaly.result/v1","id":"images:1:3","input":{"topic":"images","partition":1,"offset":3,"key":"img-3"},'
    b'"image_id":"img-3","source":"cam-1","trace_id":null,"traceparent":null,"label":"anomaly","score":0.97,'
    b'"score_normalised":1.0334806629834252,"threshold":0.9547738693467337,"is_anomaly":true,"model_version":"VERSION",'
    b'"record_timestamp_ms":1700000000000,"scored_at_ms":1700000002000,"latency_ms":2000.0,"worker":"replay"}'
)


def test_the_worker_result_is_the_bytes_it_wrote_before() -> None:
    ref = InputRef(topic="images", partition=2, offset=41, key="img-41")
    r = build_result(ref, score=1.25, threshold=0.9, calibration=CAL, model_version="m-1", record_timestamp_ms=1_700_000_000_000,
                     scored_at_ms=1_700_000_000_500, worker="w-1", source="cam-7", label="anomaly",
                     trace_id="0af7651916cd43dd8448eb211c80319c", traceparent=TRACEPARENT)
    assert r.to_json() == WORKER_RESULT


def test_a_result_under_the_threshold_is_normal_and_says_so() -> None:
    ref = InputRef(topic="images", partition=0, offset=7)
    r = build_result(ref, score=0.5, threshold=0.9, calibration=CAL, model_version="m-1", record_timestamp_ms=100, scored_at_ms=500,
                     worker="w-1")
    assert (r.id, r.image_id, r.is_anomaly, r.score_normalised, r.latency_ms) == ("images:0:7", None, False, 0.0, 400.0)


def test_replay_evaluation_results_are_the_bytes_replay_wrote_before(tmp_path: Path) -> None:
    save_artifact(tmp_path / "a", Generator(GanomalyConfig(nz=8, ngf=8)), InputSpec(), CAL,
                  data={})
    art = load_artifact(tmp_path / "a")
    row = Row(id="images:1:3", partition=1, offset=3, timestamp_ms=1_700_000_000_000, key="img-3", source="cam-1", label=1,
              scores={art.version: 0.97})
    assert eval_result(row, art, art.threshold, 1_700_000_002_000).to_json() == REPLAY_RESULT.replace(b"VERSION", art.version.encode())


def test_the_workers_batch_builder_writes_the_bytes_of_the_pydantic_models() -> None:
    """build_results + orjson (the worker's fast path) against build_result + pydantic, on random values and awkward strings."""
    from ganomaly.contracts.messages import Alert
    from ganomaly.contracts.results import Coordinates, ScoredInput, alert_json, build_results

    rng = np.random.default_rng(0)
    texts = [None, "img-1", "é-ß", "a\"b\\c", "\x1f\x7f", "\u2028😀", ""]
    inputs, refs = [], []
    for i in range(300):
        key = texts[i % len(texts)]
        headers = {k: v for k, v in {"source": texts[(i + 1) % len(texts)], "label": texts[(i + 2) % len(texts)],
                                      "trace-id": "0af7651916cd43dd8448eb211c80319c" if i % 3 else None,
                                      "traceparent": TRACEPARENT if i % 5 == 0 else None}.items() if v is not None}
        ts = int(1_700_000_000_000 + rng.integers(0, 10**6))
        inputs.append(ScoredInput(Coordinates(f"topic-{i % 3}", i % 7, int(rng.integers(0, 2**40)), key), headers, ts))
        refs.append(InputRef(topic=f"topic-{i % 3}", partition=i % 7, offset=inputs[-1].ref.offset, key=key))
    scores = np.concatenate([rng.random(100) * 2, 10.0 ** rng.uniform(-12, 12, 100), rng.normal(0.9, 1e-3, 100)]).astype(np.float32)
    threshold = 0.9
    fast = build_results(inputs, scores, threshold=threshold, calibration=CAL, model_version="m-1", scored_at_ms=1_700_000_001_000, worker="w-1")
    for inp, ref, score, r in zip(inputs, refs, scores.tolist(), fast, strict=True):
        h = inp.headers
        slow = build_result(ref, score=score, threshold=threshold, calibration=CAL, model_version="m-1", record_timestamp_ms=inp.record_timestamp_ms,
                            scored_at_ms=1_700_000_001_000, worker="w-1", source=h.get("source"), label=h.get("label"),
                            trace_id=h.get("trace-id"), traceparent=r.traceparent)  # a new span id per result: compared as written
        assert r.to_json() == slow.to_json()
        assert r.traceparent is not None and r.traceparent.split("-")[1] == (TRACEPARENT.split("-")[1] if "traceparent" in h else
                                                                          h.get("trace-id", r.traceparent.split("-")[1]))
        if r.is_anomaly:
            assert alert_json(r) == Alert.from_result(slow).to_json()
    assert 0 < sum(r.is_anomaly for r in fast) < len(fast)
