"""Reconcile step 1: the pipeline's identity and credentials, and the workers' Secret.

The pipeline acts as its own ServiceAccount (`<pipeline>-cdc`, owned by the pipeline): Vault's
Kubernetes auth logs in with a token requested for it (or for the account the spec names in
the same namespace), and the worker Pods run under it. The values read are kept in memory per
pipeline, so that every pass, not only the ones that refresh, talks to Kafka, Cassandra and
Redis with them; after a restart they are rebuilt from the owned Secret. The pod template is
rolled by the Secret's resourceVersion, which changes with its content and reveals nothing
about it (a hash of the values would let anyone who reads Deployments test password guesses).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from cdc_operator import logs
from cdc_operator import metrics as M
from cdc_operator.appliers import credentials
from cdc_operator.appliers.kube import Kube
from cdc_operator.builders import manifests, names
from cdc_operator.builders.conditions import set_condition
from cdc_operator.models import CdcPipelineSpec


def parse_duration(text: str) -> float:
    total, num = 0.0, ""
    for ch in text:
        if ch.isdigit():
            num += ch
        else:
            total += int(num) * {"s": 1, "m": 60, "h": 3600}[ch]
            num = ""
    return total


def decode_secret(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


async def ensure_credentials(
    kube: Kube, spec: CdcPipelineSpec, ns: str, name: str, owner: Any, gen: int | None,
    st: Any, force: bool, conds: list[dict[str, Any]],
) -> list[dict[str, Any]]:  # fmt: skip
    """Fill `st.creds`/`st.secret_version`/`st.secret_keys`; returns the updated conditions."""
    interval = parse_duration(spec.vault.refresh_interval) if spec.vault else 300.0
    due = (
        force or st.secret_version is None or time.monotonic() - st.last_secret_refresh >= interval
    )
    if not due and st.creds is None:  # after a restart: the last good values are in the Secret
        existing = await asyncio.to_thread(kube.get, "v1", "Secret",
                                           names.secret_name(name), ns)  # fmt: skip
        st.creds = decode_secret(existing) if existing else None
        logs.learn(st.creds or {})
        due = existing is None  # the Secret is gone (deleted by hand): read the source again
    if not due:
        return conds

    # Applied with each refresh, not each pass: timer passes make no writes.
    await asyncio.to_thread(kube.apply, manifests.service_account(ns, name, owner))

    def token_for(account: str, audience: str) -> str:
        return kube.create_token(ns, account or names.service_account(name), audience)

    try:
        creds = await asyncio.to_thread(
            credentials.resolve, spec, lambda n: kube.get("v1", "Secret", n, ns), token_for
        )
        applied = await asyncio.to_thread(
            kube.apply, manifests.credentials_secret(ns, name, owner, creds)
        )
        logs.learn(creds)
        st.creds, st.secret_keys = creds, sorted(creds)
        st.secret_version = applied["metadata"]["resourceVersion"]
        st.last_secret_refresh = time.monotonic()
        return set_condition(conds, "SecretsReady", True, "Loaded",
                             f"{len(creds)} credential values loaded", gen)  # fmt: skip
    except credentials.CredentialsError as e:
        existing = await asyncio.to_thread(kube.get, "v1", "Secret", names.secret_name(name), ns)
        if existing and st.secret_version is None:
            st.secret_version = existing["metadata"]["resourceVersion"]
            st.secret_keys = sorted((existing.get("data") or {}).keys())
        if existing and st.creds is None:
            st.creds = decode_secret(existing)
            logs.learn(st.creds)
        kept = "; keeping the last Secret" if existing else "; no Secret yet"
        M.SECRET_REFRESH_FAILURES.labels(ns, name, e.reason).inc()
        return set_condition(conds, "SecretsReady", False, e.reason, str(e) + kept, gen)
