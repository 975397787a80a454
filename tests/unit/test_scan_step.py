"""The operator's scan planning: when verify/backfill Jobs run, and what InSync says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec
from cdc_operator.scan_step import RUN_ANNOTATION, TR_ANNOTATION, gap_message, plan

SPEC = CdcPipelineSpec.model_validate({
    "cassandra": {"contactPoints": ["c:9042"]}, "debezium": {"topicPrefix": "shop"},
    "kafka": {"bootstrapServers": "k:9092", "deadLetterTopic": "shop.dlq"},
    "postgres": {"host": "pg", "database": "dw", "credentials": {"secretRef": {"name": "pg"}}},
    "worker": {"image": "localhost/cass-cdc-pg:1"},
})  # fmt: skip
TR = {"name": "orders", "uid": "u1", "conditions": [], "status": {}}
NOW = 1_800_000_000.0


def trs(**kw: Any) -> TableReplicationSpec:
    return TableReplicationSpec.model_validate(
        {"pipelineRef": {"name": "p"}, "source": {"keyspace": "s", "table": "orders"}, **kw}
    )


def job(kind: str, state: str | None, run: str, done: str = "2027-01-15T08:00:00Z") -> Any:
    conds = [{"type": state, "status": "True"}] if state else []
    return {"metadata": {"name": f"j-{run}", "creationTimestamp": done,
                         "annotations": {TR_ANNOTATION: "orders", RUN_ANNOTATION: run,
                                         "casscdc.io/scan-kind": kind}},
            "spec": {"completions": 2},
            "status": {"conditions": conds, "succeeded": 2 if state == "Complete" else 1,
                       "startTime": "2027-01-15T07:59:00Z",
                       **({"completionTime": done} if state else {})}}  # fmt: skip


def insync(view: Any) -> dict[str, Any]:
    return next(c for c in view.conditions if c["type"] == "InSync")


def test_first_verify_waits_for_streaming_then_runs_an_indexed_job() -> None:
    t = trs(verify={"interval": "1h", "parallelism": 2})
    assert plan("ns", "p", SPEC, TR, t, [], {}, False, [], 1, NOW).create == []
    view = plan("ns", "p", SPEC, TR, t, [], {}, True, ["POSTGRES_PASSWORD"], 1, NOW)
    (j,) = view.create
    assert j["spec"]["completionMode"] == "Indexed"
    assert j["spec"]["completions"] == j["spec"]["parallelism"] == 2
    args = j["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["verify", "--table"]
    assert "--fail-on-diff" in args
    assert j["metadata"]["ownerReferences"][0]["kind"] == "TableReplication"
    assert insync(view)["status"] == "Unknown"


def test_verdicts_and_the_interval() -> None:
    t = trs(verify={"interval": "1h"})
    old = "2027-01-01T00:00:00Z"
    done = plan("ns", "p", SPEC, TR, t, [job("verify", "Complete", "v1", old)],
                {"v1": {"rowsChecked": 10.0, "rowsDiffering": 0.0}}, True, [], 1, NOW)  # fmt: skip
    assert insync(done)["status"] == "True"
    assert insync(done)["reason"] == "Verified"
    assert done.status["verify"]["rowsChecked"] == 10
    # Finished long ago: due again.
    assert len(done.create) == 1
    recent = "2027-01-15T08:00:00Z"
    now = 1_800_000_000.0
    fresh = plan("ns", "p", SPEC, TR, t, [job("verify", "Failed", "v2", recent)],
                 {"v2": {"rowsDiffering": 3.0}}, True, [], 1, now)  # fmt: skip
    assert insync(fresh)["status"] == "False"
    assert "3 rows differ" in insync(fresh)["message"]
    running = plan("ns", "p", SPEC, TR, t, [job("verify", None, "v3")], {}, True, [], 1, NOW)
    assert running.create == []
    assert insync(running)["reason"] == "Verifying"


def test_backfill_runs_once_before_any_verify() -> None:
    t = trs(verify={"interval": "1h"}, backfill={"enabled": True, "parallelism": 2})
    first = plan("ns", "p", SPEC, TR, t, [], {}, True, [], 1, NOW)
    assert [j["metadata"]["annotations"]["casscdc.io/scan-kind"] for j in first.create] == [
        "backfill"]  # fmt: skip
    busy = plan("ns", "p", SPEC, TR, t, [job("backfill", None, "b1")], {}, True, [], 1, NOW)
    assert busy.create == []
    assert busy.status["backfill"]["progress"] == 50
    loaded = plan("ns", "p", SPEC, TR, t, [job("backfill", "Complete", "b1")], {}, True, [], 1,
                  NOW)  # fmt: skip
    assert [j["metadata"]["annotations"]["casscdc.io/scan-kind"] for j in loaded.create] == [
        "verify"]  # fmt: skip


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def started(j: dict[str, Any], at: float) -> dict[str, Any]:
    j["metadata"]["creationTimestamp"] = iso(at)
    return j


# NOW is 2027-01-15T08:00:00Z.
def test_a_failed_verify_waits_for_the_interval_too() -> None:
    t = trs(verify={"interval": "1h"})
    failed = job("verify", "Failed", "v1")
    del failed["status"]["completionTime"]  # the Job controller sets it on success only
    failed["status"]["conditions"][0]["lastTransitionTime"] = iso(NOW - 60)
    view = plan("ns", "p", SPEC, TR, t, [failed], {}, True, [], 1, NOW)
    assert view.create == []
    assert view.status["verify"]["lastRun"] == iso(NOW - 60)
    assert view.status["verify"]["nextRun"] == iso(NOW - 60 + 3600)
    later = plan("ns", "p", SPEC, TR, t, [failed], {}, True, [], 1, NOW + 3600)
    assert len(later.create) == 1


def test_schedule_waits_for_its_time_and_records_next_run() -> None:
    t = trs(verify={"schedule": "30 9 * * *"})
    first = plan("ns", "p", SPEC, TR, t, [], {}, True, [], 1, NOW)
    assert first.create == []
    assert first.status["verify"]["nextRun"] == "2027-01-15T09:30:00Z"
    # The recorded time holds (a pass a minute later does not push it on).
    tr = {**TR, "status": {"verify": first.status["verify"]}}
    again = plan("ns", "p", SPEC, tr, t, [], {}, True, [], 1, NOW + 60)
    assert again.create == []
    assert again.status["verify"]["nextRun"] == "2027-01-15T09:30:00Z"
    due = plan("ns", "p", SPEC, tr, t, [], {}, True, [], 1, NOW + 5400)
    (j,) = due.create
    assert j["metadata"]["annotations"]["casscdc.io/scan-trigger"] == "Schedule"
    assert "--fail-on-diff" in j["spec"]["template"]["spec"]["containers"][0]["args"]
    # Not before streaming.
    assert plan("ns", "p", SPEC, tr, t, [], {}, False, [], 1, NOW + 5400).create == []


def test_schedule_counts_from_the_last_start_and_catches_up_once() -> None:
    t = trs(verify={"schedule": "*/10 * * * *", "repair": True})
    # Started 07:30, ran past 07:40 and 07:50: the next run is due at once, only one.
    long = started(job("verify", "Complete", "v1", "2027-01-15T07:55:00Z"), NOW - 1800)
    view = plan("ns", "p", SPEC, TR, t, [long], {}, True, [], 1, NOW)
    assert view.status["verify"]["nextRun"] == "2027-01-15T07:40:00Z"
    (j,) = view.create
    assert j["spec"]["template"]["spec"]["containers"][0]["args"][0] == "repair"
    running = started(job("verify", None, "v2"), NOW)
    view = plan("ns", "p", SPEC, TR, t, [long, running], {}, True, [], 1, NOW + 900)
    assert view.create == []
    assert view.status["verify"]["nextRun"] == "2027-01-15T08:10:00Z"


def test_a_changed_schedule_replaces_the_recorded_time() -> None:
    t = trs(verify={"schedule": "0 12 * * *"})
    tr = {**TR, "status": {"verify": {"nextRun": "2027-01-15T09:30:00Z"}}}
    view = plan("ns", "p", SPEC, tr, t, [], {}, True, [], 1, NOW)
    assert view.status["verify"]["nextRun"] == "2027-01-15T12:00:00Z"


GAP = "s.orders[0] offsets 100..149 were never applied (BelowLowWatermark)"


def test_a_data_gap_starts_a_repair_at_once_when_repair_is_on() -> None:
    t = trs(verify={"interval": "24h", "repair": True, "parallelism": 2})
    recent = job("verify", "Complete", "v1", iso(NOW - 3600))
    # Workers are not ready while a gap is open: no streaming needed for this one.
    view = plan("ns", "p", SPEC, TR, t, [recent], {}, False, [], 1, NOW, gap=GAP)
    (j,) = view.create
    args = j["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "repair"
    run = j["metadata"]["annotations"][RUN_ANNOTATION]
    assert args[args.index("--acknowledge-gaps") + 1] == run
    assert "--fail-on-diff" not in args
    assert j["metadata"]["annotations"]["casscdc.io/scan-trigger"] == "DataGap"
    assert j["spec"]["completions"] == 2
    # Without the gap, the interval is not due.
    assert plan("ns", "p", SPEC, TR, t, [recent], {}, True, [], 1, NOW).create == []


def test_a_data_gap_without_repair_starts_nothing_and_says_what_to_do() -> None:
    t = trs(verify={"interval": "24h"})
    recent = job("verify", "Complete", "v1", iso(NOW - 3600))
    view = plan("ns", "p", SPEC, TR, t, [recent], {}, True, [], 1, NOW, gap=GAP)
    assert view.create == []
    msg = gap_message(GAP, t, view, "dw", "shop.s.orders")
    assert "spec.verify.repair: true" in msg
    assert "UPDATE dw._cdc_gaps SET acknowledged_at = now() WHERE topic = 'shop.s.orders'" in msg
    assert "spec.verify.repair: true" in gap_message(GAP, trs(), None, "dw", "shop.s.orders")


def test_the_gap_repair_runs_once_and_its_acknowledgement_gets_time_to_show() -> None:
    t = trs(verify={"interval": "24h", "repair": True})
    running = job("verify", None, "g1")
    running["metadata"]["annotations"]["casscdc.io/scan-trigger"] = "DataGap"
    view = plan("ns", "p", SPEC, TR, t, [running], {}, False, [], 1, NOW, gap=GAP)
    assert view.create == []
    assert "(repairing the rows of a data gap)" in insync(view)["message"]
    assert "Job j-g1" in gap_message(GAP, t, view, "dw", "topic")
    done = job("verify", "Complete", "g1", iso(NOW - 30))
    # A run the gap did not start acknowledged nothing: no reason to wait after it.
    assert len(plan("ns", "p", SPEC, TR, t, [done], {}, False, [], 1, NOW, gap=GAP).create) == 1
    done["metadata"]["annotations"]["casscdc.io/scan-trigger"] = "DataGap"
    view = plan("ns", "p", SPEC, TR, t, [done], {"g1": {"rowsRepaired": 50.0}}, False, [], 1,
                NOW, gap=GAP)  # fmt: skip
    assert view.create == []  # the workers have not noticed the acknowledgement yet
    assert insync(view)["reason"] == "Repaired"
    assert "runs automatically" in gap_message(GAP, t, view, "dw", "topic")
    # Still open two minutes later (a gap detected after that scan began): another repair.
    assert len(plan("ns", "p", SPEC, TR, t, [done], {}, False, [], 1, NOW + 120,
                    gap=GAP).create) == 1  # fmt: skip
    # After a failed one, ten minutes.
    failed = job("verify", "Failed", "g2", iso(NOW - 300))
    failed["status"]["conditions"][0]["lastTransitionTime"] = iso(NOW - 300)
    failed["metadata"]["annotations"]["casscdc.io/scan-trigger"] = "DataGap"
    assert plan("ns", "p", SPEC, TR, t, [failed], {}, False, [], 1, NOW, gap=GAP).create == []
    assert len(plan("ns", "p", SPEC, TR, t, [failed], {}, False, [], 1, NOW + 300,
                    gap=GAP).create) == 1  # fmt: skip


def test_a_gap_repair_waits_for_the_backfill() -> None:
    t = trs(verify={"interval": "24h", "repair": True}, backfill={"enabled": True})
    view = plan("ns", "p", SPEC, TR, t, [job("backfill", None, "b1")], {}, False, [], 1, NOW,
                gap=GAP)  # fmt: skip
    assert view.create == []
