"""What the agent's own log says about it: its start phase and its errors.

The connector's `/health` answers 200 whether or not it captures anything, so the few log lines
that do tell are read here, line by line, as the child writes them. The phase restarts at
STARTING with every start of the child, so a line from an earlier run never counts.
"""

from __future__ import annotations

import enum

# Logged once the driver has loaded the schema and the CDC tables are registered.
READY_LINE = "Initialized SchemaHolder."
# The driver could not read the schema at start: the agent will emit nothing for any table.
BLIND_LINE = "proceeding without schema metadata"
# A schema refresh failed while running: tables created from now on are not registered.
REFRESH_FAILED_LINE = "Unexpected error while refreshing schema"


class Phase(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    BLIND = "blind"
    REFRESH_FAILED = "refresh_failed"


PHASES = [p.value for p in Phase]
ERROR_KINDS = ("schema_refresh", "relocation", "processor_stopped", "processing", "kafka")


def phase_after(phase: Phase, line: str) -> Phase:
    """The phase once `line` is logged by a child currently in `phase`."""
    if BLIND_LINE in line:
        return Phase.BLIND
    if REFRESH_FAILED_LINE in line:
        return Phase.BLIND if phase is Phase.BLIND else Phase.REFRESH_FAILED
    if READY_LINE in line and phase is Phase.STARTING:
        return Phase.READY
    return phase


def error_kind(line: str) -> str | None:
    """The kind of error an ERROR-level line reports, or None for any other line.

    The level is looked for among the first four words (logback patterns put it at the start or
    after the date and time); stack-trace continuation lines carry no level and are not counted.
    """
    if "ERROR" not in line.split(maxsplit=4)[:4]:
        return None
    low = line.lower()
    if REFRESH_FAILED_LINE.lower() in low or "schema" in low:
        return "schema_refresh"
    if "relocat" in low or "error folder" in low or "/error" in low:
        return "relocation"
    if "processor group stopped" in low:
        return "processor_stopped"
    if "kafka" in low or "producer" in low:
        return "kafka"
    return "processing"
