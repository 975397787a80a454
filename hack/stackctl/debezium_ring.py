"""The `debezium` component: one supervised agent (cdc-agent + Debezium) per Cassandra node.

In production an agent runs beside every node and reads only that node's cdc_raw, so with
replication factor N every write reaches Kafka up to N times, from agents that see it at
different moments. A ring in the stack (CDC_STACK_CASSANDRA_NODES) therefore gets one agent per
node, each with its own config, offsets and ports (debezium.py), started one after the other (a
JVM start each, on 2 cores); `env` describes node 1's agent as before, plus the list of every
agent's cdc-agent URL (CDC_AGENT_URLS).
"""

from __future__ import annotations

from .core import log
from .debezium import Debezium
from .topology import cassandra_nodes, members


class DebeziumRing(Debezium):
    def __init__(self) -> None:
        super().__init__(1)

    def agents(self) -> list[Debezium]:
        return [self if i == 1 else Debezium(i) for i in range(1, cassandra_nodes() + 1)]

    def up(self) -> str:
        result = super().up()
        for agent in self.agents()[1:]:
            log(f"debezium: agent of node {agent.index}: {agent.up()}")
        return result

    def down(self) -> bool:
        stopped = False
        for i in reversed(members(self.name, cassandra_nodes())):
            agent = self if i == 1 else Debezium(i)
            if i == 1:
                stopped = super().down() or stopped
            elif agent.proc.stop(agent.stop_signal):
                log(f"debezium: agent of node {i} stopped")
                stopped = True
        return stopped

    def status(self) -> str:
        states = [Debezium.status(a) for a in self.agents()]
        if len(states) == 1:
            return states[0]
        return next((s for s in ("stopped", "unhealthy") if s in states), "healthy") + (
            f" {states.count('healthy')}/{len(states)}"
        )

    def env(self) -> dict[str, str]:
        urls = ",".join(f"http://127.0.0.1:{a.agent_port}" for a in self.agents())
        return {**super().env(), "CDC_AGENT_URLS": urls}
