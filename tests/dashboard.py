"""The Grafana dashboard and alert rules as queries: shared by the offline deploy checks and the real-Prometheus test."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = ROOT / "deploy" / "k8s" / "components" / "grafana-dashboard"
RULES = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"
# added by the ServiceMonitor's scrape (Prometheus Operator), not by the worker
SCRAPE_LABELS = frozenset({"namespace", "pod"})
# what Grafana puts in place of each variable before a query reaches Prometheus
GRAFANA_VARIABLES = {"__rate_interval": "1m", "datasource": "prometheus", "namespace": "ganomaly", "pod": ".*"}


def dashboard() -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / "ganomaly-workers.json").read_text())


def panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    return [q for p in dash["panels"] for q in [p, *p.get("panels", [])]]


def query_variables(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(series selector, label) of each ``label_values(...)`` template variable, Grafana's variables substituted."""
    out = []
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", substitute(var["query"]["query"]))
            assert m, var["query"]["query"]
            out.append((m.group(1), m.group(2)))
    return out


def substitute(text: str) -> str:
    """Grafana's variables replaced as Grafana would; an undefined one is a KeyError."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA_VARIABLES[m.group(1)], text)


def rule_groups() -> list[dict[str, Any]]:
    """The PrometheusRule's groups: also a plain Prometheus rules file's content."""
    return yaml.safe_load(RULES.read_text())["spec"]["groups"]


def prometheus_tool(name: str) -> str:
    """``prometheus`` or ``promtool``: the copy scripts/setup.sh unpacks into .tools/, else one on PATH."""
    local = ROOT / ".tools" / "prometheus" / "usr" / "bin" / name
    exe = str(local) if local.exists() else shutil.which(name)
    assert exe, f"{name} is not installed: run scripts/setup.sh (it unpacks Debian's prometheus package into .tools/)"
    return exe
