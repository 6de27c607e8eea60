"""What ``ganomaly replay`` reports and draws (issue 19, defects 7 and 8), on real records, models and workers.

Defect 7: unlabelled replays reported nothing but ``auroc: null``; now each model has records
scored, flagged count and share, score quantiles and thresholds, two models their agreement,
and dead letters / unreadable records appear in the printed summary.
Defect 8: the audit histogram had no threshold line ("threshold nan"), the PR legend said AUROC,
and audit's records_per_s was null.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ganomaly.artifact import load_artifact
from ganomaly.cli.main import main as cli
from ganomaly.data.idx import load_split
from ganomaly.evaluation import plots
from producers import ImagePublisher, encode_png
from tests.conftest import FMNIST
from tests.integration.helpers import Topics, WorkerProc, produce_fmnist, read_topic

pytestmark = pytest.mark.integration

N = 300
BAD = [b"", b"not an image", b"\x89PNG\r\n\x1a\n truncated"]


def _plot(report: dict[str, Any], suffix: str) -> dict[str, Any] | None:
    """What the report's plot ending in ``suffix`` draws, read back from the PNG; None when the report has no such plot."""
    found = [p for p in report["plots"] if p.endswith(suffix)]
    assert len(found) <= 1, found
    if not found:
        return None
    assert Path(found[0]).stat().st_size > 1000
    return plots.drawn(found[0])


def _publish_unlabelled(bootstrap: str, topic: str) -> None:
    images, _ = load_split(FMNIST, "t10k")
    with ImagePublisher(bootstrap, topic) as pub:
        for i in range(N):
            pub.publish(encode_png(images[i]), key=f"u{i}", source=f"cam-{i % 2}")
        for i, v in enumerate(BAD):
            pub.publish(v, key=f"bad{i}")
    assert pub.stats.failed == 0


def _scores(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    versions = [k for k in rows[0] if k.startswith("m-")]
    return versions, {v: np.array([float(r[v]) for r in rows]) for v in versions}


def _printed(out: str) -> dict[str, Any]:
    return json.loads(out.strip().splitlines()[-1])


def test_unlabelled_rescore_with_challenger_then_audit(broker: str, tiny_model: Path, trouser_model: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    topics = Topics(broker, partitions=3)
    _publish_unlabelled(broker, topics.input)
    champion, challenger = load_artifact(tiny_model), load_artifact(trouser_model)
    base = ["replay", "--bootstrap-servers", broker, "--topic", topics.input, "--device", "cpu"]
    rc = cli([*base, "--mode", "rescore", "--model", str(tiny_model), "--challenger", str(trouser_model), "--report", str(tmp_path / "r.json"),
              "--scores", str(tmp_path / "r.csv"), "--eval-topic", topics.results])
    printed = _printed(capsys.readouterr().out)
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    versions, scores = _scores(tmp_path / "r.csv")
    assert versions == [champion.version, challenger.version]
    flags = {}
    for art in (champion, challenger):
        s, thr = scores[art.version], art.threshold
        flags[art.version] = s > thr
        want = {"scored": N, "flagged": int((s > thr).sum()), "flagged_share": round(float((s > thr).mean()), 6), "threshold": thr,
                "score_p50": float(np.percentile(s, 50)), "score_p90": float(np.percentile(s, 90)), "score_p99": float(np.percentile(s, 99)),
                "score_max": float(s.max())}
        assert printed["models"][art.version] == pytest.approx(want)  # no labels: no auroc, no nulls
        m = report["models"][art.version]
        assert (m["scored"], m["flagged"], m["threshold"], m["n_labelled"]) == (N, want["flagged"], thr, 0)
        assert m["thresholds"] == [{"threshold": thr, "records": N}]
    a, b = flags[champion.version], flags[challenger.version]
    want_agree = {"both_scored": N, "agree": int((a == b).sum()), "both_flagged": int((a & b).sum()), "neither_flagged": int((~a & ~b).sum()),
                  "only_champion_flagged": int((a & ~b).sum()), "only_challenger_flagged": int((~a & b).sum())}
    assert {k: printed["agreement"][k] for k in want_agree} == want_agree
    assert printed["agreement"]["agreement_rate"] == pytest.approx(want_agree["agree"] / N)
    assert -1 <= printed["agreement"]["score_rank_correlation"] <= 1
    assert report["agreement"]["champion"] == champion.version
    assert sum(printed["unreadable"].values()) == len(BAD)  # the rescore's dead letters, printed
    # One histogram per model, all records (no labels), with that model's threshold; no ROC/PR without labels.
    for art in (champion, challenger):
        hist = _plot(report, f"-hist-{art.version}.png")
        assert hist is not None and hist["title"] == f"{art.version} on {topics.input}"
        assert sorted(hist["legend"]) == sorted([f"all {N} records", f"threshold {art.threshold:.4g}"])
        assert hist["vertical_lines"] == [art.threshold]
    assert _plot(report, "-roc.png") is None and _plot(report, "-pr.png") is None
    assert len(report["plots"]) == 2

    # Audit the rescored results as if workers had written them: unlabelled, one model version.
    rc = cli([*base, "--mode", "audit", "--results-topic", topics.results, "--dlq-topic", topics.dlq, "--report", str(tmp_path / "a.json")])
    printed = _printed(capsys.readouterr().out)
    assert rc == 0
    m = printed["models"][champion.version]
    assert (m["scored"], m["flagged"], m["threshold"]) == (N, int(flags[champion.version].sum()), champion.threshold)
    assert "auroc" not in m
    assert printed["records_per_s"] > 0 and printed["missing_results"] == len(BAD) and printed["dead_lettered"] == {}
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["models"][champion.version]["thresholds"] == [{"threshold": champion.threshold, "records": N}]
    assert _plot(audit, f"-hist-{champion.version}.png")["vertical_lines"] == [champion.threshold]  # type: ignore[index]


def test_labelled_audit_of_a_real_worker(broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    topics = Topics(broker, partitions=3)
    produce_fmnist(broker, topics.input, N, data_dir=FMNIST)
    with ImagePublisher(broker, topics.input) as pub:
        for i, v in enumerate(BAD):
            pub.publish(v, key=f"bad{i}", label="normal")
    with WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log") as w:
        read_topic(broker, topics.results, want=N, timeout_s=120)
        read_topic(broker, topics.dlq, want=len(BAD), timeout_s=30)
        assert w.terminate() == 0
    art = load_artifact(tiny_model)
    rc = cli(["replay", "--bootstrap-servers", broker, "--topic", topics.input, "--mode", "audit", "--results-topic", topics.results,
              "--dlq-topic", topics.dlq, "--report", str(tmp_path / "a.json")])
    printed = _printed(capsys.readouterr().out)
    report = json.loads((tmp_path / "a.json").read_text())
    # Defect 8 first: audit's records/s, the threshold the workers decided with on the histogram (not nan), AUPRC in the PR legend.
    assert printed["records_per_s"] is not None and printed["records_per_s"] > 0
    assert report["timing"]["records_per_s"] > 0
    hist = _plot(report, f"-hist-{art.version}.png")
    assert hist is not None and len(report["plots"]) == 3
    (line,) = hist["vertical_lines"]
    assert not math.isnan(line) and line == pytest.approx(art.threshold)
    assert sorted(hist["legend"]) == ["anomaly", "normal", f"threshold {art.threshold:.4g}"]  # labelled: two classes, no "nan"
    assert report["models"][art.version]["thresholds"] == [{"threshold": pytest.approx(art.threshold), "records": N}]
    m = report["models"][art.version]
    assert _plot(report, "-pr.png")["legend"] == [f"{art.version} AUPRC {m['auprc']:.3f}"]  # type: ignore[index]
    assert _plot(report, "-roc.png")["legend"] == [f"{art.version} AUROC {m['auroc']:.3f}"]  # type: ignore[index]
    # Defect 7: dead letters by reason and the per-model summary in the printed summary.
    assert rc == 0 and report["complete"] is True
    assert printed["records"] == N and printed["missing_results"] == 0
    assert sum(printed["dead_lettered"].values()) == len(BAD)
    m = printed["models"][art.version]
    assert m["scored"] == N and m["labelled"] == N and m["threshold"] == pytest.approx(art.threshold)
    assert m["auroc"] is not None and 0 <= m["flagged"] <= N


def test_an_audit_with_no_outcome_for_any_record_fails_and_says_why(broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No worker has consumed the topic (or --results-topic names another one): nothing was audited, so not a silent success."""
    topics = Topics(broker, partitions=3)
    with ImagePublisher(broker, topics.input) as pub:
        for i in range(20):
            pub.publish(encode_png(np.full((28, 28), i, np.uint8)), key=f"n{i}")
    rc = cli(["replay", "--bootstrap-servers", broker, "--topic", topics.input, "--mode", "audit", "--results-topic", topics.results,
              "--dlq-topic", topics.dlq, "--idle-ms", "2000"])
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert rc == 1 and json.loads(captured.out.strip().splitlines()[-1])["complete"] is False  # the summary agrees with the exit code
    said = (f"incomplete: none of the 20 records has a result on {topics.results} or a dead letter on {topics.dlq}: "
            "are workers consuming this topic and writing there (--results-topic, --dlq-topic)?")
    assert [ln for ln in err if ln.startswith("incomplete: ")] == [said]
    assert not any(ln.startswith(("error: ", "Traceback")) for ln in err)
