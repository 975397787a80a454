"""The operator's RBAC: no wildcard, and no verb beyond what the code uses."""

from __future__ import annotations

from cdc_operator.rbac import CLUSTER_RULES, RULES

# (apiGroup, resource) -> the verbs the code needs, and where.
USED = {
    # Kopf (list, watch, patch), reconcile's get / tables_of's list, the cleanup hook (delete)
    ("casscdc.io", "cdcpipelines"): {"get", "list", "watch", "patch", "delete"},
    ("casscdc.io", "tablereplications"): {"get", "list", "watch", "patch", "delete"},
    ("casscdc.io", "cdcpipelines/status"): {"patch"},  # Kube.patch_status
    ("casscdc.io", "tablereplications/status"): {"patch"},
    ("", "secrets"): {"get", "create", "patch"},  # secretRef reads, the owned Secret (SSA)
    ("", "configmaps"): {"create", "patch"},  # SSA of the worker and connector ConfigMaps
    ("", "services"): {"create", "patch"},
    ("", "serviceaccounts"): {"create", "patch"},  # the pipeline's own ServiceAccount
    ("", "serviceaccounts/token"): {"create"},  # TokenRequest for Vault's Kubernetes auth
    ("apps", "deployments"): {"get", "list", "watch", "create", "patch"},  # index + SSA
    ("policy", "poddisruptionbudgets"): {"create", "patch"},
    ("batch", "jobs"): {"list", "create", "patch"},  # scan_step: verify/backfill Jobs
    ("", "events"): {"create", "patch"},  # Kopf's events
    ("events.k8s.io", "events"): {"create", "patch"},
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},  # Kopf
    ("", "namespaces"): {"get", "list", "watch"},  # Kopf's namespace discovery
}  # fmt: skip


def granted() -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in [*RULES, *CLUSTER_RULES]:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def test_no_wildcards() -> None:
    for rule in [*RULES, *CLUSTER_RULES]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert "resourceNames" not in rule or "*" not in rule["resourceNames"]


def test_no_verb_beyond_what_the_code_uses() -> None:
    extra = {k: v - USED.get(k, set()) for k, v in granted().items() if v - USED.get(k, set())}
    assert extra == {}
