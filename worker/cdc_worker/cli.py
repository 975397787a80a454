"""`cdc-worker`: the console entry point of the replication worker."""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys

from cdc_worker import __version__
from cdc_worker.config import ConfigError, WorkerConfig, load_config
from cdc_worker.observe import setup_logging


def main(argv: list[str] | None = None) -> int:
    # A crash in native code (librdkafka, libpq, the Cassandra driver's event loop) prints
    # every thread's Python stack to stderr instead of vanishing silently.
    faulthandler.enable()
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
    for name, text in SCANS.items():
        _scan_args(sub.add_parser(name, help=text))
    args = parser.parse_args(argv)
    setup_logging(args.log_level if args.command in ("run", *SCANS) else "WARNING")
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"cdc-worker: {e}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"ok: pipeline {cfg.pipeline}, {len(cfg.tables)} table(s)")
        return 0
    if cfg.redact_columns:
        setup_logging(args.log_level if args.command in ("run", *SCANS) else "WARNING",
                      cfg.redact_columns)  # fmt: skip
    if args.command in SCANS:
        return _scan(cfg, args)
    from cdc_worker.runner import Worker, install_signals

    worker = Worker(cfg)
    install_signals(worker)
    return worker.run()


SCANS = {
    "verify": "compare a table with Cassandra by token range (dry run; --repair to fix)",
    "repair": "verify and apply the differing rows through the worker's merge",
    "backfill": "load a table from Cassandra with exact write times and TTLs",
}


def _scan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=os.environ.get("CDC_WORKER_CONFIG"))
    p.add_argument("--log-level", default=os.environ.get("CDC_LOG_LEVEL", "WARNING"))
    p.add_argument("--table", help="keyspace.table or topic (default: the config's only table)")
    p.add_argument("--consistency", default="LOCAL_QUORUM", help="Cassandra read consistency")
    p.add_argument("--rows-per-second", type=float, default=0, help="read rate limit (0: none)")
    p.add_argument("--slice", default="0/1", help="i/n: this process scans part i of n")
    p.add_argument("--subranges", type=int, default=1024, help="sub-ranges over the whole ring")
    p.add_argument(
        "--lag-seconds",
        type=float,
        default=30.0,
        help="differences newer than this are re-checked before they count",
    )
    p.add_argument("--recheck-wait-seconds", type=float, default=60.0)
    p.add_argument("--fetch-size", type=int, default=1000, help="Cassandra page size")
    p.add_argument("--no-resume", action="store_true", help="ignore the slice's checkpoint")
    p.add_argument("--contact-points", help="comma-separated; overrides the config's")
    p.add_argument("--repair", action="store_true", help="verify: repair what differs")
    p.add_argument("--fail-on-diff", action="store_true", help="exit 3 when rows differ")
    p.add_argument("--report-run", help="add this slice's counts to the run's totals in Redis")
    p.add_argument(
        "--acknowledge-gaps",
        metavar="RUN",
        help="repair: when every slice of run RUN has repaired, acknowledge the table's data "
        "gaps detected before it began (scan/gap_ack.py)",
    )


def _scan(cfg: WorkerConfig, args: argparse.Namespace) -> int:
    import orjson

    from cdc_worker.scan.ring import parse_slice
    from cdc_worker.scan.run import ScanOptions, run_scan

    try:
        i, n = parse_slice(args.slice)
    except ValueError as e:
        print(f"cdc-worker: {e}", file=sys.stderr)
        return 2
    kind = "repair" if args.command == "repair" or args.repair else args.command
    if args.acknowledge_gaps and kind != "repair":
        print("cdc-worker: --acknowledge-gaps needs a repair", file=sys.stderr)
        return 2
    opts = ScanOptions(
        kind, args.table, args.consistency, args.rows_per_second, i, n, args.subranges,
        args.lag_seconds, args.recheck_wait_seconds, fetch_size=args.fetch_size,
        resume=not args.no_resume,
        contact_points=tuple(args.contact_points.split(",")) if args.contact_points else (),
    )  # fmt: skip
    try:
        result = run_scan(cfg, opts, dict(os.environ))
    except ValueError as e:
        print(f"cdc-worker: {e}", file=sys.stderr)
        return 2
    print(orjson.dumps(result.as_json()).decode(), flush=True)
    if args.report_run:
        from cdc_worker.scan.report import report

        try:
            report(cfg, dict(os.environ), args.report_run, result)
        except Exception as e:  # the counts are informative; the exit code is the verdict
            print(f"cdc-worker: could not report to Redis: {type(e).__name__}", file=sys.stderr)
    if args.acknowledge_gaps:
        import psycopg

        from cdc_worker.connect import pg_connect
        from cdc_worker.scan.gap_ack import slice_repaired
        from cdc_worker.scan.run import pick_table

        try:
            with pg_connect(cfg, dict(os.environ)) as conn:
                slice_repaired(conn, cfg, pick_table(cfg, args.table), args.acknowledge_gaps,
                               i, n)  # fmt: skip
        except (psycopg.Error, RuntimeError) as e:
            # Not acknowledged: fail, so the Job retries (or the operator starts another).
            print(f"cdc-worker: could not acknowledge the data gaps: {e}", file=sys.stderr)
            return 1
    return 3 if args.fail_on_diff and result.rowsDiffering else 0
