"""What the node tells the API server about a Pod: its status (merge patch) and its Events.

Phase, conditions with their transition times, container statuses; written only when changed.
"""

from __future__ import annotations

import hashlib
import json
import time

from .api import ApiError
from .base import Obj, log, now_rfc3339
from .runtime import Container


class PodStatus:
    """Mixed into PodWorker: the Pod's status and Events."""

    def container_status(self, c: Container) -> Obj:
        state: Obj
        if c.popen is not None:
            state = {"running": {"startedAt": c.started_at}}
        elif c.terminated is not None:
            state = {"terminated": c.terminated}
        else:
            reason, msg = c.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": msg} if msg else {})}}
        st: Obj = {
            "name": c.name,
            "image": c.spec["image"],
            "imageID": c.image_id,
            "ready": c.ready and c.popen is not None,
            "restartCount": c.restarts,
            "started": c.popen is not None and c.started,
            "state": state,
            "lastState": c.last_state,
        }
        if c.ctr:
            st["containerID"] = f"buildah://{c.ctr}"
        return st

    def _cond(self, ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        prev = self.transitions.get(ctype)
        if prev is None or prev[0] != status:
            self.transitions[ctype] = (status, now_rfc3339())
        since = self.transitions[ctype][1]
        c: Obj = {"type": ctype, "status": status, "lastTransitionTime": since}
        if reason:
            c["reason"] = reason
        if message:
            c["message"] = message
        return c

    def status(self) -> Obj:
        inits_done = all(c.done and (c.terminated or {}).get("exitCode") == 0 for c in self.inits)
        cs = [self.container_status(c) for c in self.containers]
        ready = inits_done and all(s["ready"] for s in cs) and bool(cs)
        policy = self.pod["spec"].get("restartPolicy", "Always")
        init_failed = any(
            c.done and (c.terminated or {}).get("exitCode", 0) != 0 for c in self.inits
        )
        if init_failed:
            phase = "Failed"
        elif cs and all(c.done for c in self.containers):
            codes = [(c.terminated or {}).get("exitCode", 1) for c in self.containers]
            phase = "Succeeded" if all(x == 0 for x in codes) else "Failed"
        elif inits_done and any(c.popen is not None for c in self.containers):
            phase = "Running"
        elif (
            inits_done
            and all(c.restarts > 0 or c.done for c in self.containers)
            and (policy != "Never")
        ):
            phase = "Running"  # restarting (CrashLoopBackOff) counts as running
        else:
            phase = "Pending"
        not_ready = [s["name"] for s in cs if not s["ready"]]
        msg = f"containers with unready status: [{' '.join(not_ready)}]" if not_ready else ""
        scheduled = next(
            (x for x in self.pod.get("status", {}).get("conditions") or []
             if x.get("type") == "PodScheduled"),
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": self.start_time,
             "lastProbeTime": None},
        )  # fmt: skip
        conditions = [
            self._cond("PodReadyToStartContainers", self.volumes_ready),
            self._cond("Initialized", inits_done, "" if inits_done else "ContainersNotInitialized"),
            self._cond("Ready", ready, "" if ready else "ContainersNotReady", msg),
            self._cond("ContainersReady", ready, "" if ready else "ContainersNotReady", msg),
            scheduled,
        ]
        st: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": cs,
            "qosClass": self.pod.get("status", {}).get("qosClass", "BestEffort"),
        }
        if self.inits:
            st["initContainerStatuses"] = [self.container_status(c) for c in self.inits]
        if self.volume_error:
            st["message"] = self.volume_error
        return st

    def report(self, force: bool = False) -> None:
        st = self.status()
        if force:
            for s in st["containerStatuses"] + st.get("initContainerStatuses", []):
                s["ready"] = False
                if "running" in s["state"]:
                    s["state"] = {"terminated": {"exitCode": 143, "reason": "Error",
                                                 "message": "the node agent stopped"}}  # fmt: skip
            for cond in st["conditions"]:
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond.update(status="False", reason="NodeAgentStopped",
                                message="the local node's agent is not running")  # fmt: skip
        comparable = json.dumps(st, sort_keys=True)
        if comparable == self.last_status_json and not force:
            return
        try:
            res = self.api.merge_patch(self.path + "/status", {"status": st})
            self.pod["status"] = res.get("status", st)
            self.last_status_json = comparable
        except ApiError as e:
            if e.status == 404:
                self.terminate(deleted=True)
            else:
                log(f"{self.ns}/{self.pod_name}: status update failed: {e}")

    def event(self, etype: str, reason: str, message: str, once: bool = False) -> None:
        key = f"{reason}:{message}"
        if once and key in self.events_sent:
            return
        self.events_sent.add(key)
        name = f"{self.pod_name}.{hashlib.sha1(f'{key}{time.time()}'.encode()).hexdigest()[:12]}"  # noqa: S324
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": self.ns},
            "involvedObject": {"kind": "Pod", "namespace": self.ns, "name": self.pod_name,
                               "uid": self.uid, "apiVersion": "v1"},
            "reason": reason,
            "message": message,
            "type": etype,
            "source": {"component": "local-node-agent", "host": self.agent.node},
            "firstTimestamp": now_rfc3339(),
            "lastTimestamp": now_rfc3339(),
            "count": 1,
            "reportingComponent": "local-node-agent",
            "reportingInstance": self.agent.node,
        }  # fmt: skip
        try:
            self.api.call("POST", f"/api/v1/namespaces/{self.ns}/events", body)
        except (ApiError, OSError) as e:
            log(f"event {reason} for {self.ns}/{self.pod_name} not recorded: {e}")
