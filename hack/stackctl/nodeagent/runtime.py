"""The container runtime: buildah, the image store, and one container's processes.

buildah is the only thing that touches images and working containers; a `Container` holds one
container's process (`buildah run` and the workload under buildah-chroot-exec), its state for the
status, and how to stop it (SIGTERM to the workload, SIGKILL to the group after the grace).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import Proc
from .base import STORAGE_DRIVER, ConfigError, Obj, log

if TYPE_CHECKING:
    from .probes import Probe


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


# What `buildah inspect` said per image name, with the image store's state it was said for:
# every Pod start asked again (0.2-0.5 s on a busy machine), though images rarely change.
_INSPECTED: dict[str, tuple[int, Obj]] = {}
IMAGE_STORE = "/var/lib/containers/storage"  # buildah's default store, the one the node runs


def _store_stamp() -> int:
    """The image store's images.json modification time (it changes whenever an image is added,
    removed or re-tagged), 0 when it cannot be read (then nothing is cached)."""
    try:
        return os.stat(f"{IMAGE_STORE}/{STORAGE_DRIVER}-images/images.json").st_mtime_ns
    except OSError:
        return 0


def image_info(image: str) -> Obj | None:
    """The image's id and OCI config if it is in the local store, else None."""
    stamp = _store_stamp()
    hit = _INSPECTED.get(image)
    if stamp and hit is not None and hit[0] == stamp:
        return hit[1]
    res = buildah("inspect", "--type", "image", image, check=False)
    if res.returncode != 0:
        return None
    info = json.loads(res.stdout)
    cfg = (info.get("OCIv1") or {}).get("config") or {}
    out = {"id": info.get("FromImageID", ""), "name": info.get("FromImage", image), "config": cfg}
    if stamp:
        _INSPECTED[image] = (stamp, out)
    return out


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
