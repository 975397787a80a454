"""Generate the CustomResourceDefinitions from the pydantic models (`cdc-operator crds`).

Pydantic's JSON Schema is turned into a structural OpenAPI v3 schema: `$ref`s
inlined, `Optional` unwrapped (absent instead of null), titles dropped,
`additionalProperties: false` removed (the API server prunes unknown fields),
and the models' CEL rules kept as `x-kubernetes-validations`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from cdc_operator.models import (
    GROUP,
    VERSION,
    CdcPipelineSpec,
    CdcPipelineStatus,
    TableReplicationSpec,
    TableReplicationStatus,
)

_KEEP = {
    "type", "properties", "items", "required", "description", "default", "enum", "pattern",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "additionalProperties", "x-kubernetes-validations", "format",
}  # fmt: skip


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union {node['anyOf']} structurally")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged = {**_structural(options[0], defs), **_structural(rest, defs)}
        if merged.get("default", 0) is None:
            merged.pop("default")
        return merged
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k not in _KEEP:
            continue
        if k == "properties":
            out[k] = {name: _structural(p, defs) for name, p in v.items()}
        elif k == "additionalProperties":
            if isinstance(v, dict):
                out[k] = _structural(v, defs)
        elif k == "items":
            out[k] = _structural(v, defs)
        elif k == "default" and v is None:
            continue
        else:
            out[k] = v
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    js = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(js, js.get("$defs", {}))  # type: ignore[no-any-return]


def _crd(
    kind: str,
    plural: str,
    short: str,
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[dict[str, str]],
    scale: dict[str, str] | None,
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": [short], "categories": ["casscdc"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": subresources,
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": (spec.__doc__ or "").strip().splitlines()[0],
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": schema_of(spec), "status": schema_of(status),
                    },
                }},
            }],
        },
    }  # fmt: skip


def _cond(field: str, type_: str = "Ready") -> str:
    return f'.status.conditions[?(@.type=="{type_}")].{field}'


def crds() -> dict[str, dict[str, Any]]:
    age = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    return {
        "cdcpipelines": _crd(
            "CdcPipeline", "cdcpipelines", "cdcp", CdcPipelineSpec, CdcPipelineStatus,
            [{"name": "Ready", "type": "string", "jsonPath": _cond("status")},
             {"name": "Reason", "type": "string", "jsonPath": _cond("reason")},
             {"name": "Tables", "type": "integer", "jsonPath": ".status.tables"},
             {"name": "Workers", "type": "string", "jsonPath": ".status.workerSummary"},
             {"name": "Lag", "type": "integer", "jsonPath": ".status.lag.events"},
             {"name": "Agents", "type": "string", "jsonPath": ".status.agents"},
             age],
            {"specReplicasPath": ".spec.worker.replicas",
             "statusReplicasPath": ".status.workers.ready"},
        ),
        "tablereplications": _crd(
            "TableReplication", "tablereplications", "tr", TableReplicationSpec,
            TableReplicationStatus,
            [{"name": "Pipeline", "type": "string", "jsonPath": ".spec.pipelineRef.name"},
             {"name": "Source", "type": "string", "jsonPath": ".status.source"},
             {"name": "Target", "type": "string", "jsonPath": ".status.target"},
             {"name": "Ready", "type": "string", "jsonPath": _cond("status")},
             {"name": "Lag", "type": "integer", "jsonPath": ".status.lag.events"},
             {"name": "In-Sync", "type": "string", "jsonPath": _cond("status", "InSync")},
             {"name": "Last-Event", "type": "date", "jsonPath": ".status.lastEventTime"},
             age],
            None,
        ),
    }  # fmt: skip


def render() -> dict[str, str]:
    """File name → YAML text, exactly as committed under crds/."""
    header = (
        "# Generated from operator/cdc_operator/models.py by `cdc-operator crds`; do not edit.\n"
    )
    return {
        f"{GROUP}_{plural}.yaml": header
        + yaml.safe_dump(doc, sort_keys=False, width=100, allow_unicode=True)
        for plural, doc in crds().items()
    }


def render_chart_files() -> dict[str, str]:
    """Files the Helm chart ships (charts/cass-cdc-pg/files/): CRDs and the RBAC rules."""
    from cdc_operator.rbac import CLUSTER_RULES, RULES

    header = "# Generated by `cdc-operator crds` from the operator's models; do not edit.\n"
    out = {f"crds/{name}": text for name, text in render().items()}
    out["rbac-rules.yaml"] = header + yaml.safe_dump(
        {"namespaced": RULES, "cluster": CLUSTER_RULES}, sort_keys=False, width=100
    )
    return out


def write(
    directory: Path, chart_files: Path | None = None, reference: Path | None = None
) -> list[Path]:
    out = []
    targets = [(directory, render())]
    if reference is not None:
        from cdc_operator.crddocs import render as render_docs

        targets.append((reference.parent, {reference.name: render_docs()}))
    if chart_files is not None:
        targets.append((chart_files, render_chart_files()))
    for base, files in targets:
        for name, text in files.items():
            path = base / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            out.append(path)
    return out
