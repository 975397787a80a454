"""Keep the kernel from lending the stack's ports to outgoing connections.

Every service of the stack listens in 50000-60999 (+ CDC_STACK_PORT_OFFSET), inside Linux's
ephemeral range (32768-60999 by default), from which the kernel picks the local port of every
outgoing connection. A connection that happens to get, say, 52380 while etcd is stopped makes
etcd's next start fail with "address already in use" although nothing listens there (seen with
the test suite's parallel phases: thousands of short client connections, then `up k8s`). The
stack's band is therefore added to `net.ipv4.ip_local_reserved_ports`, which only takes ports
out of the ephemeral pick (explicit binds still work). Without the right to write it (not
root, a read-only /proc/sys) nothing changes and a start may still, rarely, meet such a port.
"""

from __future__ import annotations

from pathlib import Path

from .core import PORT_OFFSET, log

RESERVED = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")
BAND = (50000, 60999)


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.replace("\n", "").split(","):
        if part.strip():
            lo, _, hi = part.strip().partition("-")
            out.append((int(lo), int(hi or lo)))
    return out


def merged(current: str, lo: int, hi: int) -> str:
    """`current` (the sysctl's text) with lo-hi added, as the sysctl's comma-separated ranges."""
    spans = sorted([*_ranges(current), (lo, hi)])
    out: list[list[int]] = []
    for a, b in spans:
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in out)


def reserve() -> None:
    lo, hi = BAND[0] + PORT_OFFSET, min(BAND[1] + PORT_OFFSET, 65535)
    try:
        current = RESERVED.read_text()
        if any(a <= lo and hi <= b for a, b in _ranges(current)):
            return
        RESERVED.write_text(merged(current, lo, hi))
    except OSError as e:
        log(f"could not reserve ports {lo}-{hi} from the ephemeral range ({e.strerror})")
