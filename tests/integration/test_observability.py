"""The Grafana dashboard's and the alert rules' queries on a real Prometheus scraping a real worker."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ganomaly.artifact import read_manifest
from ganomaly.devstack import free_port
from producers import ImagePublisher
from tests.conftest import FMNIST
from tests.dashboard import dashboard, panels, prometheus_tool, query_variables, rule_groups, substitute
from tests.integration.helpers import PrometheusProc, Topics, WorkerProc, produce_fmnist, read_topic

pytestmark = pytest.mark.integration

# series that exist only once the event they count has happened (no output write is retried, no image converted here)
EVENT_ONLY = ("ganomaly_output_retries_total", "ganomaly_images_converted_total")


def _value(result: list[dict]) -> float:
    (only,) = result
    return float(only["value"][1])


def _wait_scraped(prom: PrometheusProc, scored: int, timeout_s: float = 30.0) -> list[dict]:
    """Until Prometheus has ``scored`` images in two scrapes and has evaluated every rule; returns the rule groups."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen = prom.query('min_over_time(sum(ganomaly_images_scored_total{namespace="ganomaly", pod="worker-0"})[2s:1s])')
        groups = prom.api("rules")["groups"]
        evaluated = all(not r["lastEvaluation"].startswith("0001") for g in groups for r in g["rules"])
        if seen and _value(seen) == scored and evaluated:
            return groups
        time.sleep(0.5)
    raise AssertionError(f"prometheus never saw {scored} scored images in two scrapes and an evaluation of every rule")


def test_dashboard_and_alert_rules_run_on_a_real_prometheus_scraping_a_real_worker(
    broker: str, redis_url: str, prefix: str, tiny_model: Path, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups()}))  # the PrometheusRule's spec as a plain rules file
    check = subprocess.run([prometheus_tool("promtool"), "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr

    topics = Topics(broker)
    half, junk = 100, 3
    n = 2 * half
    manifest = read_manifest(tiny_model)
    port = free_port()
    with (WorkerProc(bootstrap=broker, topics=topics, model=tiny_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "w.log",
                     GANOMALY_METRICS_PORT=port, GANOMALY_METRICS_HOST="127.0.0.1") as w,
          PrometheusProc(tmp_path, port, rule_files=(rules,)) as prom):
        w.wait_for('"partitions_assigned"')
        # two waves, each seen by a scrape: a counter whose first sample is already final has no rate
        produce_fmnist(broker, topics.input, half, data_dir=FMNIST)
        with ImagePublisher(broker, topics.input) as pub:
            for i in range(junk):
                pub.publish(b"this is not an image %d" % i, key=f"junk:{i}", source="cam-junk")
        _wait_scraped(prom, half)
        produce_fmnist(broker, topics.input, half, start=half, data_dir=FMNIST)
        read_topic(broker, topics.results, want=n, timeout_s=90)
        letters = read_topic(broker, topics.dlq, want=junk, timeout_s=30)
        groups = _wait_scraped(prom, n)

        # every rule of the PrometheusRule evaluates without error on the worker's real series
        assert sum(len(g["rules"]) for g in groups) == sum(len(g["rules"]) for g in rule_groups())
        for g in groups:
            for r in g["rules"]:
                assert r["health"] == "ok", (r["name"], r.get("lastError"))

        # every dashboard query runs, and selects series (those counting an event that has not happened aside)
        dash = dashboard()
        by_title: dict[str, list[list[dict]]] = {}
        for p in panels(dash):
            for t in p.get("targets", []):
                expr = substitute(t["expr"])
                result = prom.query(expr)
                by_title.setdefault(p["title"], []).append(result)
                if not any(metric in expr for metric in EVENT_ONLY):
                    assert result, f"panel {p['title']!r}: {expr} selects nothing"
        for ann in dash["annotations"]["list"]:
            assert prom.query(substitute(ann["expr"])) == []  # no model swap happened
        variables = query_variables(dash)
        assert variables
        for metric, label in variables:
            assert prom.api(f"label/{label}/values", **{"match[]": metric}) == {"namespace": ["ganomaly"], "pod": ["worker-0"]}[label]

        # and the numbers are the worker's
        (table,) = by_title["Model in use"]
        assert [(r["metric"]["model_version"], float(r["metric"]["threshold"])) for r in table] == [
            (manifest["version"], pytest.approx(manifest["calibration"]["threshold"], rel=1e-5))]
        assert _value(by_title["Workers"][0]) == 1
        assert {r["metric"]["reason"] for r in by_title["Dead letters / s by reason"][0]} == {
            dict(letter.headers)["dlq-reason"].decode() for letter in letters}
        # two panels share this title: the overview's stat, then the time series by model version
        assert all(float(r["value"][1]) > 0 for r in by_title["Images scored / s"][1])
        (calibrated,) = by_title["Anomaly share vs calibrated rate"][1]
        assert float(calibrated["value"][1]) == pytest.approx(manifest["calibration"]["target_fpr"])
        # with the worker up, the rules about the fleet stay quiet; once it is gone, the silence is noticed
        quiet = {"GanomalyNoWorkerConsuming", "GanomalyModelVersionsDiffer"}
        assert not {a["labels"]["alertname"] for a in prom.api("alerts")["alerts"]} & quiet
        assert w.terminate() == 0
        deadline = time.monotonic() + 30
        while {a["labels"]["alertname"]: a["state"] for a in prom.api("alerts")["alerts"]}.get("GanomalyNoWorkerConsuming") != "pending":
            assert time.monotonic() < deadline, "no GanomalyNoWorkerConsuming alert after the only worker stopped"
            time.sleep(0.5)
