"""One Pod: a thread that runs its containers and reports its status until the Pod is gone.

The loop and the Pod's end (SIGTERM, grace, SIGKILL, `buildah rm`, then the object is deleted
with grace 0, as a kubelet does); the details live in the mixins (volumes, env, containers,
probes, status).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from .api import ApiError
from .base import SHUTDOWN_GRACE_CAP, VOLUME_RESYNC, Obj, log, now_rfc3339
from .envs import PodEnv
from .lifecycle import PodContainers
from .probes import PodProbes
from .runtime import Container
from .status import PodStatus
from .volumes import PodVolumes

if TYPE_CHECKING:
    from .agent import Agent


class PodWorker(PodVolumes, PodEnv, PodContainers, PodProbes, PodStatus, threading.Thread):
    """Runs one Pod's containers and reports its status until the Pod is gone."""

    def __init__(self, agent: Agent, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.api = agent, agent.api
        self.pod = pod
        self.seen_at = time.monotonic()  # when the agent first saw it bound here
        self.uid: str = meta["uid"]
        self.start_time = now_rfc3339()
        self.ns: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.dir = agent.state / "pods" / self.uid
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        (self.dir / "pod").write_text(f"{self.ns}/{self.pod_name}\n")
        spec = pod["spec"]
        self.inits = [Container(c, self.dir, init=True) for c in spec.get("initContainers") or []]
        self.containers = [Container(c, self.dir) for c in spec.get("containers") or []]
        # A Pod this node ran before the agent restarted: its processes were stopped, so the
        # containers start again and count as restarted.
        status = pod.get("status") or {}
        prev = {
            s["name"]: s
            for s in (status.get("containerStatuses") or [])
            + (status.get("initContainerStatuses") or [])
        }
        for c in self.inits + self.containers:
            p = prev.get(c.name)
            if p and ({"running", "terminated"} & set(p.get("state") or {})):
                c.restarts = int(p.get("restartCount", 0)) + 1
                c.last_state = (
                    {"terminated": p["state"]["terminated"]}
                    if ("terminated" in (p.get("state") or {}))
                    else {}
                )
        # Its own address (kept across an agent restart): see podnet.
        self.pod_ip = agent.pod_ips.assign(self.uid, status.get("podIP"))
        if status.get("startTime"):
            self.start_time = status["startTime"]
        self.stop_event = threading.Event()
        self.deleted = False  # the Pod object is gone (force-deleted): nothing to report
        self.volumes_ready = False
        self.volume_error: str | None = None
        self.mounts: dict[str, Path] = {}
        self.token_expiry: dict[str, float] = {}
        self.last_volume_sync = 0.0
        self.last_status: Obj | None = None
        self.transitions: dict[str, tuple[str, str]] = {}
        self.events_sent: set[str] = set()
        self.last_status_json = ""

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/pods/{self.pod_name}"

    # -- the loop --

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                try:
                    self.sync()
                except Exception as e:  # keep the pod's thread alive; report and retry
                    log(f"{self.ns}/{self.pod_name}: sync error: {e}")
                    traceback.print_exc(file=sys.stdout)
                self.stop_event.wait(self.next_wait())
        finally:
            try:
                self.shutdown()
            finally:
                self.agent.pod_ips.release(self.uid)

    def next_wait(self) -> float:
        """Until the next tick: 0.5 s, or sooner when a probe is due (a probe waiting for the
        next tick was up to 0.5 s late, and the Pod's readiness with it)."""
        now, wait = time.monotonic(), 0.5
        for c in self.inits + self.containers:
            if c.popen is not None:
                for kind, p in c.probes.items():
                    if (kind == "startupProbe") != c.started:  # the ones probe_all runs
                        wait = min(wait, p.next_at - now)
        return max(wait, 0.02)

    def terminate(self, deleted: bool = False) -> None:
        self.deleted = self.deleted or deleted
        self.stop_event.set()

    def grace(self) -> float:
        meta = self.pod["metadata"]
        g = meta.get("deletionGracePeriodSeconds")
        if g is None:
            g = self.pod["spec"].get("terminationGracePeriodSeconds", 30)
        g = float(g)
        return min(g, SHUTDOWN_GRACE_CAP) if self.agent.stopping else g

    def shutdown(self) -> None:
        grace = self.grace()
        every = [c for c in self.inits + self.containers if c.popen is not None]
        if any(c.alive() for c in every):
            self.event("Normal", "Killing", f"Stopping containers (grace {grace:.0f}s)")
        threads = [threading.Thread(target=c.stop, args=(grace,)) for c in every]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for c in self.inits + self.containers:
            self.reap(c, stopping=True)
            c.remove_ctr()
        if self.deleted:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        if self.pod["metadata"].get("deletionTimestamp"):
            self.report()
            # The kubelet's last word: the containers are gone, the object may go too.
            with contextlib.suppress(ApiError, OSError):
                self.api.call(
                    "DELETE",
                    self.path,
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                     "preconditions": {"uid": self.uid}},
                )  # fmt: skip
            shutil.rmtree(self.dir, ignore_errors=True)
        else:  # the agent stops: say the truth (containers not running, pod not ready)
            with contextlib.suppress(ApiError, OSError):
                self.report(force=True)

    def sync(self) -> None:
        if self.pod["metadata"].get("deletionTimestamp"):
            self.stop_event.set()
            return
        now = time.monotonic()
        if not self.volumes_ready or now - self.last_volume_sync > VOLUME_RESYNC:
            self.sync_volumes()
        if self.volumes_ready:
            for c in self.inits:
                if not c.done:
                    self.tick(c)
                    break
            else:
                for c in self.containers:
                    self.tick(c)
        self.report()

    # -- volumes --
