"""Per-table capture health: a table with local writes whose topic does not move is stalled.

Signals, both read from outside the agent's JVM every few seconds:
- `writes`: the node's own count of local writes to the table (Cassandra's
  `system_views.local_write_latency.count`, the same timer `nodetool tablestats` reads). Every
  local write of a `cdc = true` table goes through this node's commitlog into cdc_raw, so it is
  exactly what this node's agent has to emit.
- `emitted`: the sum of the high watermarks of the table's topic partitions in Kafka.

Rule: when the write count rises, the table has a pending write from that moment on; any rise of
the high watermark clears it. A table whose oldest pending write is older than `stall_after`
seconds is stalled. `stall_after` must exceed the agent's normal latency (sub-second on the
stack) plus a restart (~15 s) plus the probe interval.

Limits, deliberately accepted: with replication factor N the topic also moves when another
node's agent emits, so one silent agent among healthy replicas is not caught (its node's
cdc_raw growth is); writes the connector never emits (static-only updates, TRUNCATE) make a
table that receives nothing else look stalled; the first observation is only a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TableHealth:
    writes: int | None = None
    emitted: int | None = None
    pending_since: float | None = None
    last_event: float | None = None  # wall-clock time the topic was last seen to move
    events_per_second: float = 0.0
    new_events: int = 0  # emitted since the previous observation
    new_writes: int = 0
    _at: float | None = None
    _seen: bool = False  # observed before: a topic appearing since then counts from zero

    def observe(self, now: float, writes: int | None, emitted: int | None) -> None:
        """Fold in one probe; None means the signal could not be read (or no topic yet)."""
        self.new_events = self.new_writes = 0
        moved = False
        base = 0 if self._seen else None
        before = self.emitted if self.emitted is not None else base
        if emitted is not None:
            if before is not None and emitted > before:
                self.new_events = emitted - before
                moved = True
                self.last_event = now
            if self._at is not None and before is not None and now > self._at:
                self.events_per_second = max(0, emitted - before) / (now - self._at)
            self.emitted, self._at = emitted, now
        written = self.writes if self.writes is not None else base
        if writes is not None:
            if written is not None and writes > written:
                self.new_writes = writes - written
                if self.pending_since is None:
                    self.pending_since = now
            self.writes = writes  # a lower count is a restarted node: a new baseline
        self._seen = True
        if moved:
            # The agent emitted for this table after (or while) it was written: not stalled.
            self.pending_since = None

    def stalled(self, now: float, stall_after: float) -> bool:
        return self.pending_since is not None and now - self.pending_since > stall_after


class CaptureHealth:
    """The per-table states of one node's agent."""

    def __init__(self, stall_after: float) -> None:
        self.stall_after = stall_after
        self.tables: dict[tuple[str, str], TableHealth] = {}

    def observe(
        self,
        now: float,
        tables: frozenset[tuple[str, str]],
        writes: dict[tuple[str, str], int] | None,
        emitted: dict[tuple[str, str], int | None] | None,
    ) -> None:
        for gone in set(self.tables) - tables:
            del self.tables[gone]
        for t in tables:
            state = self.tables.setdefault(t, TableHealth())
            state.observe(
                now,
                writes.get(t) if writes is not None else None,
                emitted.get(t) if emitted is not None else None,
            )

    def stalled(self, now: float) -> list[tuple[str, str]]:
        return sorted(t for t, s in self.tables.items() if s.stalled(now, self.stall_after))
