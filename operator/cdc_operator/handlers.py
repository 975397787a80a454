"""Kopf handlers: thin. Each one queues its pipeline for a pass; none returns a value.

Passes run from one work queue (`workqueue.py`, the controller-runtime model): a pipeline's
events, its tables' events and its workers' readiness add its key (de-duplicated; one pass per
pipeline at a time), a pass that succeeds schedules the next status refresh after
STATUS_INTERVAL, and a failing one is retried with per-key backoff under a global rate limit.

Progress and diff-base of CdcPipelines are kept in annotations under the project's own prefix,
and the finalizer is `casscdc.io/finalizer`; it only does work when `kafka.deletionPolicy` is
`Delete`. TableReplications are only watched (an event handler and an index): no finalizer,
no annotations, so a table costs the API server nothing but its own status.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from cdc_operator import kafka_step
from cdc_operator import metrics as M
from cdc_operator.appliers import cassandra
from cdc_operator.appliers.kube import Kube
from cdc_operator.breakers import BREAKERS, Dep
from cdc_operator.builders.names import LABEL_PIPELINE
from cdc_operator.models import GROUP, VERSION, CdcPipelineSpec
from cdc_operator.progress import PROGRESS
from cdc_operator.reconcile import Rivals, TableRef, Views, delete_pipeline, run_pass
from cdc_operator.workqueue import Backoff, Mode, TokenBucket, WorkQueue

PIPELINES = (GROUP, VERSION, "cdcpipelines")
TABLES = (GROUP, VERSION, "tablereplications")
STATUS_INTERVAL = float(os.environ.get("CDC_OPERATOR_STATUS_INTERVAL", "15"))
MAX_PASSES = int(os.environ.get("CDC_OPERATOR_MAX_PASSES", "8"))
THREADS = int(os.environ.get("CDC_OPERATOR_THREADS", str(MAX_PASSES + 4)))
RETRY_MAX = float(os.environ.get("CDC_OPERATOR_RETRY_MAX_SECONDS", "60"))
RETRY_QPS = float(os.environ.get("CDC_OPERATOR_RETRY_QPS", "20"))
# Changes are reconciled once they settle: no new event for the pipeline for SETTLE seconds
# (at most SETTLE_MAX after the first), so a pipeline and its tables applied together make
# one full pass and one Deployment revision, not one per table.
SETTLE = float(os.environ.get("CDC_OPERATOR_SETTLE_SECONDS", "0.3"))
SETTLE_MAX = float(os.environ.get("CDC_OPERATOR_SETTLE_MAX_SECONDS", "2"))

_kube: Kube | None = None
Key = tuple[str, str]
VIEWS = Views()
QUEUE: WorkQueue[Key] | None = None


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
    # cheap; the costly part, a reconcile pass, is bounded by the work queue's workers
    # (CDC_OPERATOR_MAX_PASSES), which handlers only add keys to: it cannot starve the index.
    settings.queueing.worker_limit = None
    # Blocking client calls run on a bounded pool of our own, not asyncio's default one.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="cdc-pass")
    )
    global QUEUE
    QUEUE = WorkQueue(_process, MAX_PASSES, backoff=Backoff(0.5, RETRY_MAX),
                      bucket=TokenBucket(RETRY_QPS, int(RETRY_QPS * 10)))  # fmt: skip
    QUEUE.start()


async def _process(key: Key, mode: Mode) -> float:
    """One pass (the queue's worker calls it); the next status refresh is due after the
    interval. A failure raises and the queue retries with backoff."""
    await run_pass(kube(), key[0], key[1], mode, VIEWS)
    return STATUS_INTERVAL


def _park(dep: Dep, key: Key, mode: Mode) -> None:
    BREAKERS.park(dep, lambda: enqueue(key, mode))


def enqueue(key: Key, mode: Mode, settle: bool = False) -> None:
    if QUEUE is None:
        return
    if settle:
        QUEUE.add_debounced(key, mode, SETTLE, SETTLE_MAX)
    else:
        QUEUE.add(key, mode)


@kopf.on.cleanup()
async def close_clients(**_: Any) -> None:
    """Shared Cassandra sessions are shut down before the interpreter exits, never during it
    (the driver's event loop thread running into finalization can crash the process)."""
    if QUEUE is not None:
        await QUEUE.stop()
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


@kopf.index(*PIPELINES)
def pipeline_bodies(body: kopf.Body, meta: kopf.Meta, **_: Any) -> Any:
    """Pipelines as the watch last saw them: a pass starts from this, not from a GET."""
    if meta.get("deletionTimestamp"):
        return None
    return {(meta["namespace"], meta["name"]): dict(body)}


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


_seen_ready: dict[Key, int] = {}


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_PIPELINE: kopf.PRESENT})
async def worker_availability(meta: kopf.Meta, status: kopf.Status, **kwargs: Any) -> None:
    """Workers became ready (or stopped being): report it now, not at the next refresh."""
    if meta.get("labels", {}).get("app.kubernetes.io/component") != "worker":
        return
    key = (meta["namespace"], meta["labels"][LABEL_PIPELINE])
    ready = int(status.get("readyReplicas") or 0)
    if _seen_ready.get(key) == ready:
        return
    _seen_ready[key] = ready
    _views(kwargs)
    enqueue(key, Mode.STATUS)


def _views(kwargs: dict[str, Any]) -> None:
    """What passes read from the operator's watches (live Kopf indexes) instead of the API
    server; handlers are only called once the indexes hold every object."""
    if VIEWS.pipeline is not None:
        return
    tables: kopf.Index[Any, Any] = kwargs["table_refs"]
    deployments: kopf.Index[Any, Any] = kwargs["worker_deployments"]
    bodies: kopf.Index[Any, Any] = kwargs["pipeline_bodies"]

    def last(index: kopf.Index[Any, Any], key: Key) -> Any:
        found = list(index.get(key, []))
        return found[-1] if found else None

    VIEWS.tables = lambda namespace, name: list(tables.get((namespace, name), []))
    VIEWS.workers = lambda namespace, name: last(deployments, (namespace, name))
    VIEWS.rivals = _rivals(kwargs)
    VIEWS.park = _park
    VIEWS.pipeline = lambda namespace, name: last(bodies, (namespace, name))


@kopf.on.probe(id="progress")
def progress(**_: Any) -> dict[str, int]:
    """Fails the liveness endpoint (HTTP 500) when pending work sees no pass finish."""
    why = PROGRESS.stalled()
    if why:
        raise kopf.PermanentError(f"no reconcile progress: {why}")
    return {"pendingPipelines": PROGRESS.pending()}


@kopf.on.resume(*PIPELINES)
async def pipeline_resumed(name: str, namespace: str | None, **kwargs: Any) -> None:
    """The operator (re)started: every pipeline at once, credentials re-read."""
    assert namespace is not None
    _views(kwargs)
    enqueue((namespace, name), Mode.REFRESH)


@kopf.on.create(*PIPELINES)
@kopf.on.update(*PIPELINES, field="spec")
async def pipeline_changed(name: str, namespace: str | None, **kwargs: Any) -> None:
    assert namespace is not None
    _views(kwargs)
    enqueue((namespace, name), Mode.REFRESH, settle=True)


@kopf.on.delete(*PIPELINES)
async def pipeline_deleted(body: kopf.Body, **_: Any) -> None:
    await delete_pipeline(dict(body))
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if QUEUE is not None:
        QUEUE.drop(key)
    _seen_ready.pop(key, None)
    PROGRESS.forget("CdcPipeline", *key)
    M.forget_pipeline(*key)


_seen_tables: dict[Key, tuple[str, object]] = {}


@kopf.on.event(*TABLES)
async def table_changed(
    type: str | None, body: kopf.Body, meta: kopf.Meta, spec: kopf.Spec, **kwargs: Any
) -> None:
    """A table joined, changed or left: a full pass over its pipeline (and over the one it left,
    when its pipelineRef moved). Our own status writes change neither, so they queue nothing."""
    key = (meta["namespace"], meta["name"])
    gone = type == "DELETED" or bool(meta.get("deletionTimestamp"))
    seen = (spec["pipelineRef"]["name"], (meta.get("generation"), gone))
    before = _seen_tables.get(key)
    if gone:
        _seen_tables.pop(key, None)
        M.forget_table(*key)
    else:
        _seen_tables[key] = seen
    if before == seen:
        return
    _views(kwargs)
    # At startup (the watch's initial listing) the pipelines are resumed at once anyway.
    settle = type is not None
    enqueue((key[0], seen[0]), Mode.FULL, settle)
    if before is not None and before[0] != seen[0]:
        enqueue((key[0], before[0]), Mode.FULL, settle)
