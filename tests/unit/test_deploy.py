"""deploy/ is checked offline: schemas, settings names, probes, and files the images copy."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client import generate_latest

from console.settings import ConsoleSettings
from tests.dashboard import DASHBOARD_DIR, GRAFANA_VARIABLES, SCRAPE_LABELS, dashboard, panels, prometheus_tool, query_variables, substitute
from trainer.settings import TrainerSettings
from worker.metrics import serve_http
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30.0"
CRDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}


def _env_names(cls: Any) -> set[str]:
    """Every env variable a settings class reads, its composed connection blocks' included."""
    from ganomaly.connections.compose import blocks, env_name

    composed = blocks(cls)
    return {env_name(cls, n) for n in cls.model_fields if n not in composed} | {env_name(b, n) for b in composed.values() for n in b.model_fields}


def _merge(base: Any, patch: Any) -> Any:
    """Strategic-merge enough for our patches: dicts merge, lists of named dicts merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            out[k] = _merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        out = copy.deepcopy(base)
        for p in patch:
            idx = next((i for i, b in enumerate(out) if b["name"] == p["name"]), None)
            if idx is None:
                out.append(copy.deepcopy(p))
            else:
                out[idx] = _merge(out[idx], p)
        return out
    return copy.deepcopy(patch)


def render(kdir: Path) -> list[dict[str, Any]]:
    """A kustomize-equivalent rendering of our bases, overlays and components (resources, patches, images, namespace)."""
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for res in k.get("resources", []):
        p = kdir / res
        docs += render(p) if p.is_dir() else [d for d in yaml.safe_load_all(p.read_text()) if d]
    patches = [(kdir, p) for p in k.get("patches", [])]
    for comp in k.get("components", []):  # a component adds its resources and patches to the overlay's
        ck = yaml.safe_load((kdir / comp / "kustomization.yaml").read_text())
        assert ck["kind"] == "Component" and set(ck) <= {"apiVersion", "kind", "resources", "patches"}, f"render() cannot build {comp}"
        docs += [d for res in ck.get("resources", []) for d in yaml.safe_load_all((kdir / comp / res).read_text()) if d]
        patches += [(kdir / comp, p) for p in ck.get("patches", [])]
    for pdir, patch in patches:
        assert "path" in patch, f"render() applies patches from files only: {patch}"
        pdoc = yaml.safe_load((pdir / patch["path"]).read_text())
        target = [d for d in docs if d["kind"] == pdoc["kind"] and d["metadata"]["name"] == pdoc["metadata"]["name"]]
        assert len(target) == 1, f"patch {patch['path']} matches {len(target)} resources"
        docs[docs.index(target[0])] = _merge(target[0], pdoc)
    for img in k.get("images", []):
        for d in docs:
            for c in _containers(d):
                if c["image"].split(":")[0] == img["name"] or c["image"].split(":")[0] == img.get("newName"):
                    c["image"] = f"{img.get('newName', img['name'])}:{img['newTag']}"
    if "namespace" in k:
        for d in docs:
            d["metadata"]["namespace"] = k["namespace"]
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec.get("template", {}).get("spec", {}).get("containers", [])


@pytest.mark.parametrize("overlay", ["base", "overlays/cpu", "overlays/gpu"])
def test_manifests_validate_against_kubernetes_schemas(overlay: str) -> None:
    docs = render(K8S / overlay)
    assert {d["kind"] for d in docs} >= {"Deployment", "CronJob", "ConfigMap", "Secret", "PersistentVolumeClaim", "ScaledObject"}
    for d in docs:
        if d["kind"] in CRDS:
            assert d["apiVersion"] in ("keda.sh/v1alpha1", "monitoring.coreos.com/v1") and d["spec"]
            continue
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_hpa_component_validates() -> None:
    for d in yaml.safe_load_all((K8S / "components" / "hpa" / "hpa.yaml").read_text()):
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_configmap_keys_are_real_settings() -> None:
    known = _env_names(WorkerSettings) | _env_names(TrainerSettings) | _env_names(ConsoleSettings)
    for doc in render(K8S / "base"):
        if doc["kind"] == "ConfigMap" or (doc["kind"] == "Secret" and doc["metadata"]["name"] == "ganomaly-secrets"):
            keys = set(doc.get("data", {})) | set(doc.get("stringData", {}))
            assert keys <= known, f"unknown settings in {doc['metadata']['name']}: {keys - known}"
    for overlay in ("base", "overlays/cpu", "overlays/gpu"):
        for doc in render(K8S / overlay):
            for c in _containers(doc):
                for e in c.get("env", []):
                    assert e["name"] in known, e["name"]


def test_probes_and_ports_match_the_worker() -> None:
    cm = next(d for d in render(K8S / "base") if d["kind"] == "ConfigMap")["data"]
    dep = next(d for d in render(K8S / "overlays" / "gpu") if d["kind"] == "Deployment" and d["metadata"]["name"] == "ganomaly-worker")
    c = _containers(dep)[0]
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    assert port == int(cm["GANOMALY_METRICS_PORT"])
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    paths = {c[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert paths == {"/healthz", "/readyz"}
    # The worker really serves those paths (the server is started for real on a free port).
    import json
    import urllib.error
    import urllib.request

    from ganomaly.devstack import free_port
    from worker.metrics import Health, WorkerMetrics

    h = Health()
    h.model_loaded = h.assigned = True
    h.beat("poll")
    fp = free_port()
    srv = serve_http("127.0.0.1", fp, WorkerMetrics(), h)
    try:
        for path in paths:
            assert json.loads(urllib.request.urlopen(f"http://127.0.0.1:{fp}{path}", timeout=5).read())
        assert b"ganomaly_in_flight" in urllib.request.urlopen(f"http://127.0.0.1:{fp}/metrics", timeout=5).read()
        h.assigned = False
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{fp}/readyz", timeout=5)
    finally:
        srv.shutdown()
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > float(cm["GANOMALY_DRAIN_TIMEOUT_S"])
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1


def _exported() -> dict[str, set[str]]:
    """Sample name -> label names, from a WorkerMetrics with one child of every labelled metric."""
    from prometheus_client.parser import text_string_to_metric_families

    from worker.metrics import WorkerMetrics

    m = WorkerMetrics()
    m.set_model("v1", 0.5, 0.01)
    m.scored.labels("v1").inc()
    m.anomalies.labels("v1").inc()
    m.score.labels("v1").observe(0.3)
    m.dead_letters.labels("bomb").inc()
    m.queue_depth.labels("raw").set(1)
    m.lag.labels("images", "0").set(1)
    m.retries.labels("redis").inc()
    m.values_omitted.inc()
    m.converted.labels("3", "1").inc()
    m.commits.labels("failed").inc()
    out: dict[str, set[str]] = {}
    for fam in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, set()).update(s.labels)
    return out


def _check_expr(expr: str, exported: dict[str, set[str]], extra_labels: frozenset[str] = frozenset()) -> None:
    """``expr`` parses as PromQL and names only exported metrics and their labels (plus ``le`` and ``extra_labels``)."""
    promql_parser.parse(expr)  # ValueError on a syntax error
    names = set(re.findall(r"\bganomaly_\w+", expr))
    assert names and names <= set(exported), f"unknown metrics {names - set(exported)} in {expr}"
    labels = set().union(*(exported[n] for n in names)) | {"le"} | extra_labels
    used = {x.strip() for grp in re.findall(r"by \(([^)]*)\)", expr) for x in grp.split(",")}
    used |= set(re.findall(r"(\w+)(?:=~|!~|!=|=)\"", expr))
    assert used <= labels, f"labels {used - labels} are not on {names}"


def test_alert_rules_name_only_metrics_and_labels_the_worker_exports() -> None:
    rule = next(d for d in render(K8S / "base") if d["kind"] == "PrometheusRule")
    exported = _exported()
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(exprs) >= 5
    for expr in exprs:
        _check_expr(expr, exported)


def test_dashboard_queries_parse_and_name_only_metrics_and_labels_the_worker_exports() -> None:
    dash, exported = dashboard(), _exported()
    targets = [t for p in panels(dash) for t in p.get("targets", [])]
    assert len(targets) >= 25
    for t in targets:
        _check_expr(substitute(t["expr"]), exported, SCRAPE_LABELS)
        legend = set(re.findall(r"\{\{(\w+)\}\}", t.get("legendFormat", "")))
        assert legend <= set().union(*exported.values()) | SCRAPE_LABELS, t
    for ann in dash["annotations"]["list"]:
        _check_expr(substitute(ann["expr"]), exported, SCRAPE_LABELS)
    variables = query_variables(dash)
    assert variables
    for metric, label in variables:
        _check_expr(metric, exported, SCRAPE_LABELS)
        assert label in SCRAPE_LABELS | set().union(*exported.values())
    # every family the worker exports is on the dashboard somewhere
    shown = set(re.findall(r"\bganomaly_\w+", json.dumps(dash)))
    families = {re.sub(r"_(bucket|sum|count|created)$", "", n) for n in exported}
    assert {f for f in families if not any(n.startswith(f) for n in shown)} == set()


def test_dashboard_layout_variables_and_data_source() -> None:
    dash = dashboard()
    every = panels(dash)
    assert len({p["id"] for p in every}) == len(every)
    assert {v["name"] for v in dash["templating"]["list"]} | {"__rate_interval"} == set(GRAFANA_VARIABLES)
    cells: set[tuple[int, int]] = set()
    for p in every:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p["targets"] and len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
            assert p.get("description"), f"{p['title']} says nothing about what it shows"


def test_dashboard_component_generates_a_valid_configmap_the_grafana_sidecar_loads() -> None:
    k = yaml.safe_load((DASHBOARD_DIR / "kustomization.yaml").read_text())
    assert k["kind"] == "Component"
    (gen,) = k["configMapGenerator"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": gen["name"], "labels": gen["options"]["labels"]},
          "data": {f: (DASHBOARD_DIR / f).read_text() for f in gen["files"]}}
    kubernetes_validate.validate(cm, K8S_VERSION, strict=True)
    assert cm["metadata"]["labels"] == {"grafana_dashboard": "1"} and gen["options"]["disableNameSuffixHash"] is True
    assert sum(len(v.encode()) for v in cm["data"].values()) < 1024 * 1024  # the API server's limit for a ConfigMap
    assert all(json.loads(v)["uid"] for v in cm["data"].values())


def test_keda_never_scales_past_the_partitions() -> None:
    so = next(d for d in render(K8S / "base") if d["kind"] == "ScaledObject")
    partitions = int(re.search(r"partitions \((\d+) here\)", (K8S / "base" / "worker-scaledobject.yaml").read_text()).group(1))  # type: ignore[union-attr]
    assert so["spec"]["maxReplicaCount"] <= partitions
    trig = so["spec"]["triggers"][0]["metadata"]
    cm = next(d for d in render(K8S / "base") if d["kind"] == "ConfigMap")["data"]
    assert trig["consumerGroup"] == cm["GANOMALY_GROUP_ID"] and trig["topic"] == cm["GANOMALY_INPUT_TOPIC"]
    cron = next(d for d in render(K8S / "base") if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_keda_reads_the_lag_with_the_workers_broker_and_credentials() -> None:
    """The scaler's broker, SASL mechanism, TLS and credentials are the ones the workers use: a scaler that
    cannot authenticate reads no lag and never scales."""
    from ganomaly.connections.kafka import KafkaSettings

    docs = render(K8S / "base")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    kafka = KafkaSettings.model_validate({k.removeprefix("GANOMALY_").lower(): v for k, v in cm.items()
                                          if k.removeprefix("GANOMALY_").lower() in KafkaSettings.model_fields and k != "GANOMALY_SSL_CAFILE"}
                                         | {"sasl_username": "u", "sasl_password": "p"})  # the CA file exists in the pod only
    so = next(d for d in docs if d["kind"] == "ScaledObject")
    (trigger,) = so["spec"]["triggers"]
    meta = trigger["metadata"]
    assert meta["bootstrapServers"] == kafka.bootstrap_servers
    assert meta.get("sasl", "none") == (kafka.sasl_mechanism or "none").lower().replace("-", "_").replace("scram_sha_", "scram_sha")
    assert (meta.get("tls") == "enable") == kafka.tls()
    auth = next(d for d in docs if d["kind"] == "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"] == ("ganomaly-secrets", "GANOMALY_SASL_USERNAME") and refs["password"] == ("ganomaly-secrets", "GANOMALY_SASL_PASSWORD")
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for name, key in refs.values():
        assert key in secrets[name].get("stringData", {}) | secrets[name].get("data", {}), f"{name} has no key {key}"
    # the CA KEDA checks the broker with is the file the workers and the trainer are pointed at
    ca_secret, ca_key = refs["ca"]
    for doc in (d for d in docs if d["kind"] in ("Deployment", "CronJob")):
        spec = doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        vol = next(v["name"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") == ca_secret)
        (mount,) = [m["mountPath"] for c in _containers(doc) for m in c.get("volumeMounts", []) if m["name"] == vol]
        assert cm["GANOMALY_SSL_CAFILE"] == f"{mount}/{ca_key}" == cm["GANOMALY_REDIS_CA_FILE"], doc["metadata"]["name"]
        assert any(e.get("secretRef", {}).get("name") == "ganomaly-secrets" for c in _containers(doc) for e in c.get("envFrom", []))
    assert secrets["ganomaly-secrets"]["stringData"]["GANOMALY_REDIS_URL"].startswith("rediss://")


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfiles_copy_files_that_exist(dockerfile: str) -> None:
    text = (ROOT / "deploy" / "docker" / dockerfile).read_text()
    copies = re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.MULTILINE)
    assert copies
    for line in copies:
        for src in line.split():
            assert (ROOT / src).exists(), f"{dockerfile} copies missing {src}"
    assert "USER 10001" in text and text.count("FROM ") >= 2
    # every package the project installs is in the image (the console too: `ganomaly console` runs from it)
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {Path(src).name for line in copies for src in line.split()}
    assert {p.rstrip("*") for p in packages} <= copied, f"{dockerfile} leaves out {sorted({p.rstrip('*') for p in packages} - copied)}"


def test_compose_services_use_real_commands() -> None:
    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    from ganomaly.cli.main import build_parser

    parser, _ = build_parser()
    for name in ("worker", "producer", "trainer", "console"):
        parser.parse_args(doc["services"][name]["command"])  # exits on an unknown flag


def test_compose_prometheus_scrapes_every_worker_and_grafana_loads_the_dashboard() -> None:
    deploy = ROOT / "deploy"
    services = yaml.safe_load((deploy / "compose.yaml").read_text())["services"]
    mounts = {name: dict(v.split(":")[:2] for v in services[name]["volumes"]) for name in ("prometheus", "grafana")}
    for name, pairs in mounts.items():
        for src in pairs:
            assert (deploy / src).is_file(), f"{name} mounts missing {src}"
    prom_cfg = next(src for src, dst in mounts["prometheus"].items() if dst == "/etc/prometheus/prometheus.yml")
    assert f"--config.file={mounts['prometheus'][prom_cfg]}" in services["prometheus"]["command"]
    check = subprocess.run([prometheus_tool("promtool"), "check", "config", str(deploy / prom_cfg)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    (job,) = yaml.safe_load((deploy / prom_cfg).read_text())["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == WorkerSettings.model_fields["metrics_port"].default
    assert {r["target_label"] for r in job["relabel_configs"]} == SCRAPE_LABELS  # the labels the dashboard filters on
    graf = {dst: deploy / src for src, dst in mounts["grafana"].items()}
    (ds,) = yaml.safe_load(next(p for d, p in graf.items() if "/datasources/" in d).read_text())["datasources"]
    assert ds["type"] == "prometheus" and ds["isDefault"] and ds["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load(next(p for d, p in graf.items() if "/provisioning/dashboards/" in d).read_text())["providers"]
    dash_dst = next(d for d, p in graf.items() if p.resolve() == (DASHBOARD_DIR / "ganomaly-workers.json").resolve())
    assert str(Path(dash_dst).parent) == provider["options"]["path"]


# --- the operator's console --------------------------------------------------------------------

CONSOLE_SECRET = "ganomaly-console"  # made by the operator (the command in console-deployment.yaml), never shipped


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def test_console_is_in_the_base_wired_like_the_workers() -> None:
    docs = render(K8S / "base")
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    worker, console = _named(docs, "Deployment", "ganomaly-worker"), _named(docs, "Deployment", "ganomaly-console")
    (wc,), (c,) = _containers(worker), _containers(console)
    assert c["image"] == wc["image"] and c["args"] == ["console", "--host", "0.0.0.0", "--port", "8080"]
    from ganomaly.cli.main import build_parser

    build_parser()[0].parse_args(c["args"])  # exits on an unknown flag
    # the shared settings and the broker/Redis credentials, by the same references as the workers
    assert c["envFrom"] == wc["envFrom"] == [{"configMapRef": {"name": cm["metadata"]["name"]}}, {"secretRef": {"name": "ganomaly-secrets"}}]
    env = {e["name"]: e for e in c["env"]}
    assert set(env) <= _env_names(ConsoleSettings)
    # the console reads the broker, Redis, the store, the workers' group and the topics under the names the workers do
    from_cm = {"GANOMALY_BOOTSTRAP_SERVERS", "GANOMALY_SECURITY_PROTOCOL", "GANOMALY_SASL_MECHANISM", "GANOMALY_SSL_CAFILE",
               "GANOMALY_REDIS_CA_FILE", "GANOMALY_REDIS_PREFIX", "GANOMALY_MODEL_STORE", "GANOMALY_GROUP_ID",
               "GANOMALY_INPUT_TOPIC", "GANOMALY_RESULTS_TOPIC", "GANOMALY_FEEDBACK_TOPIC"}
    secret = _named(docs, "Secret", "ganomaly-secrets")["stringData"]
    assert from_cm <= set(cm["data"]) & _env_names(ConsoleSettings) & (_env_names(WorkerSettings) | _env_names(TrainerSettings))
    assert set(secret) <= _env_names(ConsoleSettings) & _env_names(WorkerSettings)
    # the signing key comes from the Secret (one key for all replicas and restarts), the users from a file mounted from it
    assert env["GANOMALY_CONSOLE_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": CONSOLE_SECRET, "key": "secret-key"}
    assert "GANOMALY_CONSOLE_TOKEN" not in env  # one name per operator, from the users file
    users_vol = next(v for v in _pod(console)["volumes"] if v.get("secret", {}).get("secretName") == CONSOLE_SECRET)
    ((item,),) = [users_vol["secret"]["items"]]
    assert item["key"] == "console-users"
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == users_vol["name"]]
    assert mount["readOnly"] and env["GANOMALY_CONSOLE_USERS_FILE"]["value"] == f"{mount['mountPath']}/{item['path']}"
    # the model store: the workers' claim, at the path the ConfigMap names, read-only as the workers mount it
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    w_models = next(m for m in wc["volumeMounts"] if m["mountPath"] == cm["data"]["GANOMALY_MODEL_STORE"])
    claim = {v["name"]: v.get("persistentVolumeClaim") for v in _pod(console)["volumes"]}
    w_claim = {v["name"]: v.get("persistentVolumeClaim") for v in _pod(worker)["volumes"]}
    (models,) = [m for m in mounts.values() if m["mountPath"] == cm["data"]["GANOMALY_MODEL_STORE"]]
    assert models["readOnly"] is True is w_models["readOnly"] and claim[models["name"]] == w_claim[w_models["name"]]
    # probes on /healthz (no auth) at the port it listens on; the Service reaches that port
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    assert port == 8080 == int(c["args"][c["args"].index("--port") + 1])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    svc = _named(docs, "Service", "ganomaly-console")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]
    assert svc["spec"]["selector"].items() <= console["spec"]["template"]["metadata"]["labels"].items()
    assert not svc["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()
    # locked down like the workers; modest resources (anomaly maps on CPU)
    assert _pod(console)["securityContext"] == _pod(worker)["securityContext"] and c["securityContext"] == wc["securityContext"]
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "1Gi"} and "memory" in c["resources"]["limits"]


def test_console_credentials_come_from_the_operators_secret_only() -> None:
    """No default credentials anywhere: the base ships no console Secret (a template token would be a working
    one), no env var carries a literal token or key, and the command that makes the Secret makes the keys read."""
    dep_yaml = (K8S / "base" / "console-deployment.yaml").read_text()
    files = sorted(K8S.rglob("*.yaml")) + [ROOT / "deploy" / "compose.yaml"]
    for f in files:
        text = f.read_text()
        assert not re.search(r"token=|--demo-token", text), f"{f.relative_to(ROOT)} names a token or a demo token"
    for overlay in ("base", "overlays/cpu", "overlays/gpu"):
        for d in render(K8S / overlay):
            assert not (d["kind"] == "Secret" and d["metadata"]["name"] == CONSOLE_SECRET), f"{overlay} ships {CONSOLE_SECRET}"
            for c in _containers(d):
                for e in c.get("env", []):
                    if re.search(r"TOKEN|SECRET|PASSWORD|USERS", e["name"]) and e["name"] != "GANOMALY_CONSOLE_USERS_FILE":
                        assert "value" not in e, f"{d['metadata']['name']}: {e['name']} is a literal"
    create = re.search(r"kubectl -n (\S+) create secret generic (\S+) \\\n#\s+(.+)", dep_yaml)
    assert create, "console-deployment.yaml shows how to make its Secret"
    namespace, name, rest = create.groups()
    made = set(re.findall(r"--from-(?:literal|file)=([\w-]+)=", rest))
    console = _named(render(K8S / "base"), "Deployment", "ganomaly-console")
    (c,) = _containers(console)
    read = {e["valueFrom"]["secretKeyRef"]["key"] for e in c["env"] if e.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == name}
    read |= {i["key"] for v in _pod(console)["volumes"] if v.get("secret", {}).get("secretName") == name for i in v["secret"]["items"]}
    assert namespace == console["metadata"]["namespace"] and made == read == {"secret-key", "console-users"}


def test_console_ingress_component_builds_with_tls_behind_sso(tmp_path: Path) -> None:
    comp = K8S / "components" / "console-ingress"
    assert yaml.safe_load((comp / "kustomization.yaml").read_text())["kind"] == "Component"
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({"resources": [str(K8S / "overlays" / "cpu")], "components": [str(comp)]}))
    docs = render(tmp_path)
    for d in docs:
        if d["kind"] not in CRDS:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    ing, svc = _named(docs, "Ingress", "ganomaly-console"), _named(docs, "Service", "ganomaly-console")
    ((rule,),) = [ing["spec"]["rules"]]
    ((path,),) = [rule["http"]["paths"]]
    assert path["backend"]["service"] == {"name": svc["metadata"]["name"], "port": {"name": svc["spec"]["ports"][0]["name"]}}
    (tls,) = ing["spec"]["tls"]
    assert tls["hosts"] == [rule["host"]] and tls["secretName"]
    notes = ing["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/auth-url"].startswith("https://")  # SSO in front, failing closed until set
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # the live alerts are Server-Sent Events
    assert "SSO" in (comp / "kustomization.yaml").read_text() and "VPN" in (comp / "kustomization.yaml").read_text()


def test_compose_console_runs_with_the_workers_settings_and_a_token_from_the_shell() -> None:
    services = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]
    worker, console = services["worker"], services["console"]
    assert console["command"] == ["console", "--host", "0.0.0.0", "--port", "8080"] and console["image"] == worker["image"]
    env = dict(console["environment"])
    token = env.pop("GANOMALY_CONSOLE_TOKEN")
    assert env == worker["environment"]
    # no default: compose stops with the message when the variable is unset or empty (no nested $ in the message)
    assert re.fullmatch(r"\$\{GANOMALY_CONSOLE_TOKEN:\?[^${}]+\}", token), token
    assert console["ports"] == ["127.0.0.1:8080:8080"]
    store = env["GANOMALY_MODEL_STORE"]
    assert f"models:{store}:ro" in console["volumes"] and any(v.startswith(f"models:{store}") for v in worker["volumes"])
    assert "http://127.0.0.1:8080/healthz" in " ".join(console["healthcheck"]["test"])


def test_images_install_the_packages_data_files() -> None:
    """The images `pip install /src`: a wheel carries a package's non-Python files (the console's templates,
    script and style) only when [tool.setuptools.package-data] names them, else `ganomaly console` in the image
    has no pages to render."""
    import fnmatch
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data: dict[str, list[str]] = setuptools.get("package-data", {})
    missing = []
    for pkg in (p.rstrip("*") for p in setuptools["packages"]["find"]["include"]):
        for f in sorted((ROOT / pkg).rglob("*")):
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts:
                rel = f.relative_to(ROOT / pkg).as_posix()
                if not any(fnmatch.fnmatch(rel, g) for g in data.get(pkg, []) + data.get("*", [])):
                    missing.append(f"{pkg}/{rel}")
    assert not missing, f"not in any wheel (add them to [tool.setuptools.package-data]): {missing}"
