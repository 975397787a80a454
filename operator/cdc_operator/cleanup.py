"""`cdc-operator cleanup`: delete every pipeline and table, and wait until they are gone.

Run by the chart's pre-delete hook while the operator still runs, so that its
finalizer can finish (otherwise the objects would keep their finalizer forever
and block their namespaces' deletion).
"""

from __future__ import annotations

import sys
import time
from typing import Any, cast

from kubernetes import client

from cdc_operator.appliers.kube import load_config
from cdc_operator.models import GROUP, VERSION

KINDS = ("tablereplications", "cdcpipelines")


def cleanup(namespaces: list[str], timeout: float = 240.0) -> int:
    api = client.CustomObjectsApi(load_config())

    def remaining() -> list[tuple[str, str, str]]:
        out = []
        for plural in KINDS:
            if namespaces:
                items = []
                for ns in namespaces:
                    listed = api.list_namespaced_custom_object(GROUP, VERSION, ns, plural)
                    items += cast(dict[str, Any], listed)["items"]
            else:
                listed = api.list_cluster_custom_object(GROUP, VERSION, plural)
                items = cast(dict[str, Any], listed)["items"]
            out += [(plural, i["metadata"]["namespace"], i["metadata"]["name"]) for i in items]
        return out

    for plural, ns, name in remaining():
        try:
            api.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
        except client.ApiException as e:
            if e.status != 404:
                raise
        print(f"deleting {plural}/{ns}/{name}")
    deadline = time.monotonic() + timeout
    while (left := remaining()) and time.monotonic() < deadline:
        time.sleep(2)
    if left:
        print(f"still present after {timeout:.0f}s: {left}", file=sys.stderr)
        return 1
    return 0
