"""Fixtures shared by the operator's integration tests: the stack's API server with the CRDs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.kube import Cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    return stack("k8s", "kafka", "vault", "redis", "postgres")


@pytest.fixture(scope="module")
def cluster(env: dict[str, str]) -> Cluster:
    c = Cluster(env)
    c.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    c.run("wait", "--for=condition=Established", "crd/cdcpipelines.casscdc.io",
          "crd/tablereplications.casscdc.io", "--timeout=60s")  # fmt: skip
    return c
