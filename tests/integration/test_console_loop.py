"""The operator console over plain HTTP (no browser): sessions, CSRF, verdicts into the feedback topic, escaping, images.

One real worker scores Fashion-MNIST bags (which the trouser model flags), bags whose source header
and key are hostile HTML, and 640x480 colour JPEGs of bags; a second worker scores bags from a topic
that is then deleted, so their alerts point at records that are gone. One console serves them all.
"""

from __future__ import annotations

import io
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from PIL import Image
from selenium.webdriver.common.by import By

from ganomaly.connections.kafka import ensure_topics, make_admin
from ganomaly.data.idx import load_split
from ganomaly.devstack import free_port, stop
from ganomaly.registry import ModelStore
from producers import ImagePublisher, encode_png
from tests.conftest import FMNIST
from tests.console_kit import ConsoleProc, chrome, console_env, csrf_of, http_login, login, new_token, select, wait_until
from tests.integration.helpers import ROOT, Topics, WorkerProc, produce_class, read_topic, serving_registry

pytestmark = pytest.mark.integration
BAGS = 8
HOSTILE = "<script>alert(1)</script>"
FRAME_SOURCE = "cam-frames"
NOWHERE = "0" * 20  # a fingerprint no input ever had (they are 20 hex digits)


@dataclass
class Stack:
    console: ConsoleProc
    redis_url: str
    prefix: str
    feedback: str
    bags: list[dict[str, Any]]  # alerts (ganomaly.alert/v1) of plain bags, one per test that reviews
    hostile: list[dict[str, Any]]
    frames: list[dict[str, Any]]
    gone: list[dict[str, Any]]  # alerts whose input topic was deleted after scoring


def _publish(broker: str, topic: str, items: list[tuple[bytes, str, str, str]]) -> None:
    with ImagePublisher(broker, topic) as pub:
        for data, key, source, ctype in items:
            pub.publish(data, key=key, source=source, label="normal", content_type=ctype)
    assert pub.stats.failed == 0, pub.stats.errors


def _bags(n: int, skip: int) -> list[np.ndarray]:
    images, labels = load_split(FMNIST, "t10k")
    return [images[i] for i in [i for i in range(len(labels)) if labels[i] == BAGS][skip: skip + n]]


def _bag_pngs(n: int, skip: int) -> list[bytes]:
    return [encode_png(im) for im in _bags(n, skip)]


def _bag_frames(n: int, skip: int) -> list[bytes]:
    """A bag as a 640x480 colour camera sees it: a JPEG the worker shrinks to the model's 32x32 grey (the trouser model's
    own synthetic camera frames are too smooth to be flagged, so a flagged frame is a bag filling the view)."""
    out = []
    for im in _bags(n, skip):
        rgb = np.asarray(Image.fromarray(im).resize((640, 480), Image.BILINEAR).convert("RGB"), dtype=np.float32) * (0.95, 0.85, 0.7)
        buf = io.BytesIO()
        Image.fromarray(rgb.astype(np.uint8)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


@pytest.fixture(scope="module")
def stack(broker: str, redis_url: str, trouser_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-loop")
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    topics = Topics(broker)
    doomed = Topics(broker)  # its own input topic, the same outputs: its alerts land beside the others
    doomed.results, doomed.alerts, doomed.dlq = topics.results, topics.alerts, topics.dlq
    feedback = f"feedback-{topics.group}"
    ensure_topics(topics.kafka.config(), [feedback], 1)
    store, _, _ = serving_registry(tmp, redis_url, prefix, trouser_model)

    keys = produce_class(broker, topics.input, BAGS, 40, data_dir=FMNIST)
    _publish(broker, topics.input, [(png, HOSTILE, HOSTILE, "image/png") for png in _bag_pngs(10, skip=40)])
    _publish(broker, topics.input, [(jpeg, f"frame:{i}", FRAME_SOURCE, "image/jpeg") for i, jpeg in enumerate(_bag_frames(6, skip=60))])
    _publish(broker, doomed.input, [(png, f"doomed:{i}", "doomed", "image/png") for i, png in enumerate(_bag_pngs(10, skip=50))])
    total = len(keys) + 10 + 6 + 10
    with (WorkerProc(bootstrap=broker, topics=topics, model=trouser_model, redis_url=redis_url, prefix=prefix, log=tmp / "w1.log",
                     GANOMALY_MODEL_STORE=store.root) as w1,
          WorkerProc(bootstrap=broker, topics=doomed, model=trouser_model, redis_url=redis_url, prefix=prefix, log=tmp / "w2.log",
                     GANOMALY_MODEL_STORE=store.root) as w2):
        assert len(read_topic(broker, topics.results, want=total, timeout_s=120)) >= total
        assert w1.terminate() == 0 and w2.terminate() == 0  # drained: Redis holds every alert too
    alerts = [json.loads(r.value) for r in read_topic(broker, topics.alerts, settle_s=1.0)]
    admin = make_admin(topics.kafka.config())
    admin.delete_topics([doomed.input])
    admin.close()

    def of(pred: Any) -> list[dict[str, Any]]:
        return [a for a in alerts if pred(a)]

    bags = of(lambda a: a["source"] == f"class-{BAGS}")
    hostile = of(lambda a: a["source"] == HOSTILE)
    frames = of(lambda a: a["source"] == FRAME_SOURCE)
    gone = of(lambda a: a["source"] == "doomed")
    print(f"alerts: {len(bags)} bags, {len(hostile)} hostile, {len(frames)} camera frames, {len(gone)} gone, of {total} inputs")
    assert len(bags) >= 10 and hostile and frames and gone, "the trouser model flagged too few of the test's inputs"
    env = console_env(bootstrap=broker, redis_url=redis_url, prefix=prefix, token=new_token(), GANOMALY_MODEL_STORE=store.root,
                      GANOMALY_FEEDBACK_TOPIC=feedback, **topics.env())
    with ConsoleProc(env, tmp / "console.log") as console:
        yield Stack(console, redis_url, prefix, feedback, bags, hostile, frames, gone)


def _session(stack: Stack) -> tuple[httpx.Client, str]:
    c = http_login(stack.console)
    page = c.get("/")
    assert page.status_code == 200, page.text[:500]
    return c, csrf_of(page.text)


def subject(f: dict[str, Any]) -> str:
    """The input a feedback record is about (its topic:partition:offset), as the trainer reads it."""
    ref = f.get("input")
    return f"{ref['topic']}:{ref['partition']}:{ref['offset']}" if ref else str(f.get("result_id"))


def test_a_page_full_of_maps_requested_at_once_is_served_whole(stack: Stack) -> None:
    """An alerts page asks for every row's thumbnail and map at the same moment (first, before anything is cached):
    the console once crashed here (a segfault in libtorch: a Scorer made per request rewrote the weights' layout while
    another request's forward pass read them)."""
    from concurrent.futures import ThreadPoolExecutor

    c, _ = _session(stack)
    urls = [f"/alerts/{a['fingerprint']}/{kind}.png?size=thumb" for a in stack.bags + stack.hostile + stack.frames
            for kind in ("overlay", "heatmap")]
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda u: c.get(u, timeout=120).status_code, urls))
    assert codes == [200] * len(urls), codes
    assert stack.console.proc.poll() is None, stack.console.logs()[-3000:]
    assert c.get("/healthz").status_code == 200


def test_without_a_session_pages_send_to_login_and_the_api_answers_401(stack: Stack) -> None:
    c = httpx.Client(base_url=stack.console.base, timeout=30)
    assert c.get("/healthz").text.strip() == "ok"
    for path in ("/", f"/alerts/{stack.bags[0]['fingerprint']}", "/models", "/fleet"):
        r = c.get(path)
        assert r.status_code == 303 and r.headers["location"].split("?")[0].endswith("/login"), (path, r.status_code, r.headers)
    r = c.post("/api/review", json={"fingerprint": stack.bags[0]["fingerprint"], "verdict": "normal", "note": ""})
    assert r.status_code == 401, (r.status_code, r.text[:300])
    r = c.get(f"/alerts/{stack.bags[0]['fingerprint']}/heatmap.png")
    assert r.status_code in (303, 401), r.status_code  # an image is a page or an API: never served without a session
    login = c.get("/login")
    assert login.status_code == 200 and select(login.text, "form", id_="login") and select(login.text, "input", id_="token", name="token")
    assert select(login.text, "button", id_="login-submit")


def test_a_bad_token_is_refused(stack: Stack) -> None:
    c = httpx.Client(base_url=stack.console.base, timeout=30)
    r = c.post("/login", data={"token": "not-the-token"})
    assert r.status_code == 401, (r.status_code, r.text[:300])
    assert select(r.text, cls="error") and select(r.text, cls="error")[0].text, "no .error text on the refused login page"
    assert c.get("/").status_code == 303  # still no session
    assert c.get("/login?token=not-the-token").status_code == 401
    bad = httpx.Client(base_url=stack.console.base, timeout=30, headers={"Authorization": "Bearer not-the-token"})
    assert bad.post("/api/review", json={"fingerprint": NOWHERE, "verdict": "normal"}).status_code == 401
    good = httpx.Client(base_url=stack.console.base, timeout=30, headers={"Authorization": f"Bearer {stack.console.token}"})
    assert good.get("/").status_code == 200


def test_a_post_without_the_csrf_token_is_refused(stack: Stack) -> None:
    c, _ = _session(stack)
    fp = stack.bags[1]["fingerprint"]
    r = c.post("/api/review", json={"fingerprint": fp, "verdict": "normal", "note": ""})
    assert r.status_code == 403, (r.status_code, r.text[:300])
    r = c.post("/api/review", json={"fingerprint": fp, "verdict": "normal", "note": ""}, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403, (r.status_code, r.text[:300])
    assert c.post("/logout").status_code == 403
    assert not redis.Redis.from_url(stack.redis_url).exists(f"{stack.prefix}:review:{fp}"), "a refused POST still recorded a review"
    assert c.get("/").status_code == 200  # and the session survived the refused logout


def test_a_verdict_on_an_unknown_fingerprint_is_404_json(stack: Stack) -> None:
    c, csrf = _session(stack)
    r = c.post("/api/review", json={"fingerprint": NOWHERE, "verdict": "normal", "note": ""}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json"), (r.status_code, r.text[:300])
    assert "error" in r.json()
    assert c.get(f"/alerts/{NOWHERE}").status_code == 404


def test_a_repeated_verdict_is_sent_once_and_a_changed_one_again(broker: str, stack: Stack) -> None:
    c, csrf = _session(stack)
    alert = stack.bags[2]
    fp, rid = alert["fingerprint"], alert["result"]["id"]
    answers = []
    for verdict in ("normal", "normal", "anomaly"):
        r = c.post("/api/review", json={"fingerprint": fp, "verdict": verdict, "note": f"checked: {verdict}"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, (r.status_code, r.text[:300])
        answers.append(r.json()["status"])
    assert answers == ["sent", "unchanged", "sent"]
    sent = [json.loads(r.value) for r in read_topic(broker, stack.feedback, settle_s=1.5)]
    mine = [f for f in sent if subject(f) == rid]
    assert [f["verdict"] for f in mine] == ["normal", "anomaly"], mine
    assert all(f["by"] == "operator" and f["input"]["key"] == alert["result"]["input"]["key"] for f in mine), mine
    review = redis.Redis.from_url(stack.redis_url, decode_responses=True).hgetall(f"{stack.prefix}:review:{fp}")
    assert review.get("verdict") == "anomaly" and review.get("by") == "operator", review
    page = c.get(f"/alerts/{fp}")
    assert select(page.text, id_="status")[0].text == "anomaly"  # the latest verdict wins


def test_a_hostile_source_header_and_key_are_shown_escaped(stack: Stack) -> None:
    c, _ = _session(stack)
    for url in (f"/?status=all&source={HOSTILE}", "/?status=all", f"/alerts/{stack.hostile[0]['fingerprint']}"):
        html = c.get(url).text
        assert HOSTILE not in html, f"{url}: the source header reached the page unescaped"
    html = c.get("/", params={"status": "all", "source": HOSTILE}).text
    rows = select(html, "tr", cls="alert")
    assert {r.attrs["data-fingerprint"] for r in rows} == {a["fingerprint"] for a in stack.hostile}, "the source filter missed"
    assert all(r.attrs["data-source"] == HOSTILE for r in rows)  # the attribute holds the text itself, escaped in the HTML
    assert {e.text for e in select(html, cls="source")} == {HOSTILE}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_images_of_records_no_longer_on_the_topic_are_404_and_the_page_says_so(stack: Stack) -> None:
    c, _ = _session(stack)
    for fp in (stack.gone[0]["fingerprint"], NOWHERE):
        for name in ("original", "overlay", "heatmap"):
            r = c.get(f"/alerts/{fp}/{name}.png")
            assert r.status_code == 404, (fp, name, r.status_code)
    gone = stack.gone[0]["fingerprint"]
    assert c.get(f"/alerts/{gone}").status_code == 200  # the alert itself is still known (Redis), only its image is gone
    with chrome() as d:  # the page's script puts the placeholder where an image fails: only a browser shows it
        login(d, stack.console)
        d.get(stack.console.url(f"/alerts/{gone}"))
        # each placeholder then says why, in the server's words
        holders = wait_until("three placeholders on the alert page, each saying why",
                             lambda: [e.text for e in d.find_elements(By.CSS_SELECTOR, ".placeholder")]
                             if len(d.find_elements(By.CSS_SELECTOR, ".placeholder")) == 3
                             and all("no longer on the topic" in e.text for e in d.find_elements(By.CSS_SELECTOR, ".placeholder")) else None,
                             timeout_s=20)
        assert all(h.startswith("the image is no longer on the topic") for h in holders), holders
        d.get(stack.console.url("/?status=all&source=doomed"))
        row = d.find_element(By.CSS_SELECTOR, f"tr.alert[data-fingerprint='{gone}']")
        wait_until("placeholders in the alert's row", lambda: len(row.find_elements(By.CSS_SELECTOR, ".placeholder")) == 2, timeout_s=20)


def test_the_event_stream_stays_up_while_nothing_happens(stack: Stack) -> None:
    """An idle stream (no alert, no review) must not report the store as down: the page would read "reconnecting"."""
    events: list[str] = []
    t0 = time.monotonic()
    with httpx.stream("GET", stack.console.url("/api/events"), headers={"Authorization": f"Bearer {stack.console.token}"}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
            if time.monotonic() - t0 > 12:
                break
    assert events[:1] == ["hello"] and "down" not in events, events
    assert events.count("beat") >= 3, events  # a quiet stream still says it is alive, every few seconds


def _timed_median(c: httpx.Client, url: str, n: int = 10) -> tuple[float, float, bytes]:
    t0 = time.perf_counter()
    first = c.get(url)
    first_s = time.perf_counter() - t0
    assert first.status_code == 200 and first.headers["content-type"].startswith("image/png"), (url, first.status_code)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = c.get(url)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200
    return first_s, statistics.median(times), first.content


@pytest.mark.parametrize("kind", ["bag", "frame"])
def test_a_heatmap_is_served_in_under_300_ms(stack: Stack, kind: str) -> None:
    c, _ = _session(stack)
    fp = (stack.bags[3] if kind == "bag" else stack.frames[0])["fingerprint"]
    first_s, median, png = _timed_median(c, f"/alerts/{fp}/heatmap.png")
    full = Image.open(io.BytesIO(png)).size
    thumb = Image.open(io.BytesIO(c.get(f"/alerts/{fp}/heatmap.png", params={"size": "thumb"}).content)).size
    print(f"{kind}: heatmap.png first {first_s * 1000:.0f} ms, median {median * 1000:.0f} ms of the next 10; {full[0]}x{full[1]}, thumb {thumb[0]}x{thumb[1]}")
    assert median < 0.3, median
    if kind == "frame":
        assert full == (640, 480) and thumb[0] < 640  # the map on the frame's own geometry; ?size=thumb is small


def _empty_store(path: Path) -> Path:
    store = ModelStore(path)
    store.ensure()
    return store.root


def _console_cmd(port: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "ganomaly", "console", "--host", "127.0.0.1", "--port", str(port), *args]


def test_the_console_refuses_to_start_without_a_token(broker: str, redis_url: str, tmp_path: Path) -> None:
    env = console_env(bootstrap=broker, redis_url=redis_url, prefix="t-notoken", token=None, GANOMALY_MODEL_STORE=_empty_store(tmp_path))
    p = subprocess.run(_console_cmd(free_port()), check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "GANOMALY_CONSOLE_TOKEN" in lines[0], p.stderr
    assert "Traceback" not in p.stderr + p.stdout


def test_demo_token_prints_a_login_url_that_logs_in(broker: str, redis_url: str, tmp_path: Path) -> None:
    env = console_env(bootstrap=broker, redis_url=redis_url, prefix=f"t-{uuid.uuid4().hex[:10]}", token=None,
                      GANOMALY_MODEL_STORE=_empty_store(tmp_path / "store"))
    port = free_port()
    log = tmp_path / "demo.log"
    proc = subprocess.Popen(_console_cmd(port, "--demo-token"), cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        pattern = re.compile(rf"^console: (http://127\.0\.0\.1:{port}/login\?token=(\S+))$", re.MULTILINE)
        m = wait_until("the demo URL line", lambda: pattern.search(log.read_text(errors="replace")) or proc.poll() is not None, timeout_s=60)
        assert isinstance(m, re.Match), log.read_text()
        url = m.group(1)
        c = httpx.Client(timeout=30)
        wait_until("console /healthz", lambda: c.get(f"http://127.0.0.1:{port}/healthz").status_code == 200, timeout_s=30)
        r = c.get(url, follow_redirects=True)
        assert r.status_code == 200 and select(r.text, "table", id_="alerts"), (r.status_code, str(r.url))
        assert httpx.get(f"http://127.0.0.1:{port}/login?token=wrong{m.group(2)}", timeout=30).status_code == 401
    finally:
        stop(proc, timeout_s=10)


def test_a_threshold_is_applied_only_after_its_what_if_and_a_confirmation_and_is_audited(stack: Stack) -> None:
    from ganomaly.thresholds import OperatorThresholds

    c, csrf = _session(stack)
    version = stack.bags[0]["result"]["model_version"]
    thresholds = OperatorThresholds(redis.Redis.from_url(stack.redis_url), stack.prefix)
    calibrated = stack.bags[0]["result"]["threshold"]
    page = c.get("/models/threshold", params={"version": version, "candidate": calibrated * 1.1})
    assert page.status_code == 200
    what_if = select(page.text, id_="what-if")[0].text
    assert "%" in what_if and "held-out normal images" in what_if, what_if
    # below the normals' median: refused with its reason, the apply button disabled
    low = c.get("/models/threshold", params={"version": version, "candidate": 0})
    assert low.status_code == 400 and "median" in select(low.text, cls="error")[0].text
    # the first POST only shows the confirmation; nothing changes yet
    candidate = round(calibrated * 1.1, 6)
    confirm = c.post("/models/threshold", data={"csrf_token": csrf, "version": version, "candidate": candidate, "note": "fewer false alarms"})
    assert confirm.status_code == 200 and select(confirm.text, "button", id_="confirm-threshold")
    assert thresholds.get(version) is None
    done = c.post("/models/threshold", data={"csrf_token": csrf, "version": version, "candidate": candidate, "note": "fewer false alarms",
                                             "confirm": "yes"})
    assert done.status_code == 303
    change = thresholds.get(version)
    try:
        assert change is not None and change.threshold == candidate and change.by == "console:operator" and change.note == "fewer false alarms"
        assert abs(change.previous - calibrated) < 1e-6
        audit = select(c.get("/models/threshold", params={"version": version}).text, "table", id_="threshold-audit")[0].text
        assert "console:operator" in audit and "fewer false alarms" in audit
        assert c.post("/models/threshold", data={"version": version, "candidate": 1, "confirm": "yes"}).status_code == 403  # no CSRF
    finally:
        cleared = c.post("/models/threshold", data={"csrf_token": csrf, "version": version, "action": "clear"})
    assert cleared.status_code == 303 and thresholds.get(version) is None


def test_retrain_now_leaves_a_request_for_the_trainer_and_rollback_without_history_says_so(stack: Stack) -> None:
    from ganomaly.retrain import TrainerSignals

    c, csrf = _session(stack)
    sig = TrainerSignals(redis.Redis.from_url(stack.redis_url), stack.prefix)
    assert c.post("/models/retrain", data={}).status_code == 403  # no CSRF
    assert sig.pending() is None
    assert c.post("/models/retrain", data={"csrf_token": csrf}).status_code == 303
    try:
        assert sig.pending()["by"] == "console:operator"
        assert "asked for by console:operator" in select(c.get("/models").text, id_="trainer")[0].text
    finally:
        sig.take()
    r = c.get("/models/rollback")
    assert r.status_code == 409 and "no previous version" in r.text
    assert c.get("/models/m-doesnotexist/promote").status_code == 404
    assert c.get("/models/..%2F..%2Fetc/promote").status_code == 404


def test_an_alert_is_reachable_by_its_result_id_and_its_raw_map_downloads(stack: Stack) -> None:
    c, _ = _session(stack)
    alert = stack.bags[2]
    r = c.get(f"/results/{alert['result']['id']}")
    assert r.status_code == 303 and r.headers["location"] == f"/alerts/{alert['fingerprint']}"
    assert c.get("/results/images:0:999999999").status_code == 404
    assert c.get("/results/not-an-id").status_code == 404
    r = c.get(f"/alerts/{alert['fingerprint']}/map.npy")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    m = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert m.dtype == np.float32 and m.shape == (32, 32) and float(m.max()) > 0 and np.isfinite(m).all()
    assert select(c.get(f"/alerts/{alert['fingerprint']}").text, "a", id_="raw-map")
