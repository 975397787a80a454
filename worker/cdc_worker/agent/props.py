"""The agent's properties file: parsing and change detection by content.

In Kubernetes the file is a ConfigMap volume, which the kubelet updates by swapping a symlink;
the path never changes but its content does, and for a moment the file may be missing. A change
is therefore the content's digest differing from the one the running agent was started with,
and a missing or unreadable file is "no change" (never a reason to stop a working agent).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def digest(path: Path) -> str | None:
    """sha256 of the file's bytes, or None when it cannot be read right now."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class FileWatch:
    """Remembers the digest the child was started with and tells when the file differs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started: str | None = None

    def accept(self) -> str | None:
        """Record the current content as the one the (re)started child runs with."""
        self.started = digest(self.path)
        return self.started

    def changed(self) -> bool:
        now = digest(self.path)
        return now is not None and self.started is not None and now != self.started


def parse(text: str) -> dict[str, str]:
    """Java properties as the operator and the stack render them: `key=value` lines.

    Comments (`#`, `!`), blank lines, `key: value` and the `\\\\`/`\\n` escapes the operator
    writes are understood; line continuations are not used by either renderer.
    """
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        if cut < 0:
            out[line] = ""
            continue
        out[line[:cut].strip()] = _unescape(line[cut + 1 :].strip())
    return out


def _unescape(value: str) -> str:
    out, chars = [], iter(value)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        if nxt == "u":
            code = "".join(next(chars, "") for _ in range(4))
            hexa = len(code) == 4 and all(c in "0123456789abcdefABCDEF" for c in code)
            out.append(chr(int(code, 16)) if hexa else "u" + code)
            continue
        out.append({"n": "\n", "t": "\t", "r": "\r", "f": "\f"}.get(nxt, nxt))
    # Surrogate pairs (characters beyond the BMP) written as two \u escapes.
    return "".join(out).encode("utf-16", "surrogatepass").decode("utf-16")


def load(path: Path) -> dict[str, str]:
    return parse(path.read_text())
