"""Kopf handlers: thin. Each one calls `reconcile` and writes status; none returns a value.

Progress and diff-base are kept in annotations under the project's own prefix,
and the finalizer is `casscdc.io/finalizer`; it only does work when
`kafka.deletionPolicy` is `Delete`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import kopf

from cdc_operator.appliers.kube import Kube
from cdc_operator.models import GROUP, VERSION
from cdc_operator.reconcile import TableRef, delete_pipeline, reconcile

PIPELINES = (GROUP, VERSION, "cdcpipelines")
TABLES = (GROUP, VERSION, "tablereplications")
STATUS_INTERVAL = float(os.environ.get("CDC_OPERATOR_STATUS_INTERVAL", "15"))

_kube: Kube | None = None


def kube() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.batching.worker_limit = 20


@kopf.index(*TABLES)
def table_refs(body: kopf.Body, meta: kopf.Meta, spec: kopf.Spec, **_: Any) -> Any:
    """TableReplications by (namespace, pipeline): no pass lists every table in a namespace."""
    if meta.get("deletionTimestamp"):
        return None
    return {(meta["namespace"], spec["pipelineRef"]["name"]): TableRef.of(dict(body))}


def _refs(kwargs: dict[str, Any], namespace: str, pipeline: str) -> Callable[[], list[TableRef]]:
    """The pipeline's tables, read from the live `table_refs` index when the pass starts."""
    index: kopf.Index[Any, Any] = kwargs["table_refs"]
    return lambda: list(index.get((namespace, pipeline), []))


@kopf.on.resume(*PIPELINES)
@kopf.on.create(*PIPELINES)
@kopf.on.update(*PIPELINES, field="spec")
async def pipeline_changed(name: str, namespace: str | None, **kwargs: Any) -> None:
    assert namespace is not None
    await reconcile(kube(), namespace, name, _refs(kwargs, namespace, name), force_secrets=True)


@kopf.timer(*PIPELINES, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL)
async def pipeline_refresh(name: str, namespace: str | None, **kwargs: Any) -> None:
    """Refresh credentials on `vault.refreshInterval`, and status (workers, lag) each pass."""
    assert namespace is not None
    await reconcile(kube(), namespace, name, _refs(kwargs, namespace, name))


@kopf.on.delete(*PIPELINES)
async def pipeline_deleted(body: kopf.Body, **_: Any) -> None:
    await delete_pipeline(dict(body))


@kopf.on.resume(*TABLES)
@kopf.on.create(*TABLES)
@kopf.on.update(*TABLES, field="spec")
@kopf.on.delete(*TABLES)
async def table_changed(spec: kopf.Spec, namespace: str | None, **kwargs: Any) -> None:
    """A table joined, changed or left: reconcile its pipeline (topics, configs, workers)."""
    assert namespace is not None  # TableReplication is namespaced
    pipeline = spec["pipelineRef"]["name"]
    await reconcile(kube(), namespace, pipeline, _refs(kwargs, namespace, pipeline))
