"""kwok in the stack and the benchmark's placement of Pods on its nodes (no cluster needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from placement import KWOK_NODE, LABEL, TAINT_KEY, policy

from stackctl.cli import DEFAULT_UP, _ordered, _with_dependents
from stackctl.kwok import ANNOTATION, node_manifest
from stackctl.kwok import KWOK_NODE as STACK_KWOK_NODE

REPO = Path(__file__).resolve().parents[2]


def test_kwok_is_optional_needs_k8s_and_stops_alone() -> None:
    assert "kwok" not in DEFAULT_UP
    names = [c.name for c in _ordered(["kwok"])]
    assert names[-1] == "kwok"
    assert "k8s" in names
    assert "node" not in names  # the fake node does not need the local one
    assert [c.name for c in _with_dependents(["kwok"])] == ["kwok"]
    assert "kwok" in [c.name for c in _with_dependents(["k8s"])]


def test_the_fake_node_is_managed_by_kwok_and_tainted() -> None:
    node = node_manifest()
    meta = node["metadata"]
    assert isinstance(meta, dict)
    assert meta["name"] == STACK_KWOK_NODE == KWOK_NODE
    assert meta["annotations"][ANNOTATION] == "fake"
    assert node["spec"] == {"taints": [{"key": ANNOTATION, "value": "fake",
                                        "effect": "NoSchedule"}]}  # fmt: skip


def test_build_script_pins_a_version_and_the_stages() -> None:
    out = subprocess.run(["bash", str(REPO / "hack/k8s/kwok.sh"), "--print"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    kv = dict(line.split("=", 1) for line in out.splitlines())
    assert kv["KWOK_VERSION"].startswith("v0.")
    assert kv["KWOK_BIN"].endswith(f"kwok-{kv['KWOK_VERSION']}/bin")
    assert kv["KWOK_STAGES"] == kv["KWOK_BIN"] + "/stages.yaml"


def test_placement_policy_targets_one_node_for_labelled_namespaces() -> None:
    mutating, binding = policy(KWOK_NODE)
    assert mutating["kind"] == "MutatingAdmissionPolicy"
    (rule,) = mutating["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["pods"]
    assert rule["operations"] == ["CREATE"]
    (mutation,) = mutating["spec"]["mutations"]
    assert mutation["patchType"] == "JSONPatch"
    expression = mutation["jsonPatch"]["expression"]
    assert f'"kubernetes.io/hostname": "{KWOK_NODE}"' in expression
    assert TAINT_KEY in expression
    assert ANNOTATION in expression
    assert binding["spec"]["policyName"] == mutating["metadata"]["name"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchLabels": {LABEL: KWOK_NODE}
    }
