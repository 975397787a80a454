"""One reconcile pass over a pipeline and its tables: appliers in threads, status out.

Order: credentials → topics → Cassandra CDC (when managed) → connector config →
worker config, Secret, Deployment, Service, PDB → pause → observed state. Each
step sets its condition; a failing step does not stop the ones that do not
depend on it, and the last good Secret is kept when credentials cannot be read.

Passes are run by the work queue (`workqueue.py`, set up in `handlers.py`), one per pipeline at
a time. A pass is a *status* pass (the periodic refresh: observe workers, lag, progress and
write status; no applies, no admin calls) or a *full* one (something changed, or the periodic
resync every FULL_EVERY seconds, or a credential refresh is due). Every call to Kafka, Vault or
Cassandra goes through that dependency's circuit breaker (`breakers.py`) with a timeout: while
one is down, the passes of pipelines using it fail fast with a condition naming it
(`KafkaUnavailable`, `VaultUnavailable`, `CassandraUnavailable`) and are retried with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from cdc_operator import agents_step, scan_step
from cdc_operator import metrics as M
from cdc_operator.appliers import redis_status, topics
from cdc_operator.appliers.cassandra import (
    CassandraError,
    SourceTable,
    enable_cdc_and_read_schemas,
)
from cdc_operator.appliers.kube import Kube
from cdc_operator.appliers.tls import redis_url
from cdc_operator.breakers import BREAKERS, Deferred, Dep, Unavailable
from cdc_operator.builders import manifests, names
from cdc_operator.builders.agent import agent_sidecar, driver_configmap
from cdc_operator.builders.conditions import set_condition, summarize
from cdc_operator.builders.debezium import node_id, properties
from cdc_operator.builders.worker_config import Table, ca_files, worker_config
from cdc_operator.credentials_step import decode_secret, ensure_credentials, parse_duration
from cdc_operator.kafka_step import kafka_settings, topic_wants
from cdc_operator.models import GROUP, VERSION, CdcPipelineSpec, TableReplicationSpec
from cdc_operator.progress import PROGRESS
from cdc_operator.security import policy
from cdc_operator.workqueue import Mode, Requeue
from cdc_worker.hops import explain

API = f"{GROUP}/{VERSION}"


FULL_EVERY = 600.0
# Timeouts (seconds) of each dependency's calls in a pass, beyond the clients' own ones.
KAFKA_TIMEOUT = 10.0
VAULT_TIMEOUT = 30.0
CASSANDRA_TIMEOUT = 60.0


@dataclass
class PipelineState:
    """What the operator remembers between passes (rebuilt from the cluster after a restart)."""

    uid: str = ""  # the CdcPipeline this is about: one deleted and re-created starts afresh
    secret_version: str | None = None  # the owned Secret's resourceVersion
    secret_keys: list[str] = field(default_factory=list)
    creds: dict[str, str] | None = None  # the last good values, for every pass
    owned_topics: list[str] | None = None
    last_secret_refresh: float = 0.0
    sources: dict[tuple[str, str], SourceTable] = field(default_factory=dict)
    fingerprint: str | None = None
    last_full: float = 0.0
    # What this operator last wrote, so that a pass neither re-writes an unchanged status nor
    # re-applies an unchanged object (the watch's copy may not show our last write yet).
    written: dict[str, Any] | None = None
    tables_written: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: dict[str, str] = field(default_factory=dict)  # kind/name -> manifest digest


STATE: dict[tuple[str, str], PipelineState] = {}
# Who else claims this pipeline's topic names: (body, spec) -> why it may not use them, or None.
Rivals = Callable[[dict[str, Any], CdcPipelineSpec], str | None]
# The pipeline's worker Deployment as last seen by the watch: (namespace, name) -> object.
Workers = Callable[[str, str], dict[str, Any] | None]


def _agent_image(spec: CdcPipelineSpec) -> str:
    """The agent image beside the worker's: <repository>-agent with the same tag."""
    repo, sep, tag = spec.worker.image.rpartition(":")
    return f"{repo}-agent{sep}{tag}" if sep and "/" not in tag else f"{spec.worker.image}-agent"


def _cql_port(spec: CdcPipelineSpec) -> int:
    """The CQL port of the contact points (the agent reaches its own node on the same port)."""
    host, sep, port = spec.cassandra.contact_points[0].rpartition(":")
    return int(port) if sep and host and port.isdigit() else 9042


async def _agents(spec: CdcPipelineSpec, tables: list[str]) -> agents_step.AgentsView:
    port = spec.debezium.agent_status_port
    if port is None:
        return agents_step.AgentsView()
    hosts = sorted({cp.rsplit(":", 1)[0] for cp in spec.cassandra.contact_points})
    found = await asyncio.gather(*(asyncio.to_thread(agents_step.fetch, h, port) for h in hosts))
    return agents_step.summarize(dict(zip(hosts, found, strict=True)), tables)


def _problem(st: PipelineState, tr: TableReplicationSpec) -> tuple[str, str] | None:
    found = st.sources.get((tr.source.keyspace, tr.source.table))
    return found.problem if found else None


def _schema(st: PipelineState, tr: TableReplicationSpec) -> dict[str, Any] | None:
    found = st.sources.get((tr.source.keyspace, tr.source.table))
    return found.schema if found else None


def _migrating(body: dict[str, Any]) -> bool:
    """A pipeline from before topic ownership was recorded: its topics are its own."""
    status = body.get("status") or {}
    return "ownedTopics" not in status and any(
        c["type"] == "TopicsReady" and c["status"] == "True" for c in status.get("conditions") or []
    )


def state_for(namespace: str, name: str, uid: str = "") -> PipelineState:
    """The state of this very object: a pipeline deleted and re-created under the same name
    (the demo does it) must not inherit the old one's Secret version, credentials or topics
    (a pass finishing after the deletion can put the old state back)."""
    st = STATE.get((namespace, name))
    if st is None or (uid and st.uid and st.uid != uid):
        st = STATE[(namespace, name)] = PipelineState(uid=uid)
    elif uid and not st.uid:
        st.uid = uid
    return st


@dataclass(frozen=True)
class TableRef:
    """A TableReplication as the operator last saw it (from the Kopf index, or a list)."""

    name: str
    spec: TableReplicationSpec
    generation: int | None
    status: dict[str, Any]
    uid: str = ""

    @classmethod
    def of(cls, body: dict[str, Any]) -> TableRef:
        return cls(body["metadata"]["name"], TableReplicationSpec.model_validate(body["spec"]),
                   body["metadata"].get("generation"), dict(body.get("status") or {}),
                   body["metadata"].get("uid", ""))  # fmt: skip


def tables_of(kube: Kube, namespace: str, pipeline: str) -> list[TableRef]:
    """Without the index (deletion, tools): list the namespace's tables of one pipeline."""
    refs = [TableRef.of(tr) for tr in kube.list(API, "TableReplication", namespace)
            if not tr["metadata"].get("deletionTimestamp")]  # fmt: skip
    return sorted((r for r in refs if r.spec.pipeline_ref.name == pipeline), key=lambda r: r.name)


@dataclass
class Views:
    """What a pass reads from the operator's watches (Kopf indexes) instead of the API server;
    None means a GET or LIST."""

    tables: Callable[[str, str], list[TableRef]] | None = None
    rivals: Rivals | None = None
    workers: Workers | None = None
    pipeline: Callable[[str, str], dict[str, Any] | None] | None = None
    # Queue the key again (with the mode) once a dependency being probed settles.
    park: Callable[[Dep, tuple[str, str], Mode], None] | None = None


def dependencies(spec: CdcPipelineSpec, creds: dict[str, str] | None) -> list[Dep]:
    """The external services a pass over this pipeline may call, as circuit-breaker keys
    (Kafka, then Vault and Cassandra when used), each with the identity the operator uses."""
    creds = creds or {}
    servers = ",".join(sorted(s.strip() for s in spec.kafka.bootstrap_servers.split(",")))
    who = "OPERATOR_KAFKA" if spec.kafka.operator_credentials is not None else "KAFKA"
    kafka_user = creds.get(f"{who}_USERNAME", "") if spec.kafka.sasl_mechanism else ""
    deps: list[Dep] = [("Kafka", servers, kafka_user)]
    if spec.vault is not None:
        deps.append(("Vault", spec.vault.address, ""))
    if spec.cassandra.manage_table_cdc:
        deps.append(("Cassandra", ",".join(sorted(spec.cassandra.contact_points)),
                     creds.get("CASSANDRA_USERNAME", "")))  # fmt: skip
    return deps


def _uses_vault(spec: CdcPipelineSpec) -> bool:
    refs = [spec.postgres.credentials, spec.kafka.credentials, spec.kafka.operator_credentials,
            spec.redis.credentials if spec.redis else None, spec.cassandra.credentials]  # fmt: skip
    return spec.vault is not None and any(r is not None and r.vault_path for r in refs)


def _credentials_due(spec: CdcPipelineSpec, st: PipelineState) -> bool:
    interval = parse_duration(spec.vault.refresh_interval) if spec.vault else 300.0
    return st.secret_version is None or time.monotonic() - st.last_secret_refresh >= interval


async def run_pass(kube: Kube, namespace: str, name: str, mode: Mode, views: Views) -> None:
    """One queued pass over a pipeline: reconcile it and write its and its tables' status.

    Returns when done; raises `Requeue` (or anything else) to be retried with backoff. A pass
    that finds a dependency being probed by another pass stops before doing anything and is
    queued again when the probe settles (`Views.park`).
    """
    if views.pipeline is not None:
        body = views.pipeline(namespace, name)
    else:
        body = await asyncio.to_thread(kube.get, API, "CdcPipeline", name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    st = state_for(namespace, name, body["metadata"].get("uid", ""))
    try:
        spec: CdcPipelineSpec | None = CdcPipelineSpec.model_validate(body["spec"])
    except ValueError:
        spec = None  # reported by the pass below as a ReconcileError
    if spec is not None and mode == Mode.STATUS and (
        time.monotonic() - st.last_full >= FULL_EVERY or st.fingerprint is None
        or (_uses_vault(spec) and _credentials_due(spec, st))
    ):  # fmt: skip
        mode = Mode.FULL  # the periodic resync, a credential refresh, or a failed full pass
    try:
        for dep in dependencies(spec, st.creds) if spec is not None else []:
            if BREAKERS.probing(dep):
                raise Deferred(dep)
        started = PROGRESS.started()
        try:
            down = await _pass(kube, body, namespace, name, st, mode, views)
        finally:
            PROGRESS.finished(namespace, name, started)
    except Deferred as d:
        if views.park is not None:
            views.park(d.dep, (namespace, name), mode)
            return
        raise Requeue(mode) from None
    if down is not None:
        # No sooner than the dependency's next probe: a retry before it only fails fast again.
        raise Requeue(Mode.FULL if mode >= Mode.FULL else Mode.STATUS,
                      at_least=BREAKERS.retry_in(down.dep))  # fmt: skip


async def _pass(
    kube: Kube, body: dict[str, Any], namespace: str, name: str, st: PipelineState, mode: Mode,
    views: Views,
) -> Unavailable | None:  # fmt: skip
    """The pass proper; returns the dependency outage it met, if any (to retry with backoff)."""
    gen = body["metadata"].get("generation")
    started = time.monotonic()
    old = st.written if st.written is not None else dict(body.get("status") or {})
    M.INFLIGHT.inc()
    try:
        refs = (
            views.tables(namespace, name)
            if views.tables is not None
            else await asyncio.to_thread(tables_of, kube, namespace, name)
        )
        refs = sorted(refs, key=lambda r: r.name)
        status, down = await _reconcile(
            kube, body, old, namespace, name, gen, st, mode, refs, views.rivals, views.workers
        )
    except Deferred:
        raise
    except Exception as e:
        M.RECONCILES.labels(namespace, name, "error").inc()
        # Never leave a stale Ready=True behind; the message names the failure, not its text
        # (which may carry a host, a user or worse). The queue retries the pass with backoff.
        why = f"the last pass failed ({type(e).__name__}); retrying"
        conds = set_condition(list(old.get("conditions") or []), "Ready", False,
                              "ReconcileError", why, gen)  # fmt: skip
        if conds != old.get("conditions"):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(kube.patch_status, API, "CdcPipeline", name, namespace,
                                        {"conditions": conds})  # fmt: skip
                st.written = {**old, "conditions": conds}
        raise
    finally:
        M.INFLIGHT.dec()
    if {k: old.get(k) for k in status} != status:
        await asyncio.to_thread(kube.patch_status, API, "CdcPipeline", name, namespace, status)
        st.written = {**old, **status}
    M.RECONCILES.labels(namespace, name, "ok" if down is None else "unavailable").inc()
    M.RECONCILE_SECONDS.labels(namespace).observe(time.monotonic() - started)
    for c in status["conditions"]:
        M.CONDITION.labels(namespace, name, c["type"]).set(1 if c["status"] == "True" else 0)
    if status["lag"]["events"] is not None:
        M.PIPELINE_LAG.labels(namespace, name).set(status["lag"]["events"])
    return down


async def _apply(kube: Kube, st: PipelineState, obj: dict[str, Any]) -> dict[str, Any] | None:
    """Server-side apply, skipped when this operator already applied the same manifest (the
    resync every FULL_EVERY seconds clears the memory, so drift is still corrected)."""
    key = f"{obj['kind']}/{obj['metadata']['name']}"
    digest = manifests.digest(obj)
    if st.applied.get(key) == digest:
        return None
    out = await asyncio.to_thread(kube.apply, obj)
    st.applied[key] = digest
    return out


def _kafka_outage(e: BaseException) -> str | None:
    return str(e) if isinstance(e, topics.KafkaUnreachable) else None


def _cassandra_outage(e: BaseException) -> str | None:
    return str(e) if isinstance(e, CassandraError) else None


async def _credentials(
    kube: Kube, spec: CdcPipelineSpec, ns: str, name: str, owner: Any, gen: int | None,
    st: PipelineState, mode: Mode, conds: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], Unavailable | None]:  # fmt: skip
    """Step 1 under Vault's circuit breaker (when the pipeline reads Vault and a read is due)."""
    force = mode == Mode.REFRESH
    due = mode >= Mode.FULL and (force or _credentials_due(spec, st))
    if not (due and _uses_vault(spec)):
        return await ensure_credentials(kube, spec, ns, name, owner, gen, st, force,
                                        conds), None  # fmt: skip
    assert spec.vault is not None
    dep: Dep = ("Vault", spec.vault.address, "")
    try:
        probe = BREAKERS.admit(dep)
    except Unavailable as e:
        if st.creds is None:  # after a restart: the last good values are in the owned Secret
            existing = await asyncio.to_thread(kube.get, "v1", "Secret",
                                               names.secret_name(name), ns)  # fmt: skip
            if existing:
                st.creds = decode_secret(existing)
                st.secret_version = existing["metadata"]["resourceVersion"]
                st.secret_keys = sorted((existing.get("data") or {}).keys())
        kept = "; keeping the last Secret" if st.secret_version else "; no Secret yet"
        # The same reason as a failed read (credentials.py), whether it was tried or not.
        why = str(e) + kept
        return set_condition(conds, "SecretsReady", False, "VaultUnreachable", why, gen), e
    try:
        conds = await asyncio.wait_for(
            ensure_credentials(kube, spec, ns, name, owner, gen, st, force, conds), VAULT_TIMEOUT
        )
    except TimeoutError:
        BREAKERS.failed(dep, f"no answer within {VAULT_TIMEOUT:g} s", probe)
        late = Unavailable(dep, f"no answer within {VAULT_TIMEOUT:g} s")
        return set_condition(conds, "SecretsReady", False, "VaultUnreachable", str(late),
                             gen), late  # fmt: skip
    except BaseException:
        if probe:
            BREAKERS.release(dep)
        raise
    cur = next((c for c in conds if c["type"] == "SecretsReady"), None)
    if cur is not None and cur["reason"] == "VaultUnreachable":
        BREAKERS.failed(dep, cur["message"], probe)
        return conds, Unavailable(dep, cur["message"])
    BREAKERS.succeeded(dep, probe)
    return conds, None


async def _reconcile(
    kube: Kube, body: dict[str, Any], old: dict[str, Any], ns: str, name: str, gen: int | None,
    st: PipelineState, mode: Mode, refs: list[TableRef], rivals: Rivals | None,
    workers: Workers | None,
) -> tuple[dict[str, Any], Unavailable | None]:  # fmt: skip
    spec = CdcPipelineSpec.model_validate(body["spec"])
    conds: list[dict[str, Any]] = list(old.get("conditions") or [])
    owner = manifests.owner_reference(body)
    trs = [(r.name, r.spec) for r in refs]

    # 1. Identity and credentials → the workers' Secret (the last good one is kept on failure).
    conds, down = await _credentials(kube, spec, ns, name, owner, gen, st, mode, conds)
    if st.creds is None and _uses_vault(spec):
        # Without its credentials nothing the pipeline uses can be reached (Kafka refuses a
        # client without its login): say why — SecretsReady's reason, not an error further
        # on — and retry with backoff.
        conds = summarize(conds, ["SecretsReady"], gen)
        assert spec.vault is not None
        why = next((c["message"] for c in conds if c["type"] == "SecretsReady"), "no credentials")
        early: dict[str, Any] = {"observedGeneration": gen, "conditions": conds,
                                 "tables": len(trs), "lag": {"events": None}}  # fmt: skip
        return early, down or Unavailable(("Vault", spec.vault.address, ""), why)
    creds = st.creds or {}
    redis_password = creds.get("REDIS_PASSWORD")
    kafka_dep = dependencies(spec, creds)[0]
    # Steps 2-5 run in full passes when the spec, the tables or the credentials changed (or
    # every FULL_EVERY seconds); status passes only observe, which keeps hundreds of
    # pipelines cheap (no admin calls to Kafka or Cassandra, no applies).
    fingerprint = manifests.digest(
        [body["spec"], [(n, tr.model_dump()) for n, tr in trs], st.secret_version]
    )
    resync = time.monotonic() - st.last_full >= FULL_EVERY
    full = mode >= Mode.FULL and (mode == Mode.REFRESH or fingerprint != st.fingerprint or resync)
    if full and resync:
        st.applied.clear()

    # 2. Kafka topics: only those the pipeline owns are altered; shared names are conflicts.
    kafka = kafka_settings(spec, creds)
    wants = topic_wants(spec, [tr for _, tr in trs])
    rival = rivals(body, spec) if rivals else None
    if rival:
        conds = set_condition(conds, "Conflict", True, "TopicsInUse", rival, gen)
        conds = set_condition(conds, "TopicsReady", False, "Conflict", rival, gen)
        full_ok = False
    else:
        conds = [c for c in conds if c["type"] != "Conflict"]
        full_ok = True
        if full:
            try:
                owned = set(
                    st.owned_topics if st.owned_topics is not None else old.get("ownedTopics") or []
                )
                adopt = spec.kafka.adopt_existing_topics or _migrating({**body, "status": old})

                def claim(names_: set[str]) -> None:
                    kube.patch_status(API, "CdcPipeline", name, ns,
                                      {"ownedTopics": sorted(names_)})  # fmt: skip

                res = await BREAKERS.call(
                    kafka_dep,
                    lambda: asyncio.to_thread(topics.ensure_topics, kafka, wants, owned, adopt,
                                              timeout=KAFKA_TIMEOUT, claim=claim),
                    KAFKA_TIMEOUT * 3, _kafka_outage,
                )  # fmt: skip
                st.owned_topics = sorted(res.owned)
                if res.foreign:
                    why = (
                        f"{', '.join(sorted(res.foreign))} existed before this pipeline and "
                        "are left unchanged (set kafka.adoptExistingTopics to manage them)"
                    )
                    conds = set_condition(conds, "TopicsReady", False, "TopicNotOwned", why, gen)
                    full_ok = False
                else:
                    msg = f"{len(wants)} topics" + (
                        f" ({', '.join(res.actions)})" if res.actions else ""
                    )
                    conds = set_condition(conds, "TopicsReady", True, "TopicsReconciled", msg,
                                          gen)  # fmt: skip
            except Unavailable as e:
                conds = set_condition(conds, "TopicsReady", False, e.reason, str(e), gen)
                full_ok, down = False, e
            except topics.TopicsError as e:
                conds = set_condition(conds, "TopicsReady", False, "KafkaError", str(e), gen)
                full_ok = False

    # 3. Cassandra: cdc = true and typed schemas, when the pipeline manages it.
    required = ["SecretsReady", "TopicsReady", "ConnectorConfigured", "WorkersAvailable"]
    if spec.cassandra.manage_table_cdc and trs:
        required.append("CassandraReady")
    if full and spec.cassandra.manage_table_cdc and trs:
        keys = [(tr.source.keyspace, tr.source.table) for _, tr in trs]
        cassandra_dep = dependencies(spec, creds)[-1]
        try:
            st.sources.update(await BREAKERS.call(
                cassandra_dep,
                lambda: asyncio.to_thread(
                    enable_cdc_and_read_schemas, spec.cassandra, keys,
                    creds.get("CASSANDRA_USERNAME"), creds.get("CASSANDRA_PASSWORD"),
                ),
                CASSANDRA_TIMEOUT, _cassandra_outage,
            ))  # fmt: skip
            bad = [k for k in keys if st.sources[k].problem]
            msg = f"cdc = true on {len(keys) - len(bad)} tables" + (
                f"; {len(bad)} cannot be served (see their status)" if bad else ""
            )
            conds = set_condition(conds, "CassandraReady", True, "CdcEnabled", msg, gen)
        except Unavailable as e:
            conds = set_condition(conds, "CassandraReady", False, e.reason, str(e), gen)
            full_ok, down = False, down or e
        except CassandraError as e:
            conds = set_condition(conds, "CassandraReady", False, "CassandraError", str(e), gen)
            full_ok = False

    # A table that cannot be served (missing, refused) affects only itself: it is left out of
    # the connector and worker configs, and its own status says why.
    trs = [(n, tr) for n, tr in trs if not _problem(st, tr)]

    # 4. Connector configuration, one properties file per Cassandra node.
    if full:
        try:
            files = {f"{node_id(cp)}.properties": properties(name, spec, [t for _, t in trs], cp)
                     for cp in spec.cassandra.contact_points}  # fmt: skip
            # A ready-to-use sidecar for the Cassandra Pods (docs/agent.md), beside the configs.
            tls = spec.cassandra.tls
            sidecar = agent_sidecar(
                name, spec.debezium.agent_image or _agent_image(spec),
                port=spec.debezium.agent_status_port or 8090, cql_port=_cql_port(spec),
                kafka_login=spec.kafka.security_protocol.startswith("SASL"),
                cassandra_login=spec.cassandra.credentials is not None,
                cassandra_tls=tls is not None,
            )  # fmt: skip
            files["sidecar.yaml"] = yaml.safe_dump(sidecar.pod_template_patch(), sort_keys=False)
            cm = manifests.connector_configmap(ns, name, owner, files)
            await _apply(kube, st, cm)
            driver = driver_configmap(ns, name, spec.cassandra.local_datacenter, _cql_port(spec),
                                      tls.ca_bundle if tls else None,
                                      cm["metadata"].get("ownerReferences"))  # fmt: skip
            await _apply(kube, st, driver)
            conds = set_condition(conds, "ConnectorConfigured", True, "Rendered",
                                  f"{len(files)} node configs, {len(trs)} tables", gen)  # fmt: skip
        except ValueError as e:
            msg = str(e)
            conds = set_condition(conds, "ConnectorConfigured", False, "InvalidConfig", msg, gen)
            full_ok = False

    # 5. Workers (only from an image the cluster admin allows: the Pods get the credentials).
    applied: dict[str, Any] | None = None
    image_refused = not policy().image_allowed(spec.worker.image)
    redis_pause = spec.redis is not None
    replicas = 0 if spec.paused and not redis_pause else spec.worker.replicas
    if full:
        tables = [Table(n, tr, _schema(st, tr)) for n, tr in trs]
        config = worker_config(ns, name, spec, tables)
        ca = ca_files(spec)  # CA bundles as files beside worker.yaml (certificates only)
        cm = manifests.worker_configmap(ns, name, owner, config, ca)
        await _apply(kube, st, cm)
        await _apply(kube, st, manifests.metrics_service(ns, name, owner))
        await _apply(kube, st, manifests.pod_disruption_budget(ns, name, owner))
        if st.secret_version is not None and not rival and not image_refused:
            dep = manifests.worker_deployment(
                ns, name, owner, spec, manifests.config_hash(config, ca), st.secret_version,
                st.secret_keys, replicas,
            )  # fmt: skip
            applied = await _apply(kube, st, dep)
        # A failed step is retried on the next pass rather than after FULL_EVERY.
        st.fingerprint = fingerprint if full_ok else None
        st.last_full = time.monotonic()

    # 6. Pause.
    if spec.redis is not None:
        try:
            await asyncio.to_thread(redis_status.set_paused, redis_url(spec.redis), redis_password,
                                    f"{ns}.{name}", spec.paused)  # fmt: skip
            how = "PauseFlagSet" if spec.paused else "Running"
        except Exception as e:
            how = f"RedisUnavailable: {type(e).__name__}"
    else:
        how = "ScaledToZero" if spec.paused else "Running"
    why = f"workers stop consuming ({how})" if spec.paused else "not paused"
    conds = set_condition(conds, "Paused", spec.paused, how.split(":")[0], why, gen)

    # 7. Observed state (the workers from the watched index, or a GET without one).
    current = (
        workers(ns, name) if workers is not None
        else await asyncio.to_thread(kube.get, "apps/v1", "Deployment",
                                     names.worker_name(name), ns)
    ) or applied  # fmt: skip
    ready = int(((current or {}).get("status") or {}).get("readyReplicas") or 0)
    desired = replicas if current else 0
    if image_refused:
        conds = set_condition(conds, "WorkersAvailable", False, "ImageNotAllowed",
                              f"image {spec.worker.image} is not in the operator's "
                              "security.allowedWorkerImages; the Deployment is left as it was",
                              gen)  # fmt: skip
    elif st.secret_version is None:
        conds = set_condition(conds, "WorkersAvailable", False, "WaitingForSecrets",
                              "the workers' Secret does not exist yet", gen)  # fmt: skip
    elif ready >= desired:
        conds = set_condition(conds, "WorkersAvailable", True, "Available",
                              f"{ready}/{desired} workers ready", gen)  # fmt: skip
    else:
        conds = set_condition(conds, "WorkersAvailable", False, "WorkersNotReady",
                              f"{ready}/{desired} workers ready", gen)  # fmt: skip
    topic_names = [w.name for w in wants[:-1]]
    lag: dict[str, int] = {}
    if not rival:
        try:
            lag = await BREAKERS.call(
                kafka_dep,
                lambda: asyncio.to_thread(topics.consumer_lag, kafka, names.group_id(ns, name),
                                          topic_names, KAFKA_TIMEOUT / 2, strict=True),
                KAFKA_TIMEOUT, _kafka_outage,
            )  # fmt: skip
        except Unavailable as e:
            # Kafka went away since the topics were made: say so, and retry with backoff.
            conds = set_condition(conds, "TopicsReady", False, e.reason, str(e), gen)
            down = down or e
    progress: dict[str, Any] = {}
    if spec.redis is not None:
        try:
            progress = await asyncio.to_thread(
                redis_status.read_progress, redis_url(spec.redis), redis_password, f"{ns}.{name}",
                [f"{tr.source.keyspace}.{tr.source.table}" for _, tr in trs],
            )  # fmt: skip
        except Exception:
            progress = {}
    conds = _workers_report(conds, progress.get("notReady") or {}, gen)
    agents = await _agents(spec, [f"{tr.source.keyspace}.{tr.source.table}" for _, tr in trs])
    for type_, ok, reason, message in agents_step.conditions(agents):
        conds = set_condition(conds, type_, ok, reason, message, gen)
    conds = summarize(conds, required, gen)
    if spec.paused:
        conds = set_condition(conds, "Ready", False, "Paused", "the pipeline is paused", gen)
    per_table = progress.get("tables", {})
    last = max((v.get("lastEventTs", 0) for v in per_table.values()), default=0)
    status: dict[str, Any] = {
        "observedGeneration": gen,
        "conditions": conds,
        "tables": len(trs),
        "workers": {"ready": ready, "desired": desired},
        "workerSummary": f"{ready}/{desired}",
        "lag": {"events": sum(lag.values()) if lag else None},
    }
    if st.owned_topics is not None:
        status["ownedTopics"] = st.owned_topics
    if agents.total:
        status["agents"] = f"{agents.ready}/{agents.total}"
    if last:
        status["lastEventTime"] = _iso(last / 1e6)
    scans = await _scans(kube, ns, name, spec, refs, conds, st, redis_password, gen, per_table)
    await _table_statuses(kube, ns, spec, refs, conds, lag, per_table, st, scans)
    return status, down


async def _scans(
    kube: Kube, ns: str, name: str, spec: CdcPipelineSpec, refs: list[TableRef],
    conds: list[dict[str, Any]], st: PipelineState, redis_password: str | None, gen: int | None,
    per_table: dict[str, Any] | None = None,
) -> dict[str, scan_step.ScanView]:  # fmt: skip
    """Verify/backfill Jobs of the tables that ask for them (scan_step), and their status."""
    wanted = [r for r in refs if r.spec.verify is not None
              or (r.spec.backfill is not None and r.spec.backfill.enabled)]  # fmt: skip
    wanted = [r for r in wanted if not _problem(st, r.spec)]
    if not wanted:
        return {}
    jobs = [j for j in await asyncio.to_thread(kube.list, "batch/v1", "Job", ns)
            if (j["metadata"].get("labels") or {}).get(names.LABEL_PIPELINE) == name]  # fmt: skip
    counts: dict[str, dict[str, float]] = {}
    if spec.redis is not None:
        with contextlib.suppress(Exception):
            tables = [f"{r.spec.source.keyspace}.{r.spec.source.table}" for r in wanted]
            # The workers' (and scan Pods') Redis keys are under the pipeline's `ns.name`.
            counts = await asyncio.to_thread(scan_step.read_counts, redis_url(spec.redis),
                                             redis_password, f"{ns}.{name}", tables)  # fmt: skip
    streaming = any(c["type"] == "WorkersAvailable" and c["status"] == "True" for c in conds)
    out: dict[str, scan_step.ScanView] = {}
    for r in wanted:
        tr = {"name": r.name, "uid": r.uid, "conditions": r.status.get("conditions"),
              "status": r.status}  # fmt: skip
        source = f"{r.spec.source.keyspace}.{r.spec.source.table}"
        gap = ((per_table or {}).get(source) or {}).get("dataGap")
        view = scan_step.plan(ns, name, spec, tr, r.spec, jobs, counts, streaming,
                              st.secret_keys, r.generation, gap=gap)  # fmt: skip
        for job in view.create:
            await asyncio.to_thread(kube.apply, job)
        out[r.name] = view
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _table_statuses(
    kube: Kube, ns: str, spec: CdcPipelineSpec, refs: list[TableRef],
    pipeline_conds: list[dict[str, Any]], lag: dict[str, int], per_table: dict[str, Any],
    st: PipelineState, scans: dict[str, scan_step.ScanView] | None = None,
) -> None:  # fmt: skip
    """Write each table's status, only where it changed (hundreds of tables stay cheap)."""
    sources = st.sources
    ready = next((c for c in pipeline_conds if c["type"] == "Ready"), None)
    ok = ready is not None and ready["status"] == "True"
    reason = "Replicating" if ok else (ready or {}).get("reason", "Pending")
    msg = "pipeline ready" if ok else f"pipeline not ready: {(ready or {}).get('message', '')}"
    for ref in refs:
        tr, gen = ref.spec, ref.generation
        source = sources.get((tr.source.keyspace, tr.source.table))
        # What we wrote last, unless the watch shows a newer object (recreated, or re-specced).
        mine = st.tables_written.get(ref.name)
        seen = mine if mine is not None and mine.get("_uid") == ref.uid else ref.status
        conds = list(seen.get("conditions") or [])
        reported = per_table.get(f"{tr.source.keyspace}.{tr.source.table}", {})
        gap, quarantined = reported.get("dataGap"), reported.get("quarantined")
        view = (scans or {}).get(ref.name)
        if source is not None and source.problem is not None:
            conds = set_condition(conds, "Ready", False, *source.problem, gen)
        elif quarantined:
            why = f"the workers cannot serve this table: {quarantined}"
            conds = set_condition(conds, "Ready", False, "Quarantined", why, gen)
        elif gap:
            why = scan_step.gap_message(gap, tr, view, spec.postgres.schema_,
                                        names.topic(spec, tr))  # fmt: skip
            conds = set_condition(conds, "Ready", False, "DataGap", why, gen)
        else:
            conds = set_condition(conds, "Ready", ok, reason, msg, gen)
        if source is not None and source.schema is not None:
            reread = ref.spec.reread is not None and ref.spec.reread.enabled
            conds = _exact(conds, source, gen, reread)
        insync = [c for c in (view.conditions or []) if c["type"] == "InSync"] if view else []
        for c in insync:
            if c["status"] in ("True", "False"):
                M.TABLE_IN_SYNC.labels(ns, ref.name).set(1 if c["status"] == "True" else 0)
        conds = [c for c in conds if c["type"] != "InSync"] + insync
        topic = names.topic(spec, tr)
        src = f"{tr.source.keyspace}.{tr.source.table}"
        stats = per_table.get(src, {})
        status: dict[str, Any] = {
            "observedGeneration": gen, "conditions": conds, "topic": topic, "source": src,
            "target": f"{tr.target.schema_ or spec.postgres.schema_}."
                      f"{tr.target.table or tr.source.table}",
            "lag": {"events": lag.get(topic)},
        }  # fmt: skip
        if stats.get("lastEventTs"):
            status["lastEventTime"] = _iso(stats["lastEventTs"] / 1e6)
            status["lag"]["seconds"] = stats.get("lagSeconds")
        if stats.get("applied") is not None:
            status["eventsApplied"] = int(stats["applied"])
        if view is not None:
            status |= view.status
        if {k: seen.get(k) for k in status} != status:
            await asyncio.to_thread(kube.patch_status, API, "TableReplication", ref.name, ns,
                                    status)  # fmt: skip
            st.tables_written[ref.name] = {**seen, **status, "_uid": ref.uid}


def _workers_report(conds: list[dict[str, Any]], codes: dict[str, int], gen: int | None) -> Any:
    """Workers that are not ready say why as a code naming the hop (worker hops.py): it becomes
    the reason of `WorkersAvailable=False`, so the failing hop shows in `kubectl get`."""
    cur = next((c for c in conds if c["type"] == "WorkersAvailable"), None)
    if cur is None or cur["status"] != "False" or cur["reason"] != "WorkersNotReady" or not codes:
        return conds
    code = max(sorted(codes), key=lambda k: codes[k])
    why = "; ".join(f"{explain(k)} ({n} worker{'s' * (n > 1)})" for k, n in sorted(codes.items()))
    return set_condition(conds, "WorkersAvailable", False, code,
                         f"{cur['message']}: {why}", gen)  # fmt: skip


def _exact(
    conds: list[dict[str, Any]], source: SourceTable, gen: int | None, reread: bool = False
) -> Any:
    """`Exact`: whether every column can be replicated exactly through the connector; with
    `reread`, regular non-frozen collections are, since they come from Cassandra."""
    inexact = dict(source.inexact)
    reread_cols: list[str] = []
    if reread and "NonFrozenCollection" in inexact:
        static = set(inexact.get("StaticColumn", []))
        reread_cols = [c for c in inexact["NonFrozenCollection"] if c not in static]
        left = [c for c in inexact.pop("NonFrozenCollection") if c in static]
        if left:
            inexact["NonFrozenCollection"] = left
    if not inexact and reread_cols:
        return set_condition(conds, "Exact", True, "Reread",
                             f"non-frozen collections ({', '.join(reread_cols)}) are re-read "
                             "from Cassandra for every event; an element expiring by TTL leaves "
                             "PostgreSQL at the row's next event or verify", gen)  # fmt: skip
    if not inexact:
        return set_condition(conds, "Exact", True, "AllColumnsExact",
                             "every column is replicated exactly", gen)  # fmt: skip
    detail = "; ".join(f"{why}: {', '.join(cols)}" for why, cols in sorted(inexact.items()))
    return set_condition(conds, "Exact", False, sorted(inexact)[0],
                         f"the connector cannot replicate these exactly ({detail}); "
                         "see docs/debezium-wire-format.md", gen)  # fmt: skip


async def delete_pipeline(body: dict[str, Any]) -> None:
    """Finalizer work: with `kafka.deletionPolicy: Delete`, the topics the pipeline owns go.

    Owned means recorded in `status.ownedTopics` (created or adopted by this pipeline), so the
    tables' topics go even when the TableReplications were deleted first, and a topic the
    pipeline merely named is never deleted. Kafka is reached with the pipeline's credentials.
    """
    spec = CdcPipelineSpec.model_validate(body["spec"])
    ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
    st = STATE.pop((ns, name), None)
    if spec.kafka.deletion_policy != "Delete":
        return
    owned = (body.get("status") or {}).get("ownedTopics") or (st.owned_topics if st else None)
    if not owned:
        return
    creds = st.creds if st and st.creds else None
    if creds is None:
        kube = Kube()
        secret = await asyncio.to_thread(kube.get, "v1", "Secret", names.secret_name(name), ns)
        creds = decode_secret(secret) if secret else {}
    await asyncio.to_thread(topics.delete_topics, kafka_settings(spec, creds), list(owned))
