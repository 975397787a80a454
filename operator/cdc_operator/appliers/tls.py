"""CA bundles from a pipeline spec as files, for the operator's own clients that need a path.

A bundle is public (certificates only); it is written once per content under the temp dir
(the operator Pod's emptyDir), named by its digest.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cdc_operator.models import RedisSpec


def ca_file(pem: str) -> str:
    path = Path(tempfile.gettempdir()) / (
        "cdc-ca-" + hashlib.sha256(pem.encode()).hexdigest()[:16] + ".pem"
    )
    if not path.exists():
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(pem)
        tmp.replace(path)
    return str(path)


def redis_url(spec: RedisSpec) -> str:
    """`spec.url`, with `ssl_ca_certs` (a redis-py URL option) when a CA bundle is set."""
    if not spec.ca_bundle or not spec.url.startswith("rediss://"):
        return spec.url
    parts = urlsplit(spec.url)
    query = [*parse_qsl(parts.query), ("ssl_ca_certs", ca_file(spec.ca_bundle))]
    return urlunsplit(parts._replace(query=urlencode(query)))
