"""Where apply → Ready goes: the first moment each step of a pipeline's rollout is seen.

Watches (not polls: `kubectl get` every 0.1 s cost the two shared cores more than the thing
measured) a namespace's CdcPipelines, Deployments and Pods from threads and records, per
pipeline, the wall-clock time each milestone was first seen: the worker Deployment created,
its Pod created, scheduled, its container running, the Pod Ready, the Deployment available,
the pipeline Ready=True. The worker's own phases (imports, connections, Kafka's answer, the
first ready answer) come from its `worker_ready` log line (cdc_worker/startup.py).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from typing import Any

from kubernetes import client, config, watch  # type: ignore[import-untyped]

LABEL = "app.kubernetes.io/instance"


class Timeline:
    def __init__(self, kubeconfig: str, ns: str) -> None:
        self.api = client.ApiClient(config.new_client_from_config(kubeconfig).configuration)
        self.ns = ns
        self.seen: dict[str, dict[str, float]] = {}
        self.pods: dict[str, str] = {}  # pipeline -> its worker Pod's name
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stopping = False
        core, apps = client.CoreV1Api(self.api), client.AppsV1Api(self.api)
        custom = client.CustomObjectsApi(self.api)
        self.threads = [
            threading.Thread(target=self._watch, args=(core.list_namespaced_pod, self._pod),
                             daemon=True),
            threading.Thread(target=self._watch,
                             args=(apps.list_namespaced_deployment, self._deployment),
                             daemon=True),
            threading.Thread(target=self._watch, args=(
                lambda **kw: custom.list_namespaced_custom_object(
                    "casscdc.io", "v1alpha1", kw.pop("namespace"), "cdcpipelines", **kw),
                self._pipeline), daemon=True),
        ]  # fmt: skip
        for t in self.threads:
            t.start()

    def _mark(self, pipeline: str, what: str) -> None:
        with self.lock:
            self.seen.setdefault(pipeline, {}).setdefault(what, time.time())
            self.changed.notify_all()

    def _watch(self, lister: Any, handle: Any) -> None:
        while not self.stopping:
            try:
                w = watch.Watch()
                for ev in w.stream(lister, namespace=self.ns, timeout_seconds=60):
                    obj = ev.get("raw_object") or ev["object"]
                    if ev["type"] != "DELETED":
                        handle(obj)
                    if self.stopping:
                        return
            except Exception:  # a dropped watch is restarted
                time.sleep(0.2)

    def _pod(self, pod: dict[str, Any]) -> None:
        p = (pod["metadata"].get("labels") or {}).get(LABEL)
        if not p or pod["metadata"].get("deletionTimestamp"):
            return
        with self.lock:
            self.pods.setdefault(p, pod["metadata"]["name"])
        self._mark(p, "pod_created")
        if pod["spec"].get("nodeName"):
            self._mark(p, "pod_scheduled")
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if "running" in (cs.get("state") or {}):
                self._mark(p, "container_running")
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                self._mark(p, "pod_ready")

    def _deployment(self, d: dict[str, Any]) -> None:
        p = (d["metadata"].get("labels") or {}).get(LABEL)
        if not p:
            return
        self._mark(p, "deployment_created")
        if (d.get("status") or {}).get("availableReplicas", 0) >= 1:
            self._mark(p, "deployment_available")

    def _pipeline(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        self._mark(name, "pipeline_seen")
        st = obj.get("status") or {}
        for c in st.get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                self._mark(name, "pipeline_ready")

    def wait(self, pipeline: str, what: str, timeout: float) -> float:
        """The time `what` was first seen for `pipeline` (waiting up to `timeout`)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while what not in self.seen.get(pipeline, {}):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{pipeline}: {what} not seen in {timeout:.0f}s")
                self.changed.wait(left)
            return self.seen[pipeline][what]

    def stop(self) -> None:
        self.stopping = True


def _stamp(rec: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()


def worker_phases(log_text: str) -> tuple[float, dict[str, float]] | None:
    """(wall time of exec, phases in seconds since exec) from the worker's `worker_ready` line,
    plus its first assignment (the consumer group's first rebalance, which readiness no longer
    waits for) when it came before the log was read."""
    recs = [json.loads(ln[ln.index("{"):]) for ln in log_text.splitlines()
            if '"worker_ready"' in ln or '"partitions_assigned"' in ln]  # fmt: skip
    ready = next((r for r in recs if r["event"] == "worker_ready"), None)
    if ready is None:
        return None
    marks: dict[str, float] = dict(ready["seconds_since_exec"])
    exec_at = _stamp(ready) - marks["first_ready_answer"]
    assigned = next((r for r in recs if r["event"] == "partitions_assigned"), None)
    if assigned is not None:
        marks["first_assignment"] = round(_stamp(assigned) - exec_at, 3)
    return exec_at, marks
