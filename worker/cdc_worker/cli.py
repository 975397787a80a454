"""`cdc-worker`: the console entry point of the replication worker."""

from __future__ import annotations

import argparse
import sys

from cdc_worker import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cdc-worker",
        description="Replicates Debezium Cassandra change events from Kafka into PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume, coalesce and apply events")
    run.add_argument("--config", required=True, help="worker.yaml")
    parser.parse_args(argv)
    print("cdc-worker: the replication pipeline is not built yet", file=sys.stderr)
    return 2
