"""Verify and backfill, run by Kubernetes: Indexed Jobs per table, their verdict in status.

For each TableReplication with `spec.backfill.enabled` the operator runs one backfill Job once
the workers stream (so nothing falls between the load and the stream), and for one with
`spec.verify` a verify Job every `interval` after the previous one ended, or at each time of
its cron `schedule` (UTC; a time missed while another scan ran starts as soon as it ends);
`status.verify.nextRun` says when. At most one Job per table at a time. A Job's success or
failure is the verdict (`cdc-worker verify --fail-on-diff` exits 3 when rows differ, and that
index fails without retries): condition `InSync` True (Verified or Repaired), False
(Differences), or Unknown while it runs; the counts come from the Pods' report in Redis when
the pipeline has one. Jobs are owned by the TableReplication, and removed by the Job controller
a day after they finish.

A table whose workers report a data gap (events Kafka deleted before they were applied:
`Ready=False, DataGap`) and whose verify has `repair: true` gets a verify-with-repair Job at
once (trigger `DataGap`), which acknowledges the gap in PostgreSQL when every slice has
repaired successfully (`cdc-worker … --acknowledge-gaps`, docs/scan.md); the workers then
clear `DataGap` themselves. Without `repair`, the condition says what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cdc_operator import cron
from cdc_operator.builders.conditions import set_condition
from cdc_operator.builders.scan_job import ScanKind, scan_job
from cdc_operator.credentials_step import parse_duration
from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec, VerifySpec

TR_ANNOTATION = "casscdc.io/table-replication"
RUN_ANNOTATION = "casscdc.io/run"
TRIGGER_ANNOTATION = "casscdc.io/scan-trigger"
# After a gap repair the workers see the acknowledgement within ~10 s; a gap still reported
# this long after one succeeded (a new gap, or one detected after that scan began) gets another.
GAP_RETRY_AFTER_SUCCESS = 120.0
GAP_RETRY_AFTER_FAILURE = 600.0


@dataclass
class ScanView:
    """What the pass writes into one table's status, and Jobs to create."""

    conditions: list[dict[str, Any]] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    create: list[dict[str, Any]] = field(default_factory=list)


def _finished(job: dict[str, Any]) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def _finished_at(job: dict[str, Any]) -> str | None:
    """completionTime (success only), else the Failed condition's time."""
    st = job.get("status") or {}
    if st.get("completionTime"):
        return str(st["completionTime"])
    for c in st.get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return c.get("lastTransitionTime") or None
    return None


def _ts(text: str | None) -> float:
    if not text:
        return 0.0
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_id(kind: str, now: float) -> str:
    return f"{kind[0]}{int(now):x}"


def _owner(tr: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
            "name": tr["name"], "uid": tr["uid"], "controller": True,
            "blockOwnerDeletion": True}  # fmt: skip


def _summary(job: dict[str, Any], counts: dict[str, float]) -> dict[str, Any]:
    st = job.get("status") or {}
    completions = int((job.get("spec") or {}).get("completions") or 1)
    done = int(st.get("succeeded") or 0) + int(st.get("failed") or 0)
    out: dict[str, Any] = {
        "job": job["metadata"]["name"],
        "result": _finished(job) or "Running",
        "progress": min(100, round(100 * done / completions)),
    }
    if ended := _finished_at(job):
        out["lastRun"] = ended
    if st.get("startTime") and ended:
        out["duration"] = f"{int(_ts(ended) - _ts(st['startTime']))}s"
    if trigger := (job["metadata"].get("annotations") or {}).get(TRIGGER_ANNOTATION):
        out["trigger"] = trigger
    for k in ("rowsChecked", "rowsDiffering", "rowsRepaired"):
        if k in counts:
            out[k] = int(counts[k])
    return out


def plan(
    ns: str, pipeline: str, spec: CdcPipelineSpec, tr: dict[str, Any], trs: TableReplicationSpec,
    jobs: list[dict[str, Any]], counts: dict[str, dict[str, float]], streaming: bool,
    secret_keys: list[str], gen: int | None, now: float | None = None, gap: str | None = None,
) -> ScanView:  # fmt: skip
    """Decide the table's scan Jobs and status (pure: jobs and counts are what was read).

    `gap`: the unacknowledged data gap the workers report for the table, if any."""
    now = time.time() if now is None else now
    table = f"{trs.source.keyspace}.{trs.source.table}"
    mine = sorted(
        (j for j in jobs if (j["metadata"].get("annotations") or {}).get(TR_ANNOTATION)
         == tr["name"]),
        key=lambda j: j["metadata"].get("creationTimestamp") or "",
    )  # fmt: skip
    kinds = {"backfill": ("backfill",), "verify": ("verify", "repair")}
    by_kind = {k: [j for j in mine
                   if j["metadata"]["annotations"].get("casscdc.io/scan-kind") in ks]
               for k, ks in kinds.items()}  # fmt: skip
    active = any(_finished(j) is None for j in mine)
    view = ScanView(conditions=list(tr.get("conditions") or []))
    old = tr.get("status") or {}

    def job(kind: str, slices: int, repair: bool = False, trigger: str | None = None,
            **kw: Any) -> dict[str, Any]:  # fmt: skip
        run = _run_id(kind, now)
        scan: ScanKind = "repair" if repair else ("backfill" if kind == "backfill" else "verify")
        j = scan_job(ns, pipeline, _owner(tr), spec, kind=scan, table=table, slices=slices,
                     run_id=run, secret_keys=secret_keys, **kw)  # fmt: skip
        if kind == "verify" and not repair:
            j["spec"]["template"]["spec"]["containers"][0]["args"].append("--fail-on-diff")
        j["spec"]["template"]["spec"]["containers"][0]["args"] += ["--report-run", run]
        j["metadata"]["annotations"] |= {TR_ANNOTATION: tr["name"], RUN_ANNOTATION: run}
        if trigger:
            j["metadata"]["annotations"][TRIGGER_ANNOTATION] = trigger
        return j

    def counts_of(j: dict[str, Any]) -> dict[str, float]:
        return counts.get(j["metadata"]["annotations"].get(RUN_ANNOTATION, ""), {})

    backfill_done = True
    if trs.backfill is not None and trs.backfill.enabled:
        last = by_kind["backfill"][-1] if by_kind["backfill"] else None
        if last is not None:
            view.status["backfill"] = _summary(last, counts_of(last))
        elif (old.get("backfill") or {}).get("result"):
            view.status["backfill"] = old["backfill"]
        elif streaming and not active:
            n = trs.backfill.parallelism
            view.create.append(job("backfill", n, parallelism=n))
            active = True
        backfill_done = (view.status.get("backfill") or {}).get("result") == "Complete"

    if trs.verify is None:
        return view
    v = trs.verify
    last = by_kind["verify"][-1] if by_kind["verify"] else None
    summary: dict[str, Any] = (
        _summary(last, counts_of(last)) if last is not None else dict(old.get("verify") or {})
    )
    if summary:
        view.status["verify"] = summary
    verdict = summary.get("result")
    conds = view.conditions or []
    if verdict == "Running":
        why = f"verify Job {summary.get('job')} is running"
        if summary.get("trigger") == "DataGap":
            why += " (repairing the rows of a data gap)"
        conds = set_condition(conds, "InSync", None, "Verifying", why, gen)
    elif verdict == "Complete":
        repaired = int(summary.get("rowsRepaired") or 0)
        why = f"{repaired} rows repaired" if repaired else "every row equal"
        why += f" (verify finished {summary.get('lastRun', '')})"
        conds = set_condition(conds, "InSync", True, "Repaired" if repaired else "Verified",
                              why, gen)  # fmt: skip
    elif verdict == "Failed":
        differ = summary.get("rowsDiffering")
        why = f"{differ} rows differ" if differ is not None else "the verify Job failed"
        why += "" if v.repair else " (repair is off)"
        conds = set_condition(conds, "InSync", False, "Differences", why, gen)
    else:
        conds = set_condition(conds, "InSync", None, "NotVerifiedYet", "no verify yet", gen)
    view.conditions = conds
    started = _ts(last["metadata"].get("creationTimestamp")) if last is not None else None
    due_at = next_run(v, summary, started, old.get("verify") or {}, now)
    if due_at is not None and (v.schedule or summary.get("lastRun")):
        summary["nextRun"] = _iso(due_at)
        view.status["verify"] = summary
    idle = verdict != "Running" and not active and backfill_done
    if idle and gap and v.repair and _gap_due(summary, now):
        # The workers keep consuming past a gap but are not ready (DataGap): no `streaming`.
        view.create.append(job("verify", v.parallelism, repair=True, trigger="DataGap",
                               parallelism=v.parallelism, consistency=v.consistency,
                               rows_per_second=v.rows_per_second,
                               acknowledge_gaps=True))  # fmt: skip
    elif idle and streaming and due_at is not None and now >= due_at:
        trigger = "Schedule" if v.schedule else "Interval"
        view.create.append(job("verify", v.parallelism, repair=v.repair, trigger=trigger,
                               parallelism=v.parallelism, consistency=v.consistency,
                               rows_per_second=v.rows_per_second))  # fmt: skip
    return view


def next_run(
    v: VerifySpec, summary: dict[str, Any], started: float | None, old: dict[str, Any],
    now: float,
) -> float | None:  # fmt: skip
    """When the next verify is due (epoch s), or None while one runs with an interval.

    Interval: `interval` after the last run ended (at once if none ever ran). Schedule: the
    first time of the schedule after the last run *started* (so a time passed during a long
    run is caught up once, not skipped); before any run, or once the Job is gone, the time
    recorded in status stays (recomputed from now only if the schedule changed), else the
    schedule's first time after now."""
    if v.schedule is None:
        if summary.get("result") == "Running":
            return None
        ended = summary.get("lastRun")
        return _ts(ended) + parse_duration(v.every) if ended else now
    sched = cron.parse(v.schedule)
    if started is None and old.get("nextRun"):
        recorded = _ts(old["nextRun"])
        if sched.matches(datetime.fromtimestamp(recorded, UTC)):
            return recorded
    base = datetime.fromtimestamp(started if started is not None else now, UTC)
    nxt = sched.next_after(base)
    return nxt.timestamp() if nxt is not None else None


def _gap_due(summary: dict[str, Any], now: float) -> bool:
    """A gap repair, unless the last one ended too recently for its acknowledgement to show
    (or, failed, too recently to try again)."""
    ended = summary.get("lastRun")
    if summary.get("trigger") != "DataGap" or not ended:
        return True
    wait = GAP_RETRY_AFTER_SUCCESS if summary["result"] == "Complete" else GAP_RETRY_AFTER_FAILURE
    return now - _ts(ended) >= wait


def gap_message(gap: str, trs: TableReplicationSpec, view: ScanView | None, pg_schema: str,
                topic: str) -> str:  # fmt: skip
    """The `Ready=False, DataGap` message: what happens next, or what the user should do."""
    if trs.verify is not None and trs.verify.repair:
        run = ((view.status if view else {}).get("verify")) or {}
        if run.get("trigger") == "DataGap" and run.get("result") == "Running":
            return (f"{gap}; verify with repair (Job {run.get('job')}) is restoring the rows "
                    "and acknowledges the gap when it succeeds")  # fmt: skip
        return (f"{gap}; a verify with repair runs automatically (spec.verify.repair) and "
                "acknowledges the gap when it succeeds")  # fmt: skip
    return (f"{gap}; set spec.verify.repair: true to repair and acknowledge it automatically, "
            "or run `cdc-worker verify --repair` for this table, then acknowledge the gap: "
            f"UPDATE {pg_schema}._cdc_gaps SET acknowledged_at = now() "
            f"WHERE topic = '{topic}' AND acknowledged_at IS NULL")  # fmt: skip


def read_counts(url: str, password: str | None, pipeline: str, tables: list[str]) -> Any:
    """Run totals reported by the scan Pods: run id -> counts."""
    import redis

    c = redis.Redis.from_url(url, password=password, socket_timeout=2, socket_connect_timeout=2)
    out: dict[str, dict[str, float]] = {}
    for t in tables:
        for key in c.scan_iter(f"cdc:{pipeline}:scan:{t}:*"):
            name = key.decode() if isinstance(key, bytes) else str(key)
            run = name.rsplit(":", 1)[1]
            out[run] = {(k.decode() if isinstance(k, bytes) else k): float(val)
                        for k, val in c.hgetall(key).items()}  # fmt: skip
    return out


def now_iso() -> str:
    return _iso(time.time())
