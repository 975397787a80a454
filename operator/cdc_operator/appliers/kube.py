"""Server-side apply and reads against the Kubernetes API (the dynamic client)."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from cdc_operator import metrics as M

FIELD_MANAGER = "cdc-operator"


def load_config() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Kube:
    def __init__(self, api: client.ApiClient | None = None) -> None:
        self.api = api or load_config()
        self.dyn = DynamicClient(self.api)

    def create_token(self, namespace: str, sa: str, audience: str, seconds: int = 600) -> str:
        """A short-lived token for a ServiceAccount, valid only for `audience` (TokenRequest)."""
        M.API_REQUESTS.labels("create_token").inc()
        req = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=seconds)
        )
        out = client.CoreV1Api(self.api).create_namespaced_service_account_token(sa, namespace, req)
        if out.status is None or not out.status.token:
            raise RuntimeError(f"TokenRequest for {namespace}/{sa} returned no token")
        return str(out.status.token)

    def _res(self, api_version: str, kind: str) -> Any:
        return self.dyn.resources.get(api_version=api_version, kind=kind)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        M.API_REQUESTS.labels("apply").inc()
        res = self._res(obj["apiVersion"], obj["kind"])
        out = res.server_side_apply(
            body=obj, namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True,
        )  # fmt: skip
        return out.to_dict()  # type: ignore[no-any-return]

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        M.API_REQUESTS.labels("get").inc()
        try:
            return self._res(api_version, kind).get(name=name, namespace=namespace).to_dict()  # type: ignore[no-any-return]
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str) -> list[dict[str, Any]]:
        M.API_REQUESTS.labels("list").inc()
        items = self._res(api_version, kind).get(namespace=namespace).to_dict()["items"]
        return list(items)

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        M.API_REQUESTS.labels("delete").inc()
        try:
            self._res(api_version, kind).delete(name=name, namespace=namespace)
        except NotFoundError:
            return False
        return True

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str, status: dict[str, Any]
    ) -> None:
        M.API_REQUESTS.labels("patch_status").inc()
        res = self._res(api_version, kind)
        self.dyn.patch(
            res.subresources["status"], body={"status": status}, name=name, namespace=namespace,
            content_type="application/merge-patch+json",
        )  # fmt: skip
