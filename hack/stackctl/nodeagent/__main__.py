"""`python3 -m stackctl.nodeagent`: the agent's command line (hack/stackctl/node.py starts it)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path

from .agent import Agent
from .base import log
from .kubeletapi import serve_logs
from .podnet import DEFAULT_POD_CIDR


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nodeagent")
    ap.add_argument("--node", default="local-node")
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--kubelet-port", type=int, required=True)
    ap.add_argument("--ca", type=Path, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--serving-cert", type=Path, required=True)
    ap.add_argument("--serving-key", type=Path, required=True)
    ap.add_argument("--kubelet-version", default="v0.0.0")
    ap.add_argument("--pod-cidr", default=DEFAULT_POD_CIDR)
    # KEY=VALUE:EFFECT, set when the node registers: a second node that only Pods tolerating
    # it run on (bench/operator_bench.py's own node beside the stack's local-node).
    ap.add_argument("--taint", action="append", default=[])
    args = ap.parse_args(argv)
    if shutil.which("buildah") is None:
        log("ERROR: buildah is not installed; this node cannot run containers")
        return 2
    agent = Agent(args)

    def on_signal(signum: int, _frame: object) -> None:
        log(f"received {signal.Signals(signum).name}")
        agent.stop_event.set()
        agent.wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    serve_logs(agent)
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
