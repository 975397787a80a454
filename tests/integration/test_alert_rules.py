"""The chart's alerts, checked and unit-tested by promtool (Prometheus 3, built by hack/stack).

The PrometheusRule is rendered by the stack's helm, its rule groups are checked with
`promtool check rules` (with every lint fatal) and run against tests/integration/alerts/
rules_test.yaml with `promtool test rules`. That file must exercise every alert both firing and
not firing, and its input series must be named and labelled as the operator, the worker and the
agent really export them: a renamed metric or label in the code then fails here instead of
silently never firing in production.

Integration, not unit: promtool is built from the Go module proxy on first use (a few minutes on
2 cores, then cached outside the repo by version), which `make test-unit` must not wait for.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_monitoring import TARGET_LABELS, labels_by_metric, metric_names

# A cold promtool build runs inside the first test's fixture setup.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800), pytest.mark.k8s]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cass-cdc-pg"
TESTS = Path(__file__).with_name("alerts") / "rules_test.yaml"
STACK = ROOT / "hack" / "stack"


def _tool(name: str) -> Path:
    res = subprocess.run(
        [str(STACK), "tool", name], capture_output=True, text=True, check=False, timeout=1700
    )
    assert res.returncode == 0, f"hack/stack tool {name}: {res.stderr}"
    return Path(res.stdout.strip())


@pytest.fixture(scope="module")
def promtool() -> Path:
    return _tool("promtool")


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The rule groups of the chart's PrometheusRule, as helm renders them."""
    res = subprocess.run(
        [str(_tool("helm")), "template", "rel", str(CHART), "-n", "cdc-system",
         "--set", "prometheusRule.enabled=true",
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (doc,) = [d for d in yaml.safe_load_all(res.stdout) if d]
    assert doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["namespace"] == "cdc-system"
    return dict(doc["spec"])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, rules: dict[str, Any]) -> Path:
    d = tmp_path_factory.mktemp("alerts")
    (d / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True))
    shutil.copy(TESTS, d / "rules_test.yaml")
    return d


def _alerts(rules: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def _series(text: str) -> tuple[str, dict[str, str]]:
    m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}", text.strip())
    assert m, f"cannot parse series {text!r}"
    labels = dict(re.findall(r'([a-zA-Z_]\w*)="([^"]*)"', m.group(2)))
    return m.group(1), labels


def test_rules_pass_promtool_check(promtool: Path, workdir: Path) -> None:
    res = subprocess.run(
        [str(promtool), "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml"],
        cwd=workdir, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(_alerts(yaml.safe_load((workdir / 'rules.yaml').read_text())))} rules" \
        in res.stdout + res.stderr  # fmt: skip


def test_alerts_fire_and_resolve_as_tested(promtool: Path, workdir: Path) -> None:
    res = subprocess.run(
        [str(promtool), "test", "rules", "rules_test.yaml"],
        cwd=workdir, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout + res.stderr


def test_every_alert_is_tested_firing_and_quiet(rules: dict[str, Any]) -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in _alerts(rules)}
    assert len(names) >= 13
    assert names - fires == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"
    assert (fires | quiet) - names == set(), "tests of alerts the chart does not ship"


def test_test_series_are_what_the_code_exports(rules: dict[str, Any]) -> None:
    exported = labels_by_metric()
    used: set[str] = set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for s in case["input_series"]:
            name, labels = _series(s["series"])
            assert name in exported, f"{name} is exported by neither operator, worker nor agent"
            extra = set(labels) - exported[name] - TARGET_LABELS
            assert not extra, f"{name} has no label(s) {extra}; it has {sorted(exported[name])}"
            # The code's own labels are always present (prometheus_client sets all of them).
            missing = exported[name] - set(labels)
            assert not missing, f"{s['series']} lacks label(s) {missing}"
            used.add(name)
    for rule in _alerts(rules):
        referenced = metric_names(str(rule["expr"]))
        assert referenced <= set(exported), f"{rule['alert']}: {referenced - set(exported)}"
        untested = referenced - used
        assert not untested, f"{rule['alert']}: no test feeds {untested}"
