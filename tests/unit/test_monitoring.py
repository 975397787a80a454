"""Dashboards and alerts only use metrics the code really exports; every alert has a runbook."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from cdc_operator.metrics import REGISTRY as OPERATOR
from cdc_worker.agent.metrics import REGISTRY as AGENT
from cdc_worker.metrics import REGISTRY as WORKER

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = {
    "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile",
    "time", "by", "without", "on", "and", "or", "unless", "label_values", "absent", "abs",
    "le", "bool", "offset", "ignoring", "group_left", "group_right",
}  # fmt: skip
# Labels a Prometheus scrape adds to every series of a target (ServiceMonitor, pod discovery).
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "endpoint", "container"}


def exported() -> set[str]:
    names: set[str] = set()
    for registry in (WORKER, OPERATOR, AGENT):
        for metric in registry.collect():
            for sample in metric.samples:
                names.add(sample.name)
            base = metric.name
            names |= {base, f"{base}_total", f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r",\s*[a-zA-Z_]+\s*\)\s*$", ")", expr)  # label_values(metric, label)
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\boffset\s+-?[0-9]+[smhdwy]+", "", expr)  # offsets
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {t for t in tokens if t not in FUNCTIONS and not t.startswith("$")}


def labels_by_metric() -> dict[str, set[str]]:
    """Each exported sample name with the labels the code gives it."""
    out: dict[str, set[str]] = {}
    for registry in (WORKER, OPERATOR, AGENT):
        for collector in registry._collector_to_names:
            base, kind = collector._name, collector._type  # type: ignore[attr-defined]
            labels = set(getattr(collector, "_labelnames", ()))
            if kind == "stateset":
                labels.add(base)  # an Enum's state is a label named after the metric
            for suffix in ("", "_total", "_bucket", "_sum", "_count"):
                out[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def used_labels(expr: str) -> set[str]:
    """Labels an expression groups, joins or matches on."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    out: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        out |= {w.strip() for w in group.split(",") if w.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        out |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    return out


def dashboard_exprs() -> list[str]:
    out = []
    for path in (ROOT / "monitoring" / "dashboards").glob("*.json"):
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            out += [t["expr"] for t in panel.get("targets", [])]
        out += [v["query"] for v in doc["templating"]["list"] if v["type"] == "query"]
    return out


def alert_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load((ROOT / "monitoring" / "alerts.yaml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_every_expression_uses_exported_metrics() -> None:
    known = exported()
    exprs = dashboard_exprs() + [str(r["expr"]) for r in alert_rules()]
    assert len(exprs) > 15
    for expr in exprs:
        unknown = metric_names(expr) - known
        assert not unknown, f"{unknown} in {expr!r} are not exported by the code"


def test_alerts_use_labels_their_metrics_have() -> None:
    """A label the metrics of an alert do not carry matches nothing: the alert never fires."""
    labels = labels_by_metric()
    for rule in alert_rules():
        expr = str(rule["expr"])
        have = set().union(*(labels[m] for m in metric_names(expr))) | TARGET_LABELS
        wrong = used_labels(expr) - have
        assert not wrong, f"{rule['alert']}: no metric of {expr!r} has label(s) {wrong}"
        for text in rule["annotations"].values():  # type: ignore[attr-defined]
            shown = set(re.findall(r"\$labels\.(\w+)", text))
            assert shown <= have, f"{rule['alert']}: annotation shows {shown - have}"


def test_every_alert_has_a_runbook() -> None:
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]  # type: ignore[index]
        assert (ROOT / url).exists(), f"{rule['alert']}: runbook {url} missing"


def test_chart_ships_the_same_alerts() -> None:
    chart = ROOT / "charts" / "cass-cdc-pg" / "files" / "alerts.yaml"
    assert chart.read_text() == (ROOT / "monitoring" / "alerts.yaml").read_text()
