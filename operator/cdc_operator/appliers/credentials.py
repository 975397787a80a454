"""Credentials from Vault (KV v2) or from referenced Secrets, for the workers' Secret.

Errors say which reference failed and why, never a value. Vault is reached with
the pipeline's auth: a token kept in a Secret (development) or the Kubernetes
auth method with the operator's service-account token (in-cluster).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hvac
import requests

from cdc_operator.models import CdcPipelineSpec, CredentialRef

SA_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class CredentialsError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


GetSecret = Callable[[str], dict[str, Any] | None]  # name -> Secret object in the namespace


def _secret_value(get_secret: GetSecret, name: str, key: str) -> str:
    secret = get_secret(name)
    if secret is None:
        raise CredentialsError("SecretNotFound", f"Secret {name} not found")
    data = secret.get("data") or {}
    if key not in data:
        raise CredentialsError("SecretKeyMissing", f"Secret {name} has no key {key!r}")
    return base64.b64decode(data[key]).decode()


def _vault_client(spec: CdcPipelineSpec, get_secret: GetSecret) -> hvac.Client:
    vault = spec.vault
    if vault is None:
        raise CredentialsError("VaultNotConfigured", "a vaultPath is used but spec.vault is unset")
    try:
        if vault.auth.token_secret_ref is not None:
            ref = vault.auth.token_secret_ref
            token = _secret_value(get_secret, ref.name, ref.key)
            return hvac.Client(url=vault.address, token=token, timeout=5)
        assert vault.auth.kubernetes is not None
        path = Path(os.environ.get("CDC_OPERATOR_SA_TOKEN_FILE", SA_TOKEN))
        client = hvac.Client(url=vault.address, timeout=5)
        client.auth.kubernetes.login(
            role=vault.auth.kubernetes.role, jwt=path.read_text().strip(),
            mount_point=vault.auth.kubernetes.mount_path,
        )  # fmt: skip
        return client
    except (requests.RequestException, hvac.exceptions.VaultError, OSError) as e:
        raise CredentialsError(
            "VaultUnreachable", f"Vault login failed: {type(e).__name__}"
        ) from None


def _from_vault(client: hvac.Client, mount: str, path: str) -> dict[str, str]:
    try:
        read = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        raise CredentialsError(
            "VaultPathNotFound", f"Vault path {mount}/{path} not found"
        ) from None
    except hvac.exceptions.Forbidden:
        raise CredentialsError("VaultForbidden", f"Vault denied {mount}/{path}") from None
    except (requests.RequestException, hvac.exceptions.VaultError) as e:
        raise CredentialsError(
            "VaultUnreachable", f"Vault read failed: {type(e).__name__}"
        ) from None
    data = read["data"]["data"]
    return {k: str(v) for k, v in data.items()}


def resolve(spec: CdcPipelineSpec, get_secret: GetSecret) -> dict[str, str]:
    """Env-style keys for the workers' Secret (POSTGRES_USERNAME, POSTGRES_PASSWORD, …)."""
    refs: list[tuple[str, CredentialRef | None]] = [
        ("POSTGRES", spec.postgres.credentials),
        ("KAFKA", spec.kafka.credentials),
        ("REDIS", spec.redis.credentials if spec.redis else None),
        ("CASSANDRA", spec.cassandra.credentials),
    ]
    client: hvac.Client | None = None
    out: dict[str, str] = {}
    for prefix, ref in refs:
        if ref is None:
            continue
        if ref.vault_path is not None:
            if client is None:
                client = _vault_client(spec, get_secret)
            assert spec.vault is not None
            data = _from_vault(client, spec.vault.kv_mount, ref.vault_path)
            where = f"Vault path {ref.vault_path}"
        else:
            assert ref.secret_ref is not None
            secret = get_secret(ref.secret_ref.name)
            if secret is None:
                raise CredentialsError("SecretNotFound", f"Secret {ref.secret_ref.name} not found")
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            where = f"Secret {ref.secret_ref.name}"
        if "password" not in data or (prefix != "REDIS" and "username" not in data):
            raise CredentialsError("CredentialsIncomplete", f"{where} needs username and password")
        if prefix != "REDIS":
            out[f"{prefix}_USERNAME"] = data["username"]
        out[f"{prefix}_PASSWORD"] = data["password"]
    return out
