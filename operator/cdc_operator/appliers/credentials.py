"""Credentials from Vault (KV v2) or from referenced Secrets, for the workers' Secret.

Errors say which reference failed and why, never a value. Vault is reached with the
pipeline's own identity, never the operator's: a token kept in a Secret of the pipeline's
namespace, or Vault's Kubernetes auth with a short-lived token the TokenRequest API issues for
the pipeline's ServiceAccount, bound to Vault's audience (the Vault Secrets Operator's model).
A Vault token obtained by such a login is revoked as soon as the values are read. Plain
`http://` addresses are refused unless the cluster admin allowed them (`security.py`).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from typing import Any

import hvac
import requests

from cdc_operator.appliers.tls import ca_file
from cdc_operator.models import CdcPipelineSpec, CredentialRef, VaultSpec
from cdc_operator.security import Policy, policy

# (ServiceAccount name, audience) -> a short-lived JWT for it (the TokenRequest API).
TokenFor = Callable[[str, str], str]


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


def _verify(vault: VaultSpec) -> bool | str:
    return True if vault.ca_bundle is None else ca_file(vault.ca_bundle)


def _vault_client(
    spec: CdcPipelineSpec, get_secret: GetSecret, token_for: TokenFor | None, rules: Policy
) -> tuple[hvac.Client, bool]:
    """A client, and whether its token came from a login (and must be revoked)."""
    vault = spec.vault
    if vault is None:
        raise CredentialsError("VaultNotConfigured", "a vaultPath is used but spec.vault is unset")
    if vault.address.startswith("http://") and not rules.allow_insecure_vault:
        raise CredentialsError(
            "VaultInsecure",
            "spec.vault.address uses http://, which this operator refuses (the cluster admin "
            "can allow it with the chart value security.allowInsecureVault)",
        )
    verify = _verify(vault)
    try:
        if vault.auth.token_secret_ref is not None:
            ref = vault.auth.token_secret_ref
            token = _secret_value(get_secret, ref.name, ref.key)
            return hvac.Client(url=vault.address, token=token, timeout=5, verify=verify), False
        k8s = vault.auth.kubernetes
        assert k8s is not None
        if token_for is None:
            raise CredentialsError("VaultLoginFailed", "no way to request a ServiceAccount token")
        jwt = token_for(k8s.service_account_name or "", k8s.audience)
        client = hvac.Client(url=vault.address, timeout=5, verify=verify)
        client.auth.kubernetes.login(role=k8s.role, jwt=jwt, mount_point=k8s.mount_path)
        return client, True
    except hvac.exceptions.Forbidden:
        raise CredentialsError(
            "VaultForbidden", f"Vault denied the login to role {_role(vault)}"
        ) from None
    except (requests.RequestException, hvac.exceptions.VaultError, OSError) as e:
        raise CredentialsError(
            "VaultUnreachable", f"Vault login failed: {type(e).__name__}"
        ) from None


def _role(vault: VaultSpec) -> str:
    return vault.auth.kubernetes.role if vault.auth.kubernetes else "(token)"


def revoke(client: hvac.Client) -> None:
    # A failed revoke is harmless: the token expires with its TTL.
    with contextlib.suppress(requests.RequestException, hvac.exceptions.VaultError):
        client.auth.token.revoke_self()


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


def resolve(
    spec: CdcPipelineSpec,
    get_secret: GetSecret,
    token_for: TokenFor | None = None,
    rules: Policy | None = None,
) -> dict[str, str]:
    """Env-style keys for the workers' Secret (POSTGRES_USERNAME, POSTGRES_PASSWORD, …).

    `kafka.operatorCredentials` come back as OPERATOR_KAFKA_USERNAME/PASSWORD: the operator's
    own identity, kept in its memory only (`manifests.worker_secret_values` leaves them out).
    """
    refs: list[tuple[str, CredentialRef | None]] = [
        ("POSTGRES", spec.postgres.credentials),
        ("KAFKA", spec.kafka.credentials),
        ("OPERATOR_KAFKA", spec.kafka.operator_credentials),
        ("REDIS", spec.redis.credentials if spec.redis else None),
        ("CASSANDRA", spec.cassandra.credentials),
    ]
    client: hvac.Client | None = None
    logged_in = False
    out: dict[str, str] = {}
    try:
        for prefix, ref in refs:
            if ref is None:
                continue
            if ref.vault_path is not None:
                if client is None:
                    client, logged_in = _vault_client(spec, get_secret, token_for,
                                                      rules or policy())  # fmt: skip
                assert spec.vault is not None
                data = _from_vault(client, spec.vault.kv_mount, ref.vault_path)
                where = f"Vault path {ref.vault_path}"
            else:
                assert ref.secret_ref is not None
                secret = get_secret(ref.secret_ref.name)
                if secret is None:
                    raise CredentialsError(
                        "SecretNotFound", f"Secret {ref.secret_ref.name} not found"
                    )
                data = {k: base64.b64decode(v).decode()
                        for k, v in (secret.get("data") or {}).items()}  # fmt: skip
                where = f"Secret {ref.secret_ref.name}"
            if "password" not in data or (prefix != "REDIS" and "username" not in data):
                raise CredentialsError(
                    "CredentialsIncomplete", f"{where} needs username and password"
                )
            if prefix != "REDIS":
                out[f"{prefix}_USERNAME"] = data["username"]
            out[f"{prefix}_PASSWORD"] = data["password"]
    finally:
        if client is not None and logged_in:
            revoke(client)
    return out
