"""The committed Go module resolution (hack/k8s/go-tools) matches the pins in module.sh.

A fresh machine builds the Go tools from that go.mod/go.sum instead of resolving the graph
(`go mod tidy` downloads 479 modules where the build needs 317); a pin moved without a new
resolution would still build, slowly, from a fresh `tidy`. This keeps the two in step.
"""

from __future__ import annotations

import re
from pathlib import Path

HACK = Path(__file__).resolve().parents[2] / "hack" / "k8s"


def _pins() -> dict[str, str]:
    text = (HACK / "module.sh").read_text()
    return dict(re.findall(r"^(K8S_VERSION|ETCD_VERSION|HELM_VERSION|PROMETHEUS_VERSION)=(\S+)$",
                           text, re.M))  # fmt: skip


def _required(name: str) -> dict[str, str]:
    text = (HACK / "go-tools" / name).read_text()
    return dict(re.findall(r"^\t(\S+) (v\S+)", text, re.M))


def test_the_committed_resolution_holds_the_pins() -> None:
    pins = _pins()
    assert set(pins) == {"K8S_VERSION", "ETCD_VERSION", "HELM_VERSION", "PROMETHEUS_VERSION"}
    minor, patch = pins["PROMETHEUS_VERSION"].removeprefix("3.").split(".")
    want = {
        "k8s.io/kubernetes": pins["K8S_VERSION"],
        "go.etcd.io/etcd/server/v3": pins["ETCD_VERSION"],
        "go.etcd.io/etcd/etcdctl/v3": pins["ETCD_VERSION"],
        "helm.sh/helm/v3": pins["HELM_VERSION"],
        "github.com/prometheus/prometheus": f"v0.{int(minor) + 300}.{patch}",
    }
    for name in ("go.mod.in", "go.mod"):
        got = _required(name)
        assert {m: got.get(m) for m in want} == want, name
    sums = (HACK / "go-tools" / "go.sum").read_text()
    for m, v in want.items():
        assert f"{m} {v} h1:" in sums, m
