"""The operator's scan planning: when verify/backfill Jobs run, and what InSync says."""

from __future__ import annotations

from typing import Any

from cdc_operator.models import CdcPipelineSpec, TableReplicationSpec
from cdc_operator.scan_step import RUN_ANNOTATION, TR_ANNOTATION, plan

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
