"""Pod IPs: each Pod gets its own loopback address, as a kubelet's network plugin gives one.

Pods share the host's network namespace (buildah chroot isolation), so without their own address
two replicas of one Deployment collide on their port, and a probe of one Pod is answered by
another: a new Pod that cannot even bind its port looked Ready because the old Pod answered its
readiness probe on 127.0.0.1, and the Deployment controller then removed the old Pod (the
`maxUnavailable: 0` rollout of issue 15 §4). All of 127.0.0.0/8 is local on Linux, so every Pod
gets one address of the node's Pod CIDR (default 127.10.0.0/16, no setup, nothing to clean up),
reported as `status.podIP`/`podIPs` and given by the downward API (`fieldRef: status.podIP`);
probes go to it. A container must bind its Pod IP, not 0.0.0.0, to share a port number with
other Pods; and a probe only counts as passing when what listens on the Pod's address and port
belongs to this Pod (a process of another Pod bound to 0.0.0.0 answers there too).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import threading
from pathlib import Path

from .runtime import _children

DEFAULT_POD_CIDR = "127.10.0.0/16"


class PodIPs:
    """Hands out the addresses of the Pod CIDR, one per Pod UID, not reusing one soon."""

    def __init__(self, cidr: str = DEFAULT_POD_CIDR) -> None:
        self.network = ipaddress.ip_network(cidr)
        if not self.network.is_loopback or self.network.version != 4:
            raise ValueError(f"the local node's Pod CIDR must be IPv4 loopback, not {cidr}")
        self.by_uid: dict[str, str] = {}
        self.lock = threading.Lock()
        self.cursor = 0

    def assign(self, uid: str, previous: str | None = None) -> str:
        """The Pod's address: the one it had (an agent restart keeps it), else the next free."""
        with self.lock:
            if uid in self.by_uid:
                return self.by_uid[uid]
            used = set(self.by_uid.values())
            if previous and previous not in used and self._usable(previous):
                self.by_uid[uid] = previous
                return previous
            size = self.network.num_addresses
            for _ in range(size):
                self.cursor = (self.cursor + 1) % size
                ip = str(self.network.network_address + self.cursor)
                if ip not in used and self._usable(ip):
                    self.by_uid[uid] = ip
                    return ip
            raise RuntimeError(f"no free Pod IP left in {self.network}")

    def release(self, uid: str) -> None:
        with self.lock:
            self.by_uid.pop(uid, None)

    def _usable(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        if addr not in self.network or addr.packed[-1] in (0, 1, 255):
            return False  # .0/.255 look like network/broadcast; x.y.z.1 like a gateway
        return addr not in (self.network.network_address, self.network.broadcast_address)


def _listeners(ip: str, port: int) -> set[int]:
    """Socket inodes listening on ip:port, or on the wildcard address at that port."""
    wanted4 = {_hex4(ip), _hex4("0.0.0.0")}  # noqa: S104 - matching, not binding
    wanted6 = {"0" * 32, "0000000000000000FFFF0000" + _hex4(ip)}
    out: set[int] = set()
    for table, wanted in (("tcp", wanted4), ("tcp6", wanted6)):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                f = line.split()
                addr, _, hexport = f[1].partition(":")
                if f[3] == "0A" and int(hexport, 16) == port and addr.upper() in wanted:
                    out.add(int(f[9]))
    return out


def _hex4(ip: str) -> str:
    """An IPv4 address as /proc/net/tcp prints it (host byte order, little-endian here)."""
    return ipaddress.IPv4Address(ip).packed[::-1].hex().upper()


def _sockets(pids: list[int]) -> set[int]:
    """Socket inodes held by these processes and all their descendants."""
    out: set[int] = set()
    todo, seen = list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(fd.path)
                    if target.startswith("socket:["):
                        out.add(int(target[8:-1]))
        todo.extend(_children(pid))
    return out


def served_by_pod(ip: str, port: int, pids: list[int]) -> tuple[bool, str]:
    """Whether what listens on ip:port belongs to the Pod whose processes are `pids`.

    Nothing listening: True (the probe itself then fails with "connection refused").
    """
    listening = _listeners(ip, port)
    if not listening or listening & _sockets(pids):
        return True, ""
    return False, (
        f"{ip}:{port} is served by a process of another Pod or of the host (bound to 0.0.0.0?), "
        "not by this Pod: containers on the local node must bind their Pod IP (status.podIP)"
    )
