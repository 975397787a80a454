"""`cdc-worker`: the console entry point of the replication worker."""

from __future__ import annotations

import argparse
import os
import sys

from cdc_worker import __version__
from cdc_worker.config import ConfigError, load_config
from cdc_worker.observe import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cdc-worker",
        description="Replicates Debezium Cassandra change events from Kafka into PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume, coalesce and apply events until stopped")
    run.add_argument(
        "--config",
        default=os.environ.get("CDC_WORKER_CONFIG"),
        help="worker.yaml (default: $CDC_WORKER_CONFIG; env overrides apply on top)",
    )
    run.add_argument("--log-level", default=os.environ.get("CDC_LOG_LEVEL", "INFO"))
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    setup_logging(args.log_level if args.command == "run" else "WARNING")
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"cdc-worker: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"ok: pipeline {cfg.pipeline}, {len(cfg.tables)} table(s)")
        return 0
    from cdc_worker.runner import Worker, install_signals

    worker = Worker(cfg)
    install_signals(worker)
    return worker.run()
