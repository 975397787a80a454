"""The worker Deployment's probes: readiness often enough that it does not hold apply → Ready
back, liveness patient enough not to restart a worker that is still starting."""

from __future__ import annotations

from cdc_operator.builders import manifests
from tests.unit.test_operator_builders import OWNER, SPEC


def test_readiness_every_second_liveness_after_a_grace() -> None:
    dep = manifests.worker_deployment("ns", "shop", OWNER, SPEC, "c", "s", ["X"], 1)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    ready, live = c["readinessProbe"], c["livenessProbe"]
    assert ready["httpGet"] == {"path": "/readyz", "port": "http"}
    assert ready["periodSeconds"] == 1
    assert ready.get("initialDelaySeconds", 0) == 0
    assert live["httpGet"] == {"path": "/healthz", "port": "http"}
    assert live["initialDelaySeconds"] >= 10
    assert live["failureThreshold"] * live["periodSeconds"] >= 30
