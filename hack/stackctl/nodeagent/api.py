"""A JSON client of the API server, authenticated as the node (a kubelet's rights, no more).

Every other module talks to the API server through this one class, so the TLS identity (the
node's client certificate) is set up in one place.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Obj


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

    def watch(self, path: str, query: dict[str, str], timeout: float) -> Iterator[Obj]:
        """The events of a watch on `path` (one JSON object a line) until the server ends it."""
        q = {**query, "watch": "true", "timeoutSeconds": str(int(timeout))}
        url = self.server + path + "?" + urllib.parse.urlencode(q)
        req = urllib.request.Request(url)  # noqa: S310
        req.add_header("Accept", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout + 10, context=self.ctx) as resp:  # noqa: S310
                for line in resp:
                    if line.strip():
                        yield json.loads(line)
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read().decode(errors="replace")) from None
