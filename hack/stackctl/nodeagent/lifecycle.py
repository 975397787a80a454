"""Starting, reaping and restarting a Pod's containers (restartPolicy and the kubelet's back-off).

The per-container state machine: image check (the node never pulls), configuration errors,
`buildah from` + `buildah run --isolation chroot`, exit codes, CrashLoopBackOff, then the probes.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from ..core import _start_time
from .base import (
    BACKOFF_MAX,
    BACKOFF_RESET,
    BACKOFF_START,
    STORAGE_DRIVER,
    ConfigError,
    log,
    now_rfc3339,
)
from .probes import Probe
from .runtime import Container, buildah, image_info, resolve_in_root

# Mount targets resolved inside an image, by (image id, path): the same image resolves a path
# the same way, so later Pods of that image need no `buildah mount`.
RESOLVED: dict[tuple[str, str], str] = {}


class PodContainers:
    """Mixed into PodWorker: one container's start, exit and restart."""

    def start_container(self, c: Container) -> None:
        t0 = time.monotonic()
        steps: list[str] = []  # how long each step took, for the "started" log line

        def step(what: str) -> None:
            steps.append(f"{what} {time.monotonic() - t0:.2f}")

        image = c.spec["image"]
        info = image_info(image)
        step("inspect")
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
        c.remove_ctr()
        ctr_name = f"k8s_{self.agent.node}_{self.ns}_{self.pod_name}_{c.name}_{self.uid[:8]}"
        from_argv = ["buildah", "--storage-driver", STORAGE_DRIVER, "from", "--pull-never",
                     "--name", ctr_name, image]  # fmt: skip
        # `buildah from` (0.3-0.9 s here) runs while the env's Secrets are read from the API
        # server; not while a configuration error repeats (every 2 s until it is fixed).
        making = None
        if not c.waiting or c.waiting[0] != "CreateContainerConfigError":
            making = subprocess.Popen(
                from_argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        try:
            env = self.env_for(c)
            argv = self.argv_for(c, cfg, env)
            user = self.user_for(c, cfg)
            step("env")
        except (ConfigError, ValueError) as e:
            if making is not None and making.communicate(timeout=120) and making.returncode == 0:
                buildah("rm", ctr_name, check=False)
            if c.waiting != ("CreateContainerConfigError", str(e)):
                self.event("Warning", "Failed", f"Error: {e}")
            c.waiting = ("CreateContainerConfigError", str(e))
            c.backoff_until = time.monotonic() + 2
            return
        out, code = "", 1
        if making is not None:
            out, _ = making.communicate(timeout=120)
            code = making.returncode
        if code != 0:
            # A leftover of the same name (an agent that died between `from` and `rm`) is
            # removed only when `from` is refused: each buildah call costs 0.1-0.5 s.
            if making is not None:
                buildah("rm", ctr_name, check=False)
            made = buildah("from", "--pull-never", "--name", ctr_name, image, check=False)
            if made.returncode != 0:
                buildah("rm", ctr_name, check=False)
                made = buildah("from", "--pull-never", "--name", ctr_name, image)
            out = made.stdout
        c.ctr = out.strip()
        step("from")
        (self.dir / f"{c.name}.ctr").write_text(ctr_name + "\n")
        root: list[Path] = []

        def resolve(path: str) -> str:
            """`path` resolved inside the image (runtime.resolve_in_root), known per image:
            the working container is mounted only for a path not resolved before."""
            key = (info["id"], path)
            if key not in RESOLVED:
                if not root:
                    root.append(Path(buildah("mount", ctr_name).stdout.strip()))
                RESOLVED[key] = resolve_in_root(root[0], path)
            return RESOLVED[key]

        try:
            mounts = self.mount_args(c, resolve)
            step("mounts")
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
        step("config")
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
        step("run")
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
        log(
            f"{self.ns}/{self.pod_name}: started {c.name} (s: {', '.join(steps)}; "
            f"{t0 - self.seen_at:.2f} after the Pod was seen): {' '.join(argv)[:200]}"
        )

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
