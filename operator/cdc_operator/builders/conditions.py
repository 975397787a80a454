"""metav1.Condition bookkeeping: a transition time changes only when the status does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SUMMARY = "Ready"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    value = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in conditions if c.get("type") == type_), None)
    changed = old is None or old.get("status") != value
    new = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message[:1024],
        "lastTransitionTime": (now or now_iso()) if changed else old["lastTransitionTime"],  # type: ignore[index]
        "observedGeneration": generation,
    }
    return [*(c for c in conditions if c.get("type") != type_), new]


def summarize(
    conditions: list[dict[str, Any]], required: list[str], generation: int | None
) -> list[dict[str, Any]]:
    """Set `Ready` from the required conditions: the first that is not True explains why."""
    by_type = {c["type"]: c for c in conditions}
    for t in required:
        c = by_type.get(t)
        if c is None or c["status"] != "True":
            reason = c["reason"] if c else "Pending"
            message = f"{t}: {c['message']}" if c else f"{t} not evaluated yet"
            return set_condition(conditions, SUMMARY, False, reason, message, generation)
    return set_condition(conditions, SUMMARY, True, "Reconciled", "all conditions met", generation)
