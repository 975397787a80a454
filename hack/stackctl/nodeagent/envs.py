"""A container's environment, argv and user, resolved as a kubelet does.

`$(VAR)` expansion, `valueFrom` (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef),
`envFrom`, the `command`/`args` over ENTRYPOINT/CMD rule and `runAsUser`/`runAsNonRoot`: the
parts of a Pod spec that become the process's configuration, separate from running it.
"""

from __future__ import annotations

import re

from .base import ConfigError, Obj
from .runtime import Container

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are substituted, $$ escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, text)


def field_ref(pod: Obj, path: str, pod_ip: str) -> str:
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
        "status.podIP": pod_ip,
        "status.hostIP": "127.0.0.1",
        "status.podIPs": pod_ip,
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("metadata.labels", "metadata.annotations"):
        d = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(d.items()))
    _ = status
    raise ValueError(f"unsupported fieldRef {path}")


class PodEnv:
    """Mixed into PodWorker: env, argv and user of a container of this Pod."""

    def env_for(self, c: Container) -> dict[str, str]:
        spec = c.spec
        env: dict[str, str] = {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(self.agent.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.agent.api_port),
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{self.agent.api_port}",
            "HOSTNAME": self.pod_name,
        }
        # One GET per Secret/ConfigMap, not one per variable (a worker takes ~6 keys of one
        # Secret: 6 round trips to a busy API server held its start back 0.3-0.7 s).
        got: dict[tuple[str, str], Obj | None] = {}

        def get(kind: str, name: str, optional: bool) -> Obj | None:
            if (kind, name) not in got:
                got[(kind, name)] = self._get(kind, name, optional)
            return got[(kind, name)]

        for src in spec.get("envFrom") or []:
            prefix = src.get("prefix", "")
            for kind, key in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
                if key in src:
                    ref = src[key]
                    obj = get(kind, ref["name"], bool(ref.get("optional")))
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
                obj = get(kind, ref["name"], bool(ref.get("optional")))
                data = self._keys(obj, kind)
                if ref["key"] in data:
                    env[name] = data[ref["key"]].decode(errors="replace")
                elif not ref.get("optional"):
                    what = "secret" if kind == "secrets" else "configmap"
                    raise ConfigError(f"couldn't find key {ref['key']} in {what} {ref['name']}")
            elif "fieldRef" in vf:
                env[name] = field_ref(self.pod, vf["fieldRef"]["fieldPath"], self.pod_ip)
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
