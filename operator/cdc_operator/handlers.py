"""Kopf handlers: thin. Each one calls `reconcile` and writes status; none returns a value.

Progress and diff-base are kept in annotations under the project's own prefix,
and the finalizer is `casscdc.io/finalizer`; it only does work when
`kafka.deletionPolicy` is `Delete`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from cdc_operator import kafka_step
from cdc_operator.appliers import cassandra
from cdc_operator.appliers.kube import Kube
from cdc_operator.builders.names import LABEL_PIPELINE
from cdc_operator.models import GROUP, VERSION, CdcPipelineSpec
from cdc_operator.progress import PROGRESS
from cdc_operator.reconcile import MAX_PASSES, Rivals, TableRef, delete_pipeline, reconcile

PIPELINES = (GROUP, VERSION, "cdcpipelines")
TABLES = (GROUP, VERSION, "tablereplications")
STATUS_INTERVAL = float(os.environ.get("CDC_OPERATOR_STATUS_INTERVAL", "15"))
THREADS = int(os.environ.get("CDC_OPERATOR_THREADS", str(MAX_PASSES + 4)))

_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    # No limit on Kopf's per-object workers, on purpose. Kopf holds every handler until its
    # indexes (`table_refs`) have seen every object, and an object is indexed by its own
    # worker: with N workers allowed, N objects waiting for the index kept the (N+1)-th from
    # ever entering it, and the operator reconciled nothing once a cluster held more than N
    # pipelines and tables. A waiting worker is a coroutine (a few KiB), so any number is
    # cheap; the costly part, a reconcile pass, is bounded inside the handlers instead
    # (`reconcile.pass_slot`, CDC_OPERATOR_MAX_PASSES), where it cannot starve the index.
    settings.queueing.worker_limit = None
    # Blocking client calls run on a bounded pool of our own, not asyncio's default one.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="cdc-pass")
    )


@kopf.on.cleanup()
async def close_clients(**_: Any) -> None:
    """Shared Cassandra sessions are shut down before the interpreter exits, never during it
    (the driver's event loop thread running into finalization can crash the process)."""
    await asyncio.get_running_loop().run_in_executor(None, cassandra.SESSIONS.close)


@kopf.index(*TABLES)
def table_refs(body: kopf.Body, meta: kopf.Meta, spec: kopf.Spec, **_: Any) -> Any:
    """TableReplications by (namespace, pipeline): no pass lists every table in a namespace."""
    pipeline = spec["pipelineRef"]["name"]
    PROGRESS.observe("TableReplication", meta["namespace"], meta["name"], pipeline,
                     (meta.get("generation"), bool(meta.get("deletionTimestamp"))))  # fmt: skip
    if meta.get("deletionTimestamp"):
        return None
    return {(meta["namespace"], pipeline): TableRef.of(dict(body))}


@kopf.index(*PIPELINES)
def topic_claims(meta: kopf.Meta, spec: kopf.Spec, **_: Any) -> Any:
    """Pipelines by the Kafka names they claim (topic prefix, dead-letter topic)."""
    PROGRESS.observe("CdcPipeline", meta["namespace"], meta["name"], meta["name"],
                     (meta.get("generation"), bool(meta.get("deletionTimestamp"))))  # fmt: skip
    if meta.get("deletionTimestamp"):
        return None
    try:
        parsed = CdcPipelineSpec.model_validate(dict(spec))
    except ValueError:
        return None
    mine = (meta.get("creationTimestamp") or "", meta["namespace"], meta["name"])
    return dict.fromkeys(kafka_step.claims(parsed), mine)


def _rivals(kwargs: dict[str, Any]) -> Rivals:
    index: kopf.Index[Any, Any] = kwargs["topic_claims"]

    def rival(body: dict[str, Any], spec: CdcPipelineSpec) -> str | None:
        meta = body["metadata"]
        mine = (meta.get("creationTimestamp") or "", meta["namespace"], meta["name"])
        holders = {c: list(index.get(c, [])) for c in kafka_step.claims(spec)}
        return kafka_step.rival(mine, spec, holders)

    return rival


@kopf.index("apps", "v1", "deployments", labels={LABEL_PIPELINE: kopf.PRESENT})
def worker_deployments(body: kopf.Body, meta: kopf.Meta, **_: Any) -> Any:
    """The pipelines' worker Deployments as the watch last saw them (no GET per pass)."""
    if meta.get("labels", {}).get("app.kubernetes.io/component") != "worker":
        return None
    return {
        (meta["namespace"], meta["labels"][LABEL_PIPELINE]): {
            "status": dict(body.get("status") or {})
        }
    }


_seen_ready: dict[tuple[str, str], int] = {}


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_PIPELINE: kopf.PRESENT})
async def worker_availability(meta: kopf.Meta, status: kopf.Status, **kwargs: Any) -> None:
    """Workers became ready (or stopped being): report it now, not at the next timer pass."""
    if meta.get("labels", {}).get("app.kubernetes.io/component") != "worker":
        return
    key = (meta["namespace"], meta["labels"][LABEL_PIPELINE])
    ready = int(status.get("readyReplicas") or 0)
    if _seen_ready.get(key) == ready:
        return
    _seen_ready[key] = ready
    await reconcile(kube(), key[0], key[1], _refs(kwargs, *key), **_views(kwargs))


def _views(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a pass reads from the operator's watches instead of the API server."""
    index: kopf.Index[Any, Any] = kwargs["worker_deployments"]

    def workers(namespace: str, name: str) -> dict[str, Any] | None:
        found = list(index.get((namespace, name), []))
        return found[-1] if found else None

    return {"rivals": _rivals(kwargs), "workers": workers}


@kopf.on.probe(id="progress")
def progress(**_: Any) -> dict[str, int]:
    """Fails the liveness endpoint (HTTP 500) when pending work sees no pass finish."""
    why = PROGRESS.stalled()
    if why:
        raise kopf.PermanentError(f"no reconcile progress: {why}")
    return {"pendingPipelines": PROGRESS.pending()}


def _refs(kwargs: dict[str, Any], namespace: str, pipeline: str) -> Callable[[], list[TableRef]]:
    """The pipeline's tables, read from the live `table_refs` index when the pass starts."""
    index: kopf.Index[Any, Any] = kwargs["table_refs"]
    return lambda: list(index.get((namespace, pipeline), []))


@kopf.on.resume(*PIPELINES)
@kopf.on.create(*PIPELINES)
@kopf.on.update(*PIPELINES, field="spec")
async def pipeline_changed(name: str, namespace: str | None, **kwargs: Any) -> None:
    assert namespace is not None
    await reconcile(kube(), namespace, name, _refs(kwargs, namespace, name), force_secrets=True,
                    **_views(kwargs))  # fmt: skip


@kopf.timer(*PIPELINES, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL)
async def pipeline_refresh(name: str, namespace: str | None, **kwargs: Any) -> None:
    """Refresh credentials on `vault.refreshInterval`, and status (workers, lag) each pass."""
    assert namespace is not None
    await reconcile(kube(), namespace, name, _refs(kwargs, namespace, name), **_views(kwargs))


@kopf.on.delete(*PIPELINES)
async def pipeline_deleted(body: kopf.Body, **_: Any) -> None:
    await delete_pipeline(dict(body))
    PROGRESS.forget("CdcPipeline", body["metadata"]["namespace"], body["metadata"]["name"])


@kopf.on.resume(*TABLES)
@kopf.on.create(*TABLES)
@kopf.on.update(*TABLES, field="spec")
@kopf.on.delete(*TABLES)
async def table_changed(spec: kopf.Spec, namespace: str | None, **kwargs: Any) -> None:
    """A table joined, changed or left: reconcile its pipeline (topics, configs, workers)."""
    assert namespace is not None  # TableReplication is namespaced
    pipeline = spec["pipelineRef"]["name"]
    await reconcile(kube(), namespace, pipeline, _refs(kwargs, namespace, pipeline),
                    **_views(kwargs))  # fmt: skip
