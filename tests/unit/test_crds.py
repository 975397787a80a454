"""crds/ is generated from the pydantic models and must not drift from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cdc_operator.crdgen import crds, render, render_chart_files

CRDS = Path(__file__).resolve().parents[2] / "crds"
CHART_FILES = Path(__file__).resolve().parents[2] / "charts" / "cass-cdc-pg" / "files"


def test_committed_crds_match_the_models() -> None:
    for name, text in render().items():
        path = CRDS / name
        assert path.exists(), f"{path} missing: run `cdc-operator crds`"
        assert path.read_text() == text, f"{path} drifted from the models: run `cdc-operator crds`"
    for name, text in render_chart_files().items():
        path = CHART_FILES / name
        assert path.exists(), f"{path} missing: run `cdc-operator crds`"
        assert path.read_text() == text, f"{path} drifted: run `cdc-operator crds`"


def test_crd_reference_matches_the_models() -> None:
    from cdc_operator.crddocs import render as render_docs

    path = CRDS.parent / "docs" / "crd-reference.md"
    assert path.read_text() == render_docs(), f"{path} drifted: run `cdc-operator crds`"


def _walk(node: Any, path: str = "") -> list[str]:
    """Places that would make a schema non-structural."""
    bad: list[str] = []
    if isinstance(node, dict):
        for key in ("$ref", "anyOf", "oneOf", "allOf", "const", "title"):
            if key in node:
                bad.append(f"{path}.{key}")
        if node.get("x-kubernetes-preserve-unknown-fields"):
            bad.append(f"{path} preserves unknown fields")
        if "properties" in node and node.get("type") != "object":
            bad.append(f"{path} has properties but no type: object")
        if node.get("additionalProperties") is False:
            bad.append(f"{path}.additionalProperties false")
        for k, v in node.get("properties", {}).items():
            if "type" not in v:
                bad.append(f"{path}.{k} has no type")
            bad += _walk(v, f"{path}.{k}")
        for k in ("items", "additionalProperties"):
            if isinstance(node.get(k), dict):
                bad += _walk(node[k], f"{path}[{k}]")
    return bad


def test_schemas_are_structural_and_carry_cel_rules() -> None:
    for plural, crd in crds().items():
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        assert _walk(schema) == [], plural
        text = yaml.safe_dump(schema)
        assert "x-kubernetes-validations" in text
    pipeline = crds()["cdcpipelines"]["spec"]
    assert pipeline["names"]["shortNames"] == ["cdcp"]
    assert pipeline["names"]["categories"] == ["casscdc"]
    assert pipeline["versions"][0]["subresources"]["scale"]["specReplicasPath"] == (
        ".spec.worker.replicas"
    )
    cols = [c["name"] for c in pipeline["versions"][0]["additionalPrinterColumns"]]
    assert cols == ["Ready", "Reason", "Tables", "Workers", "Lag", "Agents", "Age"]
    tr = crds()["tablereplications"]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in tr] == [
        "Pipeline",
        "Source",
        "Target",
        "Ready",
        "Lag",
        "In-Sync",
        "Last-Event",
        "Age",
    ]
