"""A Pod's volumes: materialised under <state>/pods/<uid>/volumes/ and bind-mounted.

ConfigMap, Secret, projected (a TokenRequest bound to the Pod, refreshed at 80 % of its life),
downward API, emptyDir and hostPath; re-synced every 15 s so that ConfigMap and Secret changes
reach the files. Other types leave the Pod in ContainerCreating with a FailedMount event.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path

from .api import ApiError
from .base import TOKEN_REFRESH_FRACTION, ConfigError, Obj, write_file
from .envs import expand, field_ref
from .runtime import Container


class PodVolumes:
    """Mixed into PodWorker: the Pod's volumes and a container's mounts."""

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
                    value = field_ref(self.pod, it["fieldRef"]["fieldPath"], self.pod_ip)
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
                            value = field_ref(self.pod, it["fieldRef"]["fieldPath"], self.pod_ip)
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

    def mount_args(self, c: Container, resolve: Callable[[str], str]) -> list[str]:
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
            target = resolve(m["mountPath"])
            out.append(f"--volume={src}:{target}:{'ro' if ro else 'rw'}")
        return out
