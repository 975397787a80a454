"""A deleted pipeline's or table's metric series leave the operator's /metrics with it."""

from __future__ import annotations

from prometheus_client import generate_latest

from cdc_operator import metrics as M


def _exported() -> str:
    return generate_latest(M.REGISTRY).decode()


def test_forget_removes_only_that_pipelines_and_tables_series() -> None:
    for ns, name in (("a", "gone"), ("a", "kept"), ("b", "gone")):
        M.CONDITION.labels(ns, name, "Ready").set(0)
        M.CONDITION.labels(ns, name, "SecretsReady").set(1)
        M.RECONCILES.labels(ns, name, "ok").inc()
        M.PIPELINE_LAG.labels(ns, name).set(5)
        M.SECRET_REFRESH_FAILURES.labels(ns, name, "VaultUnreachable").inc()
        M.TABLE_IN_SYNC.labels(ns, f"{name}-t").set(0)
    M.forget_pipeline("a", "gone")
    M.forget_table("a", "gone-t")
    text = _exported()
    assert 'namespace="a",pipeline="gone"' not in text
    assert 'namespace="a",table="gone-t"' not in text
    for kept in ('namespace="a",pipeline="kept"', 'namespace="b",pipeline="gone"',
                 'namespace="b",table="gone-t"'):  # fmt: skip
        assert kept in text
