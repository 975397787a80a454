"""The local node's agent: a small kubelet that runs Pods from the local image store with buildah.

Started by `hack/stack up node` (hack/stackctl/node.py) as one PID-managed process:

    python3 -m stackctl.nodeagent --state <dir> --node local-node --kubeconfig-dir <pki>

It registers the Node (Ready, allocatable cpu/memory/pods, InternalIP 127.0.0.1), renews its
Lease in kube-node-lease every 10 s, and every second lists the Pods the scheduler bound to it.
For each Pod a thread materialises its volumes (ConfigMap, Secret, projected service-account
token from a TokenRequest bound to the Pod, downward API, emptyDir, hostPath), resolves the
env (value, valueFrom secretKeyRef/configMapKeyRef/fieldRef, envFrom), and runs every container
as `buildah run --isolation chroot` in a fresh working container made from the image
(`buildah from --pull-never`): host network, the volumes bind-mounted at their paths. It
probes readiness/liveness/startup (httpGet, tcpSocket, exec), restarts per restartPolicy with
the kubelet's back-off, and writes the Pod's status. A deleted Pod's processes get SIGTERM, then
SIGKILL after the grace period, and the Pod object is then removed. Every process is recorded by
PID and start time (<state>/pods/<uid>/<container>.pid), so a restarted agent stops what an
earlier one left behind, by PID only.

It authenticates as the node itself (client certificate CN=system:node:<name>, O=system:nodes),
so the Node authorizer and NodeRestriction apply to it as to a real kubelet. Standard library
only, like the rest of hack/stack. See docs/local-node.md.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core import Proc, _start_time

Obj = dict[str, Any]

STORAGE_DRIVER = os.environ.get("IMAGE_STORAGE_DRIVER", "overlay")
SYNC_INTERVAL = 1.0
LEASE_INTERVAL = 10.0
NODE_STATUS_INTERVAL = 60.0
LEASE_SECONDS = 40
TOKEN_REFRESH_FRACTION = 0.8
VOLUME_RESYNC = 15.0
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0
SHUTDOWN_GRACE_CAP = 20.0


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} node-agent: {msg}", flush=True)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- the API server -------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


class Api:
    """A JSON client of the API server with the node's client certificate."""

    def __init__(self, server: str, ca: Path, cert: Path, key: Path) -> None:
        self.server = server.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=str(ca))
        self.ctx.load_cert_chain(str(cert), str(key))

    def call(
        self,
        method: str,
        path: str,
        body: Obj | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 15.0,
    ) -> Obj:
        url = self.server + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)  # noqa: S310
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ctx) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace")) from None
        return json.loads(raw) if raw else {}

    def get(self, path: str, **kw: Any) -> Obj:
        return self.call("GET", path, **kw)

    def merge_patch(self, path: str, body: Obj) -> Obj:
        return self.call("PATCH", path, body, content_type="application/merge-patch+json")


# ---- buildah --------------------------------------------------------------------------------


def buildah(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        ["buildah", "--storage-driver", STORAGE_DRIVER, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"buildah {' '.join(args[:3])} failed: {res.stderr.strip()[-500:]}")
    return res


def image_info(image: str) -> Obj | None:
    """The image's id and OCI config if it is in the local store, else None."""
    res = buildah("inspect", "--type", "image", image, check=False)
    if res.returncode != 0:
        return None
    info = json.loads(res.stdout)
    cfg = (info.get("OCIv1") or {}).get("config") or {}
    return {"id": info.get("FromImageID", ""), "name": info.get("FromImage", image), "config": cfg}


# ---- helpers for specs ----------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are substituted, $$ escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, text)


def field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        d = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    _ = status
    raise ValueError(f"unsupported fieldRef {path}")


class ConfigError(Exception):
    """The container cannot be configured yet (missing Secret/ConfigMap, bad reference)."""


def write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)


# ---- a container ----------------------------------------------------------------------------


@dataclass
class Probe:
    spec: Obj
    successes: int = 0
    failures: int = 0
    next_at: float = 0.0

    def reset(self, started: float) -> None:
        self.successes = self.failures = 0
        self.next_at = started + float(self.spec.get("initialDelaySeconds", 0))


@dataclass
class Container:
    spec: Obj
    pod_dir: Path
    init: bool = False
    popen: subprocess.Popen[bytes] | None = None
    ctr: str | None = None
    image_id: str = ""
    image_name: str = ""
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    running_since: float | None = None
    started_at: str | None = None
    terminated: Obj | None = None
    last_state: Obj = field(default_factory=dict)
    restarts: int = 0
    ready: bool = False
    started: bool = False
    backoff: float = 0.0
    backoff_until: float = 0.0
    done: bool = False  # will not run again (terminal per restartPolicy, or a finished init)
    probes: dict[str, Probe] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def pid_proc(self) -> Proc:
        return Proc(self.name, self.pod_dir)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def workload_pid(self) -> int | None:
        """The process buildah-chroot-exec runs: the container's own command."""
        if self.popen is None:
            return None
        todo, seen = [self.popen.pid], set()
        while todo:
            pid = todo.pop()
            seen.add(pid)
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            kids = _children(pid)
            if argv0.endswith(b"buildah-chroot-exec"):
                return kids[0] if kids else None
            todo.extend(k for k in kids if k not in seen)
        return None

    def stop(self, grace: float) -> None:
        """SIGTERM to the container's process, SIGKILL to the whole group after `grace`."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            target = self.workload_pid()
            with contextlib.suppress(ProcessLookupError):
                os.kill(target or self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=max(grace, 0.1))
            except subprocess.TimeoutExpired:
                log(f"{self.name}: still running after {grace:.0f}s grace; SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=10)
        # The pid file is only removed once the group is gone (an exec probe may linger).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.pid_proc.pid_file.unlink(missing_ok=True)

    def remove_ctr(self) -> None:
        if self.ctr:
            buildah("rm", self.ctr, check=False)
            (self.pod_dir / f"{self.name}.ctr").unlink(missing_ok=True)
            self.ctr = None


def resolve_in_root(root: Path, path: str) -> str:
    """`path` inside the container with its symlinks resolved against the container's root.

    buildah 1.28 resolves a mount target through an absolute symlink in the image (Debian's
    /var/run -> /run) against the host's root, so /var/run/secrets/... would land on the host's
    /run. Giving it the resolved path (/run/secrets/...) keeps the mount inside the container.
    """
    parts = [p for p in path.split("/") if p]
    out: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        here = root.joinpath(*out, part)
        if here.is_symlink():
            hops += 1
            if hops > 40:
                raise ConfigError(f"too many symlinks resolving {path} in the image")
            target = os.readlink(here)
            if target.startswith("/"):
                out = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        out.append(part)
    return "/" + "/".join(out)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(c) for c in (task / "children").read_text().split()]
    return out


# ---- a pod ----------------------------------------------------------------------------------


class PodWorker(threading.Thread):
    """Runs one Pod's containers and reports its status until the Pod is gone."""

    def __init__(self, agent: Agent, pod: Obj) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.agent, self.api = agent, agent.api
        self.pod = pod
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
                self.stop_event.wait(0.5)
        finally:
            self.shutdown()

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

    def sync_volumes(self) -> None:
        self.last_volume_sync = time.monotonic()
        try:
            for vol in self.pod["spec"].get("volumes") or []:
                self.mounts[vol["name"]] = self.materialise(vol)
        except (ConfigError, ApiError, OSError, ValueError) as e:
            msg = f"MountVolume.SetUp failed: {e}"
            if msg != self.volume_error:
                self.event("Warning", "FailedMount", msg)
            self.volume_error = msg
            return
        self.volume_error = None
        self.volumes_ready = True

    def _get(self, kind: str, name: str, optional: bool) -> Obj | None:
        try:
            return self.api.get(f"/api/v1/namespaces/{self.ns}/{kind}/{name}")
        except ApiError as e:
            if e.status == 404 and optional:
                return None
            if e.status in (403, 404):
                raise ConfigError(f'{kind[:-1]} "{name}" not found') from None
            raise

    def _keys(self, obj: Obj | None, kind: str) -> dict[str, bytes]:
        if obj is None:
            return {}
        out: dict[str, bytes] = {}
        if kind == "secrets":
            for k, v in (obj.get("data") or {}).items():
                out[k] = base64.b64decode(v)
        else:
            for k, v in (obj.get("data") or {}).items():
                out[k] = v.encode()
            for k, v in (obj.get("binaryData") or {}).items():
                out[k] = base64.b64decode(v)
        return out

    def _project(
        self, files: dict[str, tuple[bytes, int]], kind: str, src: Obj, default_mode: int
    ) -> None:
        name = src.get("name") or src.get("secretName") or ""
        obj = self._get(kind, name, bool(src.get("optional")))
        data = self._keys(obj, kind)
        items = src.get("items")
        if items:
            for it in items:
                if it["key"] not in data:
                    if src.get("optional"):
                        continue
                    raise ConfigError(f'key "{it["key"]}" not in {kind[:-1]} "{name}"')
                files[it["path"]] = (data[it["key"]], int(it.get("mode", default_mode)))
        else:
            for k, v in data.items():
                files[k] = (v, default_mode)

    def _token(self, src: Obj) -> bytes:
        sa = self.pod["spec"].get("serviceAccountName") or "default"
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [src["audience"]] if src.get("audience") else [],
                "expirationSeconds": int(src.get("expirationSeconds", 3600)),
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.pod_name,
                                   "uid": self.uid},
            },
        }  # fmt: skip
        res = self.api.call(
            "POST", f"/api/v1/namespaces/{self.ns}/serviceaccounts/{sa}/token", body
        )
        exp = dt.datetime.fromisoformat(res["status"]["expirationTimestamp"].replace("Z", "+00:00"))
        ttl = exp.timestamp() - time.time()
        key = src.get("path", "token")
        self.token_expiry[key] = time.monotonic() + ttl * TOKEN_REFRESH_FRACTION
        return str(res["status"]["token"]).encode()

    def materialise(self, vol: Obj) -> Path:
        name = vol["name"]
        target: Path = self.dir / "volumes" / str(name)
        if "emptyDir" in vol:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            return target
        if "hostPath" in vol:
            hp = vol["hostPath"]
            p = Path(hp["path"])
            if hp.get("type") == "DirectoryOrCreate":
                p.mkdir(parents=True, exist_ok=True)
            if not p.exists():
                raise ConfigError(f"hostPath {p} does not exist")
            return p
        files: dict[str, tuple[bytes, int]] = {}
        if "configMap" in vol:
            src = vol["configMap"]
            self._project(files, "configmaps", src, int(src.get("defaultMode", 0o644)))
        elif "secret" in vol:
            src = vol["secret"]
            self._project(files, "secrets", src, int(src.get("defaultMode", 0o644)))
        elif "downwardAPI" in vol:
            src = vol["downwardAPI"]
            mode = int(src.get("defaultMode", 0o644))
            for it in src.get("items") or []:
                if "fieldRef" in it:
                    value = field_ref(self.pod, it["fieldRef"]["fieldPath"])
                    files[it["path"]] = (value.encode(), int(it.get("mode", mode)))
        elif "projected" in vol:
            src = vol["projected"]
            mode = int(src.get("defaultMode", 0o644))
            for s in src.get("sources") or []:
                if "serviceAccountToken" in s:
                    t = s["serviceAccountToken"]
                    path = t.get("path", "token")
                    existing = target / path
                    if existing.exists() and time.monotonic() < self.token_expiry.get(path, 0):
                        files[path] = (existing.read_bytes(), mode)
                    else:
                        files[path] = (self._token(t), mode)
                elif "configMap" in s:
                    self._project(files, "configmaps", s["configMap"], mode)
                elif "secret" in s:
                    self._project(files, "secrets", s["secret"], mode)
                elif "downwardAPI" in s:
                    for it in s["downwardAPI"].get("items") or []:
                        if "fieldRef" in it:
                            value = field_ref(self.pod, it["fieldRef"]["fieldPath"])
                            files[it["path"]] = (value.encode(), int(it.get("mode", mode)))
                else:
                    raise ConfigError(f"projected source {sorted(s)} is not supported here")
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise ConfigError(f"volume {name}: type {kinds} is not supported by the local node")
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o755)
        fs_group = (self.pod["spec"].get("securityContext") or {}).get("fsGroup")
        for rel, (data, fmode) in files.items():
            p = target / rel
            if not p.exists() or p.read_bytes() != data or (p.stat().st_mode & 0o777) != fmode:
                write_file(p, data, fmode | (0o040 if fs_group is not None else 0))
            if fs_group is not None:
                os.chown(p, 0, int(fs_group))
        for p in sorted(target.rglob("*"), reverse=True):  # keys removed from the source
            rel = str(p.relative_to(target))
            if p.is_file() and rel not in files:
                p.unlink()
        return target

    # -- containers --

    def env_for(self, c: Container) -> dict[str, str]:
        spec = c.spec
        env: dict[str, str] = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.agent.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.agent.api_port),
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{self.agent.api_port}",
            "HOSTNAME": self.pod_name,
        }
        for src in spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if key in src:
                    ref = src[key]
                    obj = self._get(kind, ref["name"], bool(ref.get("optional")))
                    for k, v in self._keys(obj, kind).items():
                        env[prefix + k] = v.decode(errors="replace")
        for e in spec.get("env") or []:
            name = e["name"]
            if "valueFrom" not in e:
                env[name] = expand(e.get("value", ""), env)
                continue
            vf = e["valueFrom"]
            if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                kind, ref = (
                    ("secrets", vf["secretKeyRef"])
                    if "secretKeyRef" in vf
                    else ("configmaps", vf["configMapKeyRef"])
                )
                obj = self._get(kind, ref["name"], bool(ref.get("optional")))
                data = self._keys(obj, kind)
                if ref["key"] in data:
                    env[name] = data[ref["key"]].decode(errors="replace")
                elif not ref.get("optional"):
                    what = "secret" if kind == "secrets" else "configmap"
                    raise ConfigError(f"couldn't find key {ref['key']} in {what} {ref['name']}")
            elif "fieldRef" in vf:
                env[name] = field_ref(self.pod, vf["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in vf:
                res = vf["resourceFieldRef"]["resource"]
                kind, _, what = res.partition(".")
                env[name] = str(((spec.get("resources") or {}).get(kind) or {}).get(what, "0"))
            else:
                raise ConfigError(f"env {name}: unsupported valueFrom {sorted(vf)}")
        return env

    def argv_for(self, c: Container, cfg: Obj, env: dict[str, str]) -> list[str]:
        command, args = c.spec.get("command"), c.spec.get("args")
        if command:
            argv = list(command) + list(args or [])
        else:
            argv = list(cfg.get("Entrypoint") or []) + list(
                args if args is not None else (cfg.get("Cmd") or [])
            )
        if not argv:
            raise ConfigError("no command specified (neither in the container nor the image)")
        return [expand(a, env) if (command or args) else a for a in argv]

    def user_for(self, c: Container, cfg: Obj) -> str | None:
        psc = self.pod["spec"].get("securityContext") or {}
        csc = c.spec.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        image_user = str(cfg.get("User") or "")
        effective = uid if uid is not None else image_user.split(":")[0] or "0"
        if non_root:
            if not str(effective).isdigit():
                raise ConfigError(
                    f"container has runAsNonRoot and image has non-numeric user ({effective}), "
                    "cannot verify user is non-root"
                )
            if int(effective) == 0:
                raise ConfigError("container has runAsNonRoot and image will run as root")
        if uid is None and gid is None:
            return None
        if uid is None:
            return f"{image_user.split(':')[0] or '0'}:{gid}"
        return f"{uid}:{gid}" if gid is not None else f"{uid}:{uid}"

    def start_container(self, c: Container) -> None:
        image = c.spec["image"]
        info = image_info(image)
        if info is None:
            policy = c.spec.get("imagePullPolicy", "IfNotPresent")
            reason = "ErrImageNeverPull" if policy == "Never" else "ImagePullBackOff"
            msg = (
                f'image "{image}" is not in the local image store of node {self.agent.node}, '
                "which cannot pull from registries: build it there (make image)"
            )
            if c.waiting != (reason, msg):
                self.event("Warning", reason, msg)
            c.waiting = (reason, msg)
            c.backoff_until = time.monotonic() + 5
            return
        cfg = info["config"]
        try:
            env = self.env_for(c)
            argv = self.argv_for(c, cfg, env)
            user = self.user_for(c, cfg)
        except (ConfigError, ValueError) as e:
            if c.waiting != ("CreateContainerConfigError", str(e)):
                self.event("Warning", "Failed", f"Error: {e}")
            c.waiting = ("CreateContainerConfigError", str(e))
            c.backoff_until = time.monotonic() + 2
            return
        c.remove_ctr()
        ctr_name = f"k8s_{self.agent.node}_{self.ns}_{self.pod_name}_{c.name}_{self.uid[:8]}"
        buildah("rm", ctr_name, check=False)
        c.ctr = buildah("from", "--pull-never", "--name", ctr_name, image).stdout.strip()
        (self.dir / f"{c.name}.ctr").write_text(ctr_name + "\n")
        try:
            mounts = self.mount_args(c, Path(buildah("mount", ctr_name).stdout.strip()))
        except (ConfigError, ValueError) as e:
            c.remove_ctr()
            if c.waiting != ("CreateContainerConfigError", str(e)):
                self.event("Warning", "Failed", f"Error: {e}")
            c.waiting = ("CreateContainerConfigError", str(e))
            c.backoff_until = time.monotonic() + 2
            return
        c.image_id, c.image_name = info["id"], info["name"]
        # The env goes into the working container's config (root-only storage), not into the
        # argv of the long-running `buildah run`, where every local user could read a secret.
        env_args = [f"--env={k}={v}" for k, v in env.items()]
        if env_args:
            buildah("config", *env_args, ctr_name)
        cmd = ["buildah", "--storage-driver", STORAGE_DRIVER, "run", "--isolation", "chroot",
               "--hostname", self.pod_name, *mounts]  # fmt: skip
        if user:
            cmd += ["--user", user]
        if c.spec.get("workingDir"):
            cmd += ["--workingdir", c.spec["workingDir"]]
        cmd += [ctr_name, "--", *argv]
        logf = self.dir / f"{c.name}.log"
        if logf.exists():
            logf.replace(self.dir / f"{c.name}.log.1")
        with open(logf, "ab") as out:
            c.popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        c.pid_proc.pid_file.write_text(f"{c.popen.pid} {_start_time(c.popen.pid)}\n")
        c.running_since = time.monotonic()
        c.started_at = now_rfc3339()
        c.waiting = None
        c.terminated = None
        c.ready = False
        c.started = "startupProbe" not in c.spec
        c.probes = {
            k: Probe(c.spec[k])
            for k in ("startupProbe", "readinessProbe", "livenessProbe")
            if k in c.spec
        }
        for p in c.probes.values():
            p.reset(c.running_since)
        self.event("Normal", "Started", f"Started container {c.name} (pid {c.popen.pid})")
        log(f"{self.ns}/{self.pod_name}: started {c.name}: {' '.join(argv)[:200]}")

    def mount_args(self, c: Container, root: Path) -> list[str]:
        out: list[str] = []
        vols = {v["name"]: v for v in self.pod["spec"].get("volumes") or []}
        for m in c.spec.get("volumeMounts") or []:
            if m["name"] not in self.mounts:
                raise ConfigError(f'volume "{m["name"]}" is not available')
            src = self.mounts[m["name"]]
            if m.get("subPath"):
                src = src / expand(m["subPath"], {})
                if not src.exists():
                    src.mkdir(parents=True)
            v = vols.get(m["name"], {})
            ro = m.get("readOnly") or any(
                k in v for k in ("configMap", "secret", "projected", "downwardAPI")
            )
            target = resolve_in_root(root, m["mountPath"])
            out.append(f"--volume={src}:{target}:{'ro' if ro else 'rw'}")
        return out

    def reap(self, c: Container, stopping: bool = False) -> bool:
        """Record an exited process; True if it exited since the last look."""
        if c.popen is None or c.popen.poll() is None:
            return False
        code = c.popen.returncode
        code = 128 - code if code < 0 else code
        reason = "Completed" if code == 0 else "Error"
        c.terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": f"buildah://{c.ctr or ''}",
        }
        if stopping:
            c.terminated["message"] = "stopped by the node agent"
        c.popen = None
        c.ready = False
        c.pid_proc.pid_file.unlink(missing_ok=True)
        return True

    def restart_allowed(self, c: Container) -> bool:
        policy = str(self.pod["spec"].get("restartPolicy", "Always"))
        code = int((c.terminated or {}).get("exitCode", 1))
        if c.init:
            return code != 0 and policy != "Never"
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def tick(self, c: Container) -> None:
        now = time.monotonic()
        if c.done:
            return
        if c.popen is None and c.terminated is None:
            if now >= c.backoff_until:
                self.start_container(c)
            return
        if self.reap(c):
            ran = now - (c.running_since or now)
            log(f"{self.ns}/{self.pod_name}: {c.name} exited {c.terminated['exitCode']}"  # type: ignore[index]
                f" after {ran:.1f}s")  # fmt: skip
            c.remove_ctr()
            if c.init and c.terminated and c.terminated["exitCode"] == 0:
                c.done = True
                return
            if not self.restart_allowed(c):
                c.done = True
                return
            c.backoff = BACKOFF_START if ran > BACKOFF_RESET or not c.backoff else c.backoff
            if ran <= BACKOFF_RESET and c.restarts:
                c.backoff = min(c.backoff * 2, BACKOFF_MAX)
            c.backoff_until = now + (c.backoff if c.restarts else 0)
            c.last_state = {"terminated": c.terminated}
            c.restarts += 1
            if c.backoff_until > now:
                msg = f"back-off {c.backoff:.0f}s restarting failed container={c.name}"
                c.waiting = ("CrashLoopBackOff", msg)
                self.event("Warning", "BackOff", msg)
            c.terminated = None
            return
        if c.popen is None and c.terminated is not None and not c.done:
            return
        if c.popen is not None:
            self.probe_all(c, now)

    # -- probes --

    def probe_all(self, c: Container, now: float) -> None:
        for kind, p in c.probes.items():
            if kind != "startupProbe" and not c.started:
                continue
            if kind == "startupProbe" and c.started:
                continue
            if now < p.next_at:
                continue
            p.next_at = now + float(p.spec.get("periodSeconds", 10))
            ok, why = self.run_probe(c, p.spec)
            if ok:
                p.successes += 1
                p.failures = 0
            else:
                p.failures += 1
                p.successes = 0
            need_ok = int(p.spec.get("successThreshold", 1))
            need_fail = int(p.spec.get("failureThreshold", 3))
            if kind == "readinessProbe":
                if ok and p.successes >= need_ok:
                    c.ready = True
                elif not ok:
                    if p.failures >= need_fail:
                        c.ready = False
                    self.event("Warning", "Unhealthy", f"Readiness probe failed: {why}", once=True)
            elif kind == "startupProbe" and ok:
                c.started = True
            elif not ok and p.failures >= need_fail:
                what = "Liveness" if kind == "livenessProbe" else "Startup"
                self.event("Warning", "Unhealthy", f"{what} probe failed: {why}")
                self.event("Normal", "Killing", f"Container {c.name} failed {what.lower()} probe, "
                           "will be restarted")  # fmt: skip
                c.stop(float(p.spec.get("terminationGracePeriodSeconds") or self.grace()))
                return
        if "readinessProbe" not in c.probes:
            c.ready = c.started

    def run_probe(self, c: Container, spec: Obj) -> tuple[bool, str]:
        timeout = float(spec.get("timeoutSeconds", 1))
        try:
            if "httpGet" in spec:
                h = spec["httpGet"]
                port = self.port(c, h["port"])
                scheme = str(h.get("scheme", "HTTP")).lower()
                host = h.get("host") or "127.0.0.1"
                url = f"{scheme}://{host}:{port}{h.get('path', '/')}"
                req = urllib.request.Request(url)  # noqa: S310
                for hd in h.get("httpHeaders") or []:
                    req.add_header(hd["name"], hd["value"])
                req.add_header("User-Agent", "kube-probe/local-node")
                ctx = ssl._create_unverified_context() if scheme == "https" else None  # noqa: S323
                try:
                    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:  # noqa: S310
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                return 200 <= status < 400, f"HTTP probe failed with statuscode: {status}"
            if "tcpSocket" in spec:
                t = spec["tcpSocket"]
                port = self.port(c, t["port"])
                with socket.create_connection((t.get("host") or "127.0.0.1", port), timeout):
                    return True, ""
            if "exec" in spec:
                if not c.ctr:
                    return False, "no container"
                argv = ["run", "--isolation", "chroot", c.ctr, "--", *spec["exec"]["command"]]
                res = buildah(*argv, check=False, timeout=timeout + 5)
                return res.returncode == 0, f"command exited {res.returncode}"
            if "grpc" in spec:
                return False, "grpc probes are not supported by the local node"
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        return True, ""

    @staticmethod
    def port(c: Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports") or []:
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"named port {port} not found in container {c.name}")

    # -- status --

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
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
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


# ---- the node -------------------------------------------------------------------------------


def cleanup_orphans(state: Path) -> int:
    """Stop every container process an earlier agent recorded, by PID, and drop its container."""
    n = 0
    pods = state / "pods"
    if not pods.is_dir():
        return 0
    for pod_dir in pods.iterdir():
        for pid_file in pod_dir.glob("*.pid"):
            if Proc(pid_file.stem, pod_dir).stop(timeout=10):
                n += 1
        for ctr_file in pod_dir.glob("*.ctr"):
            buildah("rm", ctr_file.read_text().strip(), check=False)
            ctr_file.unlink(missing_ok=True)
    return n


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.node: str = args.node
        self.state: Path = args.state
        self.api_port: int = args.api_port
        self.kubelet_port: int = args.kubelet_port
        self.api = Api(f"https://127.0.0.1:{args.api_port}", args.ca, args.cert, args.key)
        self.pki = args
        self.workers: dict[str, PodWorker] = {}
        self.stopping = False
        self.stop_event = threading.Event()
        self._transitions: dict[str, tuple[str, str]] = {}

    # -- node object --

    def node_status(self, ready: bool, message: str) -> Obj:
        ts = now_rfc3339()
        mem_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        cap = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{mem_kib}Ki",
            "pods": "110",
            "ephemeral-storage": f"{shutil.disk_usage(self.state).total // 1024}Ki",
        }
        buildah_version = buildah("--version", check=False).stdout.strip().split(" ")[2:3]

        def cond(t: str, status: str, reason: str, msg: str) -> Obj:
            since = self._transition(t, status)
            return {"type": t, "status": status, "reason": reason, "message": msg,
                    "lastHeartbeatTime": ts, "lastTransitionTime": since}  # fmt: skip

        os_release = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        return {
            "capacity": cap,
            "allocatable": cap,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "sufficient memory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "sufficient PID"),
                cond(
                    "Ready",
                    "True" if ready else "False",
                    "KubeletReady" if ready else "KubeletNotReady",
                    message,
                ),
            ],
            # No Hostname address: the API server would dial it first (for `kubectl logs`) and
            # the node's name does not resolve.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid") or _read("/etc/machine-id"),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": os.uname().release,
                "osImage": os_release.get("PRETTY_NAME", "Linux").strip('"'),
                "containerRuntimeVersion": f"buildah://{''.join(buildah_version)}",
                "kubeletVersion": self.pki.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(
                    os.uname().machine, os.uname().machine
                ),
            },
        }

    def _transition(self, ctype: str, status: str) -> str:
        prev = self._transitions.get(ctype)
        if prev is None or prev[0] != status:
            self._transitions[ctype] = (status, now_rfc3339())
        return self._transitions[ctype][1]

    def register(self) -> None:
        labels = {
            "kubernetes.io/hostname": self.node,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64" if os.uname().machine == "x86_64" else os.uname().machine,
            "node.kubernetes.io/local-node": "true",
        }
        try:
            self.api.get(f"/api/v1/nodes/{self.node}")
        except ApiError as e:
            if e.status != 404:
                raise
            body = {"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": self.node, "labels": labels}, "spec": {}}  # fmt: skip
            self.api.call("POST", "/api/v1/nodes", body)
            log(f"registered node {self.node}")
        self.update_node(True, "local node agent is posting ready status")

    def update_node(self, ready: bool, message: str) -> None:
        self.api.merge_patch(
            f"/api/v1/nodes/{self.node}/status", {"status": self.node_status(ready, message)}
        )

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now_micro()}  # fmt: skip
        try:
            self.api.merge_patch(path, {"spec": spec})
        except ApiError as e:
            if e.status != 404:
                raise
            node = self.api.get(f"/api/v1/nodes/{self.node}")
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node,
                     "uid": node["metadata"]["uid"]}  # fmt: skip
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.node, "namespace": "kube-node-lease",
                                 "ownerReferences": [owner]},
                    "spec": spec}  # fmt: skip
            self.api.call(
                "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body
            )

    # -- the loop --

    def sync_pods(self) -> None:
        pods = self.api.get("/api/v1/pods", query={"fieldSelector": f"spec.nodeName={self.node}"})[
            "items"
        ]
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            w = self.workers.get(uid)
            if w is None:
                if pod["metadata"].get("deletionTimestamp") and not pod.get("status", {}).get(
                    "containerStatuses"
                ):
                    w = PodWorker(self, pod)  # never started: just let it go
                    w.pod = pod
                    w.terminate()
                    self.workers[uid] = w
                    w.start()
                    continue
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                w = PodWorker(self, pod)
                self.workers[uid] = w
                log(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} bound here")
                w.start()
            else:
                status = w.pod.get("status", {})
                w.pod = {**pod, "status": status}
                if pod["metadata"].get("deletionTimestamp"):
                    w.terminate()
        for uid, w in list(self.workers.items()):
            if uid not in seen:
                w.terminate(deleted=True)
            if not w.is_alive() and (uid not in seen or w.stop_event.is_set()):
                del self.workers[uid]

    def run(self) -> None:
        stopped = cleanup_orphans(self.state)
        if stopped:
            log(f"stopped {stopped} container process(es) left by an earlier agent")
        self.register()
        self.renew_lease()
        last_lease = last_status = time.monotonic()
        log(f"node {self.node} ready; syncing pods every {SYNC_INTERVAL:.0f}s")
        while not self.stop_event.is_set():
            try:
                now = time.monotonic()
                if now - last_lease >= LEASE_INTERVAL:
                    self.renew_lease()
                    last_lease = now
                if now - last_status >= NODE_STATUS_INTERVAL:
                    self.update_node(True, "local node agent is posting ready status")
                    last_status = now
                self.sync_pods()
            except (ApiError, OSError) as e:
                log(f"sync error: {e}")
            self.stop_event.wait(SYNC_INTERVAL)
        self.shutdown()

    def shutdown(self) -> None:
        self.stopping = True
        log(f"stopping {len(self.workers)} pod(s)")
        for w in self.workers.values():
            w.terminate()
        for w in self.workers.values():
            w.join(timeout=SHUTDOWN_GRACE_CAP + 5)
        with contextlib.suppress(ApiError, OSError):
            self.update_node(False, "the local node agent stopped")
        log("stopped")

    # -- kubelet API (logs only) --

    def serve_logs(self) -> None:
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                m = re.fullmatch(r"/containerLogs/([^/]+)/([^/]+)/([^/]+)", u.path)
                if not m:
                    self.send_error(404, "only /containerLogs is served by the local node")
                    return
                ns, pod, ctr = m.groups()
                w = next((w for w in agent.workers.values()
                          if w.ns == ns and w.pod_name == pod), None)  # fmt: skip
                if w is None:
                    self.send_error(404, f"pod {ns}/{pod} is not on this node")
                    return
                suffix = ".log.1" if q.get("previous", ["false"])[0] == "true" else ".log"
                f = w.dir / f"{ctr}{suffix}"
                data = f.read_bytes() if f.exists() else b""
                if "tailLines" in q:
                    lines = data.splitlines(keepends=True)
                    data = b"".join(lines[-int(q["tailLines"][0]) :])
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.kubelet_port), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.pki.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED  # only the API server's kubelet-client certificate
        ctx.load_cert_chain(str(self.pki.serving_cert), str(self.pki.serving_key))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True, name="kubelet-api").start()


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nodeagent")
    ap.add_argument("--node", default="local-node")
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--kubelet-port", type=int, required=True)
    ap.add_argument("--ca", type=Path, required=True)
    ap.add_argument("--cert", type=Path, required=True)
    ap.add_argument("--key", type=Path, required=True)
    ap.add_argument("--serving-cert", type=Path, required=True)
    ap.add_argument("--serving-key", type=Path, required=True)
    ap.add_argument("--kubelet-version", default="v0.0.0")
    args = ap.parse_args(argv)
    if shutil.which("buildah") is None:
        log("ERROR: buildah is not installed; this node cannot run containers")
        return 2
    agent = Agent(args)

    def on_signal(signum: int, _frame: object) -> None:
        log(f"received {signal.Signals(signum).name}")
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.serve_logs()
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
