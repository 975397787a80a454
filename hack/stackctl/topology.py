"""How many members each clustered component runs, and where member N lives.

The default stack is one Cassandra node and one Kafka broker: fast to start and what `make test`
uses. The production topology (a 3-node ring, replication factor 3, a 3-broker Kafka) is opt-in
through CDC_STACK_CASSANDRA_NODES and CDC_STACK_KAFKA_BROKERS, so the replica duplicates, the
broker failover and the node restarts the product claims to survive can be exercised for real
(`make test-topology`). Member 1 keeps the single-node layout exactly (same state directory,
ports and address); members 2..N get their own state directories beside it, so every node has its
own data, commitlog, cdc_raw, offsets and PID file, and `down` finds them by directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from .core import STATE, StackError

# Ports of member i are the default port + PORT_STEP * (i - 1) where members share an address.
PORT_STEP = 10
MAX_MEMBERS = 5


def _count(var: str) -> int:
    raw = os.environ.get(var, "1") or "1"
    try:
        n = int(raw)
    except ValueError:
        raise StackError(f"{var}={raw!r}: expected a number of members") from None
    if not 1 <= n <= MAX_MEMBERS:
        raise StackError(f"{var}={n}: between 1 and {MAX_MEMBERS} members")
    return n


def cassandra_nodes() -> int:
    return _count("CDC_STACK_CASSANDRA_NODES")


def kafka_brokers() -> int:
    return _count("CDC_STACK_KAFKA_BROKERS")


def member_dir(component: str, index: int) -> Path:
    """Member 1 is the single-node state directory; member i > 1 is `<component>-<i>`."""
    return STATE / component if index == 1 else STATE / f"{component}-{index}"


def members(component: str, count: int) -> list[int]:
    """1..count, plus members a larger earlier run left behind (so `down` stops them too)."""
    found = {
        int(p.name.rsplit("-", 1)[1])
        for p in STATE.glob(f"{component}-[0-9]*")
        if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    }
    return sorted(set(range(1, count + 1)) | found)


def loopback(index: int) -> str:
    """Cassandra node i listens on 127.0.0.i (Linux routes all of 127/8 to lo)."""
    return f"127.0.0.{index}"
