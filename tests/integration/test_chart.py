"""The Helm chart: lint, values schema, and snapshots of the objects that matter.

Snapshots live in tests/snapshots/chart/; after an intended change, regenerate them with
`UPDATE_SNAPSHOTS=1 make test` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.k8s]
ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "cass-cdc-pg"
SNAPSHOTS = ROOT / "tests" / "snapshots" / "chart"


@pytest.fixture(scope="module")
def helm(stack: Callable[..., dict[str, str]]) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = stack("k8s")
    binary = next(Path(d) / "helm" for d in env["PATH"].split(":") if (Path(d) / "helm").exists())

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, check=False,
            env={**os.environ, "KUBECONFIG": env["KUBECONFIG"]}, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0 or not check, f"helm {args[0]}: {res.stderr}"
        return res

    return run


def render(helm: Any, *sets: str) -> list[dict[str, Any]]:
    args = ["template", "rel", str(CHART), "-n", "cdc-system"]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_lint(helm: Any) -> None:
    out = helm("lint", str(CHART), "--strict")
    assert "0 chart(s) failed" in out.stdout


def test_values_schema_rejects_bad_values(helm: Any) -> None:
    res = helm("template", "rel", str(CHART), "--set", "watchNamespaces[0]=Bad_NS", check=False)
    assert res.returncode != 0
    assert "watchNamespaces" in res.stderr
    res = helm("template", "rel", str(CHART), "--set", "image.pullPolicy=Sometimes", check=False)
    assert res.returncode != 0
    assert "pullPolicy" in res.stderr


def _pick(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[Any]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


@pytest.mark.parametrize(
    ("case", "sets"),
    [
        ("cluster-wide", []),
        ("namespaced", ["watchNamespaces[0]=team-a", "watchNamespaces[1]=team-b"]),
    ],
)
def test_snapshots(helm: Any, case: str, sets: list[str]) -> None:
    docs = render(helm, *sets)
    kinds = ("Deployment", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "Job")
    important = [d for d in docs if d["kind"] in kinds]
    text = yaml.safe_dump_all(important, sort_keys=True)
    path = SNAPSHOTS / f"{case}.yaml"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.write_text(text)
    assert path.read_text() == text, f"{path} differs: review, then UPDATE_SNAPSHOTS=1"


def test_security_and_crd_policy(helm: Any) -> None:
    docs = render(helm)
    dep = _pick(docs, "Deployment")[0]
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    crds = _pick(docs, "CustomResourceDefinition")
    assert sorted(d["metadata"]["name"] for d in crds) == [
        "cdcpipelines.casscdc.io",
        "tablereplications.casscdc.io",
    ]
    assert all(d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for d in crds)
    assert _pick(render(helm, "crds.create=false"), "CustomResourceDefinition") == []
    assert _pick(docs, "ServiceMonitor") == []
    assert _pick(docs, "PrometheusRule") == []
    rule = _pick(render(helm, "prometheusRule.enabled=true"), "PrometheusRule")[0]
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= {
        "CdcReplicationLagHigh",
        "CdcDeadLettersGrowing",
        "CdcSecretRefreshFailing",
        "CdcConnectorOffline",
        "CdcWorkersNoHeartbeat",
    }
    # Deleting every pipeline on uninstall is opt-in.
    assert _pick(docs, "Job") == []
    hook = _pick(render(helm, "cleanupOnUninstall=true"), "Job")[0]
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["CDC_OPERATOR_ALLOW_INSECURE_VAULT"] == "false"
    assert env["CDC_OPERATOR_ALLOWED_IMAGES"] == "localhost/cass-cdc-pg:*,localhost/cass-cdc-pg@*"


def test_namespaced_mode_uses_roles_only_for_writes(helm: Any) -> None:
    docs = render(helm, "watchNamespaces[0]=team-a")
    roles = _pick(docs, "Role")
    assert [r["metadata"]["namespace"] for r in roles] == ["team-a"]
    writers = [r for r in _pick(docs, "ClusterRole")
               if any("create" in rule["verbs"] for rule in r["rules"])]  # fmt: skip
    assert writers == []


def test_install_upgrade_uninstall_on_the_local_node(
    helm: Any, stack: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    """The operator Pod runs from the image on the local node and reconciles under the chart's
    RBAC; upgrade rolls it; uninstall's hook deletes the pipelines and keeps the CRDs."""
    import json
    import uuid

    env = stack("k8s", "node", "kafka", "vault", "redis")
    binary = next(
        Path(d) / "kubectl" for d in env["PATH"].split(":") if (Path(d) / "kubectl").exists()
    )
    kubectl = [binary, "--kubeconfig", env["KUBECONFIG"]]

    def k(*args: str, stdin: str | None = None, check: bool = True) -> str:
        res = subprocess.run([*map(str, kubectl), *args], input=stdin, capture_output=True,
                             text=True, check=False, timeout=120)  # fmt: skip
        assert res.returncode == 0 or not check, res.stderr
        return res.stdout

    subprocess.run(["make", "-s", "image"], cwd=ROOT, check=True, timeout=1200)
    rel, ns, watched = f"t{uuid.uuid4().hex[:5]}", "", ""
    ns, watched = f"{rel}-system", f"{rel}-apps"
    k("create", "namespace", watched)
    common = ["-n", ns, "--create-namespace", "--wait", "--timeout", "3m",
              "--set", "image.pullPolicy=Never", "--set", "crds.create=false",
              "--set", f"watchNamespaces[0]={watched}",
              "--set", "ports.health=18080", "--set", "ports.metrics=19090",
              "--set", "statusIntervalSeconds=2", "--set", "cleanupOnUninstall=true"]  # fmt: skip
    k("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"), check=False)
    try:
        helm("install", rel, str(CHART), *common)
        pods = json.loads(k("get", "pods", "-n", ns, "-o", "json"))["items"]
        assert [p["status"]["phase"] for p in pods if "cleanup" not in p["metadata"]["name"]] == [
            "Running"
        ]
        k("create", "secret", "generic", "pg", "-n", watched,
          "--from-literal=username=cdc", "--from-literal=password=cdc")  # fmt: skip
        pipeline = {
            "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
            "metadata": {"name": "p", "namespace": watched},
            "spec": {
                "cassandra": {"contactPoints": ["127.0.0.1:59042"]},
                "debezium": {"topicPrefix": rel},
                "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                          "deadLetterTopic": f"{rel}.dlq"},
                "postgres": {"host": "127.0.0.1", "database": "cdc",
                             "credentials": {"secretRef": {"name": "pg"}}},
                "worker": {"image": "localhost/cass-cdc-pg:not-built", "replicas": 1},
            },
        }  # fmt: skip
        k("apply", "-f", "-", stdin=json.dumps(pipeline))

        def reconciled() -> bool:
            out = k("get", "cdcp", "p", "-n", watched, "-o", "json", check=False)
            conds = (json.loads(out).get("status") or {}).get("conditions", []) if out else []
            return any(c["type"] == "TopicsReady" and c["status"] == "True" for c in conds)

        import time

        deadline = time.monotonic() + 90
        while not reconciled() and time.monotonic() < deadline:
            time.sleep(1)
        logs = k("logs", "-n", ns, f"deploy/{rel}-operator", check=False)
        assert reconciled(), logs[-3000:]
        assert "Forbidden" not in logs
        helm("upgrade", rel, str(CHART), *common, "--set", "logLevel=DEBUG")
        args = json.loads(k("get", "deploy", f"{rel}-operator", "-n", ns, "-o", "json"))[
            "spec"]["template"]["spec"]["containers"][0]["args"]  # fmt: skip
        assert "--log-level=DEBUG" in args
        helm("uninstall", rel, "-n", ns, "--wait", "--timeout", "3m")
        assert k("get", "cdcp", "-n", watched, "-o", "name") == ""  # the hook deleted them
        assert k("get", "deploy", "-n", ns, "-o", "name") == ""
        assert k("get", "crd", "cdcpipelines.casscdc.io", "-o", "name").strip()
    finally:
        helm("uninstall", rel, "-n", ns, check=False)
        k("delete", "namespace", ns, watched, "--wait=false", check=False)
