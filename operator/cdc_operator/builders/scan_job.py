"""The Kubernetes Job that verifies, repairs or backfills one table: a pure builder.

An Indexed Job (completionMode Indexed, completions = slices) runs
`cdc-worker verify|repair|backfill --slice $(JOB_COMPLETION_INDEX)/<slices>`:
each pod scans its own contiguous part of the token ring, the Job controller
gives every index its own retries (`backoffLimitPerIndex`), and a retried pod
resumes from its slice's checkpoint in PostgreSQL, so a failure costs one
sub-range, not the table. A repair started for a data gap also gets
`--acknowledge-gaps <run>`: when every slice of the run has repaired, the
last one acknowledges the table's gaps (docs/scan.md). `$(JOB_COMPLETION_INDEX)`
is expanded by the kubelet from the variable the Job controller injects into
every Indexed-Job container.
The pod is the worker Deployment's pod in every way that matters for trust: the
pipeline's ConfigMap (worker.yaml) and Secret (credentials as env), its own
ServiceAccount without a mounted token, and the "restricted" security context.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from cdc_operator.builders.manifests import _meta, worker_container, worker_pod_spec
from cdc_operator.builders.names import labels
from cdc_operator.models import CdcPipelineSpec

ScanKind = Literal["verify", "repair", "backfill"]


def scan_job_name(pipeline: str, kind: str, table: str, run_id: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", table.lower()).strip("-")
    base = f"{pipeline}-{kind}-{slug}"[: 62 - len(run_id)].rstrip("-")
    return f"{base}-{run_id}"


def scan_job(
    ns: str,
    pipeline: str,
    owner: dict[str, Any],
    spec: CdcPipelineSpec,
    *,
    kind: ScanKind,
    table: str,
    slices: int,
    run_id: str,
    secret_keys: list[str],
    parallelism: int | None = None,
    consistency: str = "LOCAL_QUORUM",
    rows_per_second: float = 0,
    lag_seconds: float | None = None,
    acknowledge_gaps: bool = False,
    backoff_limit_per_index: int = 3,
    ttl_seconds_after_finished: int = 86_400,
) -> dict[str, Any]:
    """An Indexed Job scanning `table` (keyspace.table) in `slices` parts."""
    if slices < 1:
        raise ValueError("slices must be at least 1")
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", run_id) or len(run_id) > 20:
        raise ValueError("run_id must be a short DNS label")
    args = [kind, "--table", table, "--slice", f"$(JOB_COMPLETION_INDEX)/{slices}",
            "--consistency", consistency]  # fmt: skip
    if rows_per_second:
        args += ["--rows-per-second", f"{rows_per_second:g}"]
    if lag_seconds is not None:
        args += ["--lag-seconds", f"{lag_seconds:g}"]
    if acknowledge_gaps:
        if kind != "repair":
            raise ValueError("only a repair can acknowledge data gaps")
        # The slice that finishes last, when all have repaired, acknowledges the table's gaps.
        args += ["--acknowledge-gaps", run_id]
    container = worker_container(pipeline, spec, secret_keys, "scan", command=["cdc-worker"],
                                 args=args)  # fmt: skip
    meta = _meta(scan_job_name(pipeline, kind, table, run_id), ns, pipeline, "scan", owner)
    meta["annotations"] = {"casscdc.io/scan-kind": kind, "casscdc.io/scan-table": table}
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {
            "completionMode": "Indexed",
            "completions": slices,
            "parallelism": max(1, min(parallelism or slices, slices)),
            "backoffLimitPerIndex": backoff_limit_per_index,
            # Exit 3 is the verdict "rows differ": retrying that index would not change it.
            "podFailurePolicy": {"rules": [{"action": "FailIndex", "onExitCodes": {
                "containerName": "scan", "operator": "In", "values": [3]}}]},
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": labels(pipeline, "scan")},
                "spec": worker_pod_spec(pipeline, spec, container, restartPolicy="Never"),
            },
        },
    }  # fmt: skip
