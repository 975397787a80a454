"""The operator's least-privilege RBAC rules: one definition for the chart and the tests.

Namespaced by default (a Role per watched namespace); the chart turns the same
rules into a ClusterRole when it watches every namespace.
"""

from __future__ import annotations

from typing import Any

from cdc_operator.models import GROUP

_RW = ["get", "list", "watch", "create", "update", "patch", "delete"]

RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": ["cdcpipelines", "tablereplications"],
     "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": [GROUP], "resources": ["cdcpipelines/status", "tablereplications/status"],
     "verbs": ["get", "patch", "update"]},
    {"apiGroups": [""], "resources": ["configmaps", "secrets", "services"], "verbs": _RW},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": _RW},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _RW},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip


def role(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": namespace}, "rules": RULES}  # fmt: skip


# Read-only and cluster-wide in every mode: kopf observes CRDs and namespaces to discover what
# it serves (without them it retries, then falls back to restart-time discovery only).
CLUSTER_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
]  # fmt: skip


def cluster_role(name: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name}, "rules": CLUSTER_RULES}  # fmt: skip
