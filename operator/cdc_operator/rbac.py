"""The operator's least-privilege RBAC rules: one definition for the chart and the tests.

Namespaced by default (a Role per watched namespace); the chart turns the same
rules into a ClusterRole when it watches every namespace.
"""

from __future__ import annotations

from typing import Any

from cdc_operator.models import GROUP

# Each verb is one the code uses (tests/unit/test_rbac.py keeps it that way): Kopf lists,
# watches and patches the resources (finalizers, progress annotations) and the cleanup hook
# deletes them; passes read pipelines, patch status, read Secrets named by secretRef, and
# server-side apply (PATCH, or create when absent) what they own; TokenRequest for Vault.
_APPLY = ["create", "patch"]

RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": ["cdcpipelines", "tablereplications"],
     "verbs": ["get", "list", "watch", "patch", "delete"]},
    {"apiGroups": [GROUP], "resources": ["cdcpipelines/status", "tablereplications/status"],
     "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", *_APPLY]},
    {"apiGroups": [""], "resources": ["configmaps", "services"], "verbs": _APPLY},
    # Each pipeline's own identity (Vault's Kubernetes auth, worker Pods), never the operator's.
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": _APPLY},
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    # Watched (an index of the workers' Deployments), read by tools, server-side applied.
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", *_APPLY]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _APPLY},
    # Verify/backfill scans: Indexed Jobs per table (scan_step), listed to read their verdict.
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", *_APPLY]},
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
