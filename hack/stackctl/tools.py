"""Command-line tools the project builds but never runs as services: `hack/stack tool NAME`.

Each is built from the Go module proxy by a script under hack/ that pins its version and caches
the binary outside the repo keyed by that version, the first time it is asked for (a cold
promtool build takes a few minutes on 2 cores; after that, asking costs one bash start). The
command prints the binary's absolute path on stdout, build progress goes to stderr.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .core import REPO, StackError
from .k8s import BUILD as K8S_BUILD

PROMETHEUS_BUILD = REPO / "hack" / "prometheus" / "build.sh"

# tool -> (build script, KEY of the KEY=VALUE line it prints, file name under that directory)
TOOLS: dict[str, tuple[Path, str, str]] = {
    "promtool": (PROMETHEUS_BUILD, "PROMTOOL", ""),
    "prometheus": (PROMETHEUS_BUILD, "PROMETHEUS", ""),
    "helm": (K8S_BUILD, "HELM_BIN", "helm"),
    "kubectl": (K8S_BUILD, "K8S_BIN", "kubectl"),
}


def path(name: str) -> Path:
    """The tool's binary, built first if it is not in the cache yet."""
    if name not in TOOLS:
        raise StackError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}")
    script, key, leaf = TOOLS[name]
    # stderr is inherited: a cold build's progress is worth seeing, a warm one says nothing.
    res = subprocess.run(
        ["bash", str(script), "--quiet"], stdout=subprocess.PIPE, text=True, check=False
    )
    if res.returncode != 0:
        raise StackError(f"{script} failed (exit {res.returncode}); its output is above")
    kv = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    binary = Path(kv[key]) / leaf if leaf else Path(kv[key])
    if not binary.is_file():
        raise StackError(f"{script} finished but {binary} is missing")
    return binary
