"""Issue 21's acceptance, in a real browser: an operator with only a browser goes from "an alert arrived" to
"the retrained model that learnt from my verdicts is serving", seeing at each step why the model said what it said.

The loop of test_trainer's first test, driven through the console: a worker serves the trouser model
(Fashion-MNIST class 1, one-class); bags (class 8) arrive and are flagged; the operator opens one,
looks at its anomaly map, confirms it normal, then confirms the rest in bulk, and presses "Retrain now":
the trainer (``ganomaly trainer --every 3600`` in the background, as deployed) refits on those verdicts,
gates and promotes; the worker switches; the console's model and fleet pages show the new version
serving and the gate's reasons.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import pytest
from selenium.webdriver.common.by import By

from ganomaly.connections.kafka import ensure_topics
from tests.conftest import FMNIST
from tests.console_kit import ConsoleProc, Screens, chrome, console_env, image_loaded, login, new_token, wait_until
from tests.integration.helpers import ROOT, Topics, WorkerProc, produce_class, read_topic, serving_registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BAGS = 8
N_BAGS = 200
IDLE_S = 12.0  # longer than the event stream's 5 s Redis wait, twice


def _rows(d: object) -> list:
    return d.find_elements(By.CSS_SELECTOR, "table#alerts tr.alert")  # type: ignore[attr-defined]


def _text(d: object, css: str) -> str:
    return d.find_element(By.CSS_SELECTOR, css).text.strip()  # type: ignore[attr-defined]


def _newest_first(alerts: list[dict]) -> bool:
    """Newest first by when the record was taken or when it was scored (both are fair readings of "newest")."""
    taken = [a["result"]["record_timestamp_ms"] for a in alerts]
    scored = [a["result"]["scored_at_ms"] for a in alerts]
    return taken == sorted(taken, reverse=True) or scored == sorted(scored, reverse=True)


class _TrainerService:
    """``ganomaly trainer --every 3600`` in the background, as a deployment runs it: its first run finds nothing to learn and
    it then waits an hour, unless an operator asks for a run (the console's "Retrain now")."""

    def __init__(self, broker: str, redis_url: str, prefix: str, store: Path, feedback: str, tmp: Path) -> None:
        args = ["--bootstrap-servers", broker, "--feedback-topic", feedback, "--group-id", f"trainer-{prefix}", "--data-dir",
                str(tmp / "confirmed"), "--model-store", str(store), "--redis-url", redis_url, "--redis-prefix", prefix,
                "--min-new-normals", "50", "--epochs", "2", "--target-fpr", "0.05", "--device", "cpu", "--idle-ms", "1000", "--every", "3600"]
        env = console_env(bootstrap=broker, redis_url=redis_url, prefix=prefix, token=None)
        self.log = tmp / "trainer.log"
        self._out = self.log.open("w")
        self.p = subprocess.Popen([sys.executable, "-m", "ganomaly", "trainer", *args], cwd=ROOT, env=env, stdout=self._out,
                                  stderr=subprocess.STDOUT, text=True)

    def records(self) -> list[dict]:
        return [json.loads(ln) for ln in self.log.read_text().splitlines() if ln.startswith("{") and '"action"' in ln and '"event"' not in ln]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.p.terminate()
        self.p.wait(timeout=60)
        self._out.close()


def test_an_operator_with_only_a_browser_takes_an_alert_to_a_retrained_model_serving(broker: str, redis_url: str, prefix: str,
                                                                                       trouser_model: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    topics = Topics(broker)
    feedback = f"feedback-{topics.group}"
    ensure_topics(topics.kafka.config(), [feedback], 1)
    store, _, v1 = serving_registry(tmp_path, redis_url, prefix, trouser_model)
    env = console_env(bootstrap=broker, redis_url=redis_url, prefix=prefix, token=new_token(), GANOMALY_MODEL_STORE=store.root,
                      GANOMALY_FEEDBACK_TOPIC=feedback, **topics.env())
    with (WorkerProc(bootstrap=broker, topics=topics, model=trouser_model, redis_url=redis_url, prefix=prefix, log=tmp_path / "worker.log",
                     GANOMALY_MODEL_STORE=store.root, GANOMALY_MODEL_POLL_S=0.5) as w,
          ConsoleProc(env, tmp_path / "console.log") as console, chrome() as d,
          _TrainerService(broker, redis_url, prefix, store.root, feedback, tmp_path) as trainer):
        shots = Screens(tmp_path / "screens", d)
        w.wait_for('"partitions_assigned"')
        # the trainer's first run, before anything is confirmed: nothing to learn, then it waits an hour
        wait_until("the trainer's first run (nothing to learn yet)", lambda: [r["action"] for r in trainer.records()] == ["skip"],
                   timeout_s=240, every_s=1.0)

        # 1. Log in with the token; the alerts page connects to the live stream before anything arrives.
        login(d, console)
        wait_until("span#live reads 'live'", lambda: _text(d, "span#live") == "live", timeout_s=20)
        assert _rows(d) == []
        shots.shot("alerts-empty-live")

        # 2. Bags arrive; the trouser model flags them; rows appear at the top without a reload.
        d.execute_script("window.__sameDocument = 'yes';")
        produce_class(broker, topics.input, BAGS, N_BAGS, data_dir=FMNIST)
        assert len(read_topic(broker, topics.results, want=N_BAGS, timeout_s=90)) >= N_BAGS
        alerts = {json.loads(r.value)["fingerprint"]: json.loads(r.value) for r in read_topic(broker, topics.alerts, settle_s=1.5)}
        assert len(alerts) >= 60, f"only {len(alerts)} of {N_BAGS} bags flagged"
        wait_until(f"{len(alerts)} alert rows on the page", lambda: len(_rows(d)) >= min(len(alerts), 100), timeout_s=60)
        time.sleep(1.0)  # the last events of the burst
        assert d.execute_script("return window.__sameDocument;") == "yes", "the page reloaded to show the alerts"
        rows = _rows(d)
        fps = [r.get_attribute("data-fingerprint") for r in rows]
        assert len(fps) == len(set(fps)), "an alert shows twice"
        assert set(fps) <= set(alerts), "a row that is no alert of this run"
        print(f"{len(alerts)} alerts on the topic, {len(rows)} rows on the page")
        assert _newest_first([alerts[fp] for fp in fps]), "rows are not newest first"
        top = rows[0]
        for css in ("img.thumb", "img.heat", ".score-bar", ".severity", ".source", ".model-version", ".time", ".status", "a.open"):
            assert top.find_elements(By.CSS_SELECTOR, css), f"the alert row has no {css}"
        assert top.find_element(By.CSS_SELECTOR, ".model-version").text.strip() == v1
        assert top.find_element(By.CSS_SELECTOR, ".status").text.strip() == "new" and top.get_attribute("data-status") == "new"
        assert top.get_attribute("data-result-id") == alerts[fps[0]]["result"]["id"]
        wait_until("the top row's thumbnails load", lambda: image_loaded(d, "tr.alert img.thumb") and image_loaded(d, "tr.alert img.heat"))
        shots.shot("alerts-arrived")

        # 3. Open one: why was it flagged? The anomaly map over the image, the score against the threshold.
        first = fps[0]
        top.find_element(By.CSS_SELECTOR, "a.open").click()
        wait_until("the alert page", lambda: d.current_url.endswith(f"/alerts/{first}"))
        for img in ("img#original", "img#overlay", "img#heatmap"):
            wait_until(f"{img} decoded", lambda img=img: image_loaded(d, img) > 0, timeout_s=20)
        assert _text(d, "#status") == "new"
        score = _text(d, "#score")
        assert len(re.findall(r"\d+(?:\.\d+)?", score)) >= 2, f"#score should show the score against the threshold: {score!r}"
        shots.shot("alert-why-flagged")
        d.find_element(By.CSS_SELECTOR, "form#review textarea#note").send_keys("a bag: bags are products on this line now")
        d.find_element(By.CSS_SELECTOR, "button#verdict-normal").click()
        wait_until("#status reads normal", lambda: _text(d, "#status") == "normal", timeout_s=20)
        shots.shot("alert-confirmed-normal")

        # 4. Back on the alerts page: every row picked, confirmed normal in one go; rows turn normal live.
        d.get(console.url("/"))
        wait_until("span#live reads 'live'", lambda: _text(d, "span#live") == "live", timeout_s=20)
        d.execute_script("window.__sameDocument = 'yes';")
        assert _newest_first([alerts[r.get_attribute("data-fingerprint")] for r in _rows(d)]), "rows are not newest first after a reload"
        row = d.find_element(By.CSS_SELECTOR, f"tr.alert[data-fingerprint='{first}']")
        assert row.get_attribute("data-status") == "normal" and row.find_element(By.CSS_SELECTOR, ".status").text.strip() == "normal"
        d.find_element(By.CSS_SELECTOR, "input#pick-all").click()
        picked = [e.get_attribute("value") for e in d.find_elements(By.CSS_SELECTOR, "input.pick[type=checkbox]") if e.is_selected()]
        assert len(picked) == len(_rows(d)) >= 50, (len(picked), len(_rows(d)))
        d.find_element(By.CSS_SELECTOR, "textarea#bulk-note").send_keys("bags are normal on this line")
        d.find_element(By.CSS_SELECTOR, "button#bulk-normal").click()
        m = wait_until("#bulk-result reads 'N verdicts sent'", lambda: re.search(r"(\d+) verdicts? sent", _text(d, "#bulk-result")), timeout_s=60)
        assert int(m.group(1)) == len(picked) - 1, f"#bulk-result {_text(d, '#bulk-result')!r} for {len(picked)} picked, one already normal"

        def all_normal() -> bool:
            states = d.execute_script("return Array.from(document.querySelectorAll('tr.alert')).map("
                                      "r => [r.dataset.fingerprint, r.dataset.status, r.querySelector('.status').textContent.trim()]);")
            return all(s == t == "normal" for fp, s, t in states if fp in picked)
        wait_until("every picked row reads normal", all_normal, timeout_s=30)
        assert d.execute_script("return window.__sameDocument;") == "yes", "the page reloaded to show the verdicts"
        shots.shot("bulk-confirmed-normal")

        # 5. One verdict per reviewed input on the feedback topic, though the first was confirmed twice.
        verdicts = [json.loads(r.value) for r in read_topic(broker, feedback, want=len(picked), timeout_s=30, settle_s=2.0)]
        subjects = [f"{v['input']['topic']}:{v['input']['partition']}:{v['input']['offset']}" for v in verdicts]
        assert sorted(subjects) == sorted(alerts[fp]["result"]["id"] for fp in picked), "not exactly one verdict per reviewed alert"
        assert {v["verdict"] for v in verdicts} == {"normal"} and {v["by"] for v in verdicts} == {"operator"}

        # 6. "Retrain now": the waiting trainer refits on those verdicts, gates and promotes; the worker switches without a restart.
        assert [r["action"] for r in trainer.records()] == ["skip"]  # still waiting: only the operator's request makes it run now
        d.get(console.url("/models"))
        assert _text(d, "#current-version") == v1 and "waiting" in _text(d, "#trainer"), _text(d, "#trainer")
        d.find_element(By.ID, "retrain").click()
        # the page shows the request pending, or the trainer already running on it (it takes a request within a second)
        shown = _text(d, "#trainer")
        assert "asked for by console:operator" in shown or "running" in shown or len(trainer.records()) > 1, shown
        shots.shot("retrain-asked")

        def serving_new() -> bool:
            d.get(console.url("/models"))
            return _text(d, "#current-version") != v1
        wait_until("the models page shows the retrained version serving", serving_new, timeout_s=300, every_s=3.0)
        record = trainer.records()[-1]
        assert record["action"] == "promoted", record
        v2 = record["challenger"]
        assert _text(d, "#current-version") == v2 and "promoted" in _text(d, "#trainer")
        w.wait_for('"model_swapped"', timeout_s=30)
        # More bags come in: the worker scores them with the new model (and reports its status with each batch).
        more = produce_class(broker, topics.input, BAGS, 20, skip=N_BAGS, data_dir=FMNIST)
        later = [json.loads(r.value) for r in read_topic(broker, topics.results, want=N_BAGS + len(more), timeout_s=60)]
        assert {r["model_version"] for r in later if r["image_id"] in set(more)} == {v2}

        # 7. The console shows the new model serving, the gate's reasons, and the worker on it.
        d.get(console.url("/models"))
        assert _text(d, "#current-version") == v2
        current = d.find_elements(By.CSS_SELECTOR, "table#models tr.model[data-current=true]")
        assert [e.get_attribute("data-version") for e in current] == [v2]
        assert d.find_elements(By.CSS_SELECTOR, f"table#models tr.model[data-version='{v1}'][data-current=false]")
        decisions = _text(d, "table#decisions")
        assert v2 in decisions and "promot" in decisions.lower() and "FPR on confirmed normals" in decisions, decisions
        shots.shot("models-new-version-current")

        def fleet_on_v2() -> bool:
            d.get(console.url("/fleet"))
            versions = [e.text.strip() for e in d.find_elements(By.CSS_SELECTOR, "table#workers tr.worker .model-version")]
            return versions == [v2]
        wait_until("/fleet shows the worker serving the new version", fleet_on_v2, timeout_s=30, every_s=1.0)
        shots.shot("fleet-serving-new-version")
        lag = _text(d, "table#workers tr.worker .lag")
        assert re.fullmatch(r"\d+", lag), f"/fleet .lag reads {lag!r}, not the group's lag in records"

        # 8. Idle, the alerts page stays connected (the badge is what tells an operator that new alerts will show up).
        d.get(console.url("/"))
        wait_until("span#live reads 'live'", lambda: _text(d, "span#live") == "live", timeout_s=20)
        time.sleep(IDLE_S)
        assert _text(d, "span#live") == "live", f"after {IDLE_S}s without events span#live reads {_text(d, 'span#live')!r}"
        assert w.terminate() == 0
    print(f"screenshots: {shots.folder}; whole loop {time.monotonic() - t0:.0f}s")
