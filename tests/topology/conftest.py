"""Topology tests: a 3-node Cassandra ring with an agent per node and 3 Kafka brokers.

They run only under `make test-topology`, which starts that topology as a separate stack (its
own state directory and ports, see docs/local-stack.md) and exports CDC_STACK_CASSANDRA_NODES=3
and CDC_STACK_KAFKA_BROKERS=3 for them. Anywhere else (the default single-node stack of
`make test`) the files are not collected at all: they would otherwise start a ring there.
"""

from __future__ import annotations

import os

if os.environ.get("CDC_STACK_CASSANDRA_NODES", "1") == "1":
    collect_ignore_glob = ["test_*.py"]
