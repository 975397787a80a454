"""`cdc-operator`: run the operator (default), or write the CRDs generated from the models."""

from __future__ import annotations

import argparse
import faulthandler
import sys
from pathlib import Path

from cdc_operator import __version__


def main(argv: list[str] | None = None) -> int:
    # A crash in native code (librdkafka, libpq, the Cassandra driver's event loop) prints
    # every thread's Python stack to stderr instead of vanishing silently.
    faulthandler.enable()
    parser = argparse.ArgumentParser(
        prog="cdc-operator",
        description="Reconciles CdcPipeline and TableReplication resources (Kopf). With no "
        "command it runs against the current kubeconfig or in-cluster config, watching all "
        "namespaces unless --namespace is given.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--namespace", action="append", default=[], help="watch only this namespace (repeatable)"
    )
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the operator (the default)")
    sub.add_parser(
        "cleanup", help="delete all pipelines and tables (the chart's pre-delete hook) and wait"
    )
    crds = sub.add_parser("crds", help="write crds/*.yaml from the pydantic models")
    crds.add_argument("--out", type=Path, default=Path("crds"))
    crds.add_argument("--chart-files", type=Path, default=Path("charts/cass-cdc-pg/files"))
    crds.add_argument("--reference", type=Path, default=Path("docs/crd-reference.md"))
    args = parser.parse_args(argv)
    if args.command == "crds":
        from cdc_operator.crdgen import write

        for path in write(args.out, args.chart_files, args.reference):
            print(path)
        return 0
    if args.command == "cleanup":
        from cdc_operator.cleanup import cleanup

        return cleanup(args.namespace)
    from cdc_operator.main import run

    return run(namespaces=args.namespace, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
