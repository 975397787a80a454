"""docs/crd-reference.md, generated from the same models as the CRDs (`cdc-operator crds`)."""

from __future__ import annotations

from typing import Any

from cdc_operator.crdgen import crds


def _rows(schema: dict[str, Any], path: str, required: set[str]) -> list[str]:
    out: list[str] = []
    for name, prop in schema.get("properties", {}).items():
        p = f"{path}.{name}" if path else name
        typ = prop.get("type", "")
        if typ == "array":
            typ = f"array of {prop.get('items', {}).get('type', 'object')}"
        if typ == "object" and "additionalProperties" in prop:
            typ = f"map of {prop['additionalProperties'].get('type', 'object')}"
        rules = []
        if "enum" in prop:
            rules.append("one of " + ", ".join(f"`{v}`" for v in prop["enum"]))
        for k, label in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"),
                         ("maxLength", "length ≤"), ("minItems", "items ≥"),
                         ("maxItems", "items ≤")):  # fmt: skip
            if k in prop:
                rules.append(f"{label} {prop[k]}")
        if "pattern" in prop:
            rules.append(f"pattern `{prop['pattern']}`")
        rules += [f"CEL: {v['message']}" for v in prop.get("x-kubernetes-validations", [])]
        default = f"`{prop['default']}`" if "default" in prop else ""
        req = "yes" if name in required else ""
        desc = prop.get("description", "").replace("\n", " ").replace("|", "\\|")
        out.append(f"| `{p}` | {typ} | {req} | {default} | {'; '.join(rules)} | {desc} |")
        if prop.get("type") == "object" and "properties" in prop:
            out += _rows(prop, p, set(prop.get("required", [])))
        if prop.get("type") == "array" and "properties" in prop.get("items", {}):
            out += _rows(prop["items"], f"{p}[]", set(prop["items"].get("required", [])))
    return out


def render() -> str:
    lines = [
        "# CRD reference",
        "",
        "Generated from `operator/cdc_operator/models.py` by `cdc-operator crds`; do not edit.",
        "API group `casscdc.io`, version `v1alpha1`. Examples: `examples/shop-pipeline.yaml`.",
    ]
    for crd in crds().values():
        names = crd["spec"]["names"]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        lines += ["", f"## {names['kind']}", "",
                  f"`kubectl get {names['plural']}` (short name `{names['shortNames'][0]}`, "
                  f"category `casscdc`). {schema.get('description', '')}", ""]  # fmt: skip
        for rule in schema["properties"]["spec"].get("x-kubernetes-validations", []):
            lines.append(f"- CEL on `spec`: {rule['message']}")
        columns = [f"{c['name']} (`{c['jsonPath']}`)" for c in version["additionalPrinterColumns"]]
        lines += ["", "Printer columns: " + ", ".join(columns), ""]
        for part in ("spec", "status"):
            sub = schema["properties"][part]
            lines += [f"### {part}", "", "| field | type | required | default | validation | "
                      "description |", "|---|---|---|---|---|---|"]  # fmt: skip
            lines += _rows(sub, "", set(sub.get("required", [])))
            lines.append("")
    lines += [
        "## Conditions (status.conditions)",
        "",
        "metav1.Condition shape (`type`, `status`, `reason`, `message`, `lastTransitionTime`, "
        "`observedGeneration`). CdcPipeline: `Ready` (summary: the first required condition "
        "that is not True gives its reason; `Paused` when paused), `SecretsReady`, `TopicsReady`, "
        "`CassandraReady` (with `manageTableCdc`), `ConnectorConfigured`, `WorkersAvailable`, "
        "`Paused` (reason `PauseFlagSet` or `ScaledToZero`). TableReplication: `Ready` "
        "(`Replicating` when its pipeline is Ready).",
        "",
    ]
    return "\n".join(lines)
