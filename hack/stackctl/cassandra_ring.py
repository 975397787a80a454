"""The `cassandra` component: one node by default, a ring of N with CDC_STACK_CASSANDRA_NODES.

Replica duplicates, RF=3 keyspaces, QUORUM writes and a node that dies under load only exist
with several nodes, so the stack can run a real ring (topology.py): node i on 127.0.0.i with its
own state directory and PID, node 1 the seed. Nodes start one after the other, each waited for
until it answers CQL (a node joining while another is still bootstrapping is refused by
Cassandra, and 2 cores would only slow both down). `down` stops every node it finds, the
highest first, so a ring started with the variable is stopped even without it.
"""

from __future__ import annotations

from . import cassandra_auth
from .cassandra import LOCAL_DC, CassandraNode
from .core import log
from .topology import cassandra_nodes, members


class Cassandra(CassandraNode):
    def __init__(self) -> None:
        super().__init__(1)

    def nodes(self) -> list[CassandraNode]:
        return [CassandraNode(i) for i in range(1, self.ring + 1)]

    def up(self) -> str:
        result = super().up()
        for node in self.nodes()[1:]:
            log(f"cassandra: node {node.index} ({node.address}): {node.up()}")
        return result

    def down(self) -> bool:
        stopped = False
        for i in reversed(members(self.name, cassandra_nodes())):
            node = self if i == 1 else CassandraNode(i)
            if i > 1 and node.proc.stop(node.stop_signal):
                log(f"cassandra: node {i} stopped")
                stopped = True
        return super().down() or stopped

    def status(self) -> str:
        states = [n.status() for n in self.nodes()]
        if len(states) == 1:
            return states[0]
        return next((s for s in ("stopped", "unhealthy") if s in states), "healthy") + (
            f" {states.count('healthy')}/{len(states)}"
        )

    def env(self) -> dict[str, str]:
        return {
            "CASSANDRA_CONTACT_POINTS": ",".join(n.contact_point() for n in self.nodes()),
            "CASSANDRA_LOCAL_DATACENTER": LOCAL_DC,
            "CASSANDRA_NODES": str(self.ring),
            # TLS (stack CA) and logins: the superuser for tests/tools, one role per client.
            **cassandra_auth.env(),
        }
