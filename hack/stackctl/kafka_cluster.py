"""The `kafka` component: one KRaft node by default, CDC_STACK_KAFKA_BROKERS=3 for a cluster.

Why combined broker+controller nodes for the cluster: three JVMs instead of six on a 2-core
machine, and a 3-voter quorum that loses one member on a SIGKILL exactly like a dedicated
controller quorum would (the controller moves, a majority remains). What the product has to
survive is a broker dying under acks=all producers and RF 3 / min.insync.replicas 2 topics, and
combined nodes give that. Unlike Cassandra nodes the brokers cannot start one at a time: a
broker serves nothing until the controller quorum (2 of 3 voters) has a leader, so all are
started, then waited for together; the SCRAM users and ACLs of the secure profile live in the
cluster metadata and are applied once. Each broker has its own SASL_SSL listener.
"""

from __future__ import annotations

from .core import StackError, log, wait_until
from .kafka import KafkaBroker
from .topology import kafka_brokers, members


class Kafka(KafkaBroker):
    def __init__(self) -> None:
        super().__init__(1)

    def brokers(self) -> list[KafkaBroker]:
        return [self if i == 1 else KafkaBroker(i) for i in range(1, self.count + 1)]

    def up(self) -> str:
        if self.count == 1:
            return super().up()
        self.install()
        started = []
        for b in self.brokers():
            if b.proc.alive():  # healthy, or waiting for its quorum: judged below with the rest
                continue
            busy = b.busy_ports()
            if busy:
                raise StackError(f"kafka broker {b.index}: port(s) {busy} already in use")
            b.start()
            started.append(b.index)
        ok = wait_until(
            lambda: (
                all(b.healthy() for b in self.brokers())
                or not all(b.proc.alive() for b in self.brokers())
            ),
            self.start_timeout,
            0.5,
        )
        sick = [b for b in self.brokers() if not (b.proc.alive() and b.healthy())]
        if not ok or sick:
            b = sick[0]
            raise StackError(
                f"kafka broker {b.index} not healthy; {b.proc.log_file}:\n{b.proc.tail()}"
            )
        self.after_start()
        return f"started brokers {started}" if started else "running"

    def down(self) -> bool:
        stopped = False
        for i in reversed(members(self.name, kafka_brokers())):
            b = self if i == 1 else KafkaBroker(i)
            if b.proc.stop(b.stop_signal):
                if i > 1:
                    log(f"kafka: broker {i} stopped")
                stopped = True
        return stopped

    def status(self) -> str:
        states = [KafkaBroker.status(b) for b in self.brokers()]
        if len(states) == 1:
            return states[0]
        return next((s for s in ("stopped", "unhealthy") if s in states), "healthy") + (
            f" {states.count('healthy')}/{len(states)}"
        )
