"""Secrets and PII never reach a log line, whatever a message or an exception carries.

One redactor serves the worker and cdc-agent (a structlog processor) and the operator (a
`logging.Filter`). It removes:
- the values of every credential the process holds (the `*_PASSWORD`, `*_TOKEN`, `*_SECRET`
  variables of its environment, and the contents of the files their `*_FILE` variants name),
  wherever they appear in text — exception messages from drivers included;
- passwords in URLs (`scheme://user:password@host`) and in libpq/JAAS style `key=value` text
  (`password=…`, `password="…"`);
- the values of configured columns (`redactColumns`: names whose values are personal data) in
  structured fields that carry rows or cells.
Dead-letter payloads are data and are not logs: they stay as they were (dlq.py).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

MASK = "[redacted]"
# Usernames are not masked: they are short common words ("worker", "cdc") that would mangle
# every line they happen to appear in, and they open nothing without the password.
_SECRET_VARS = re.compile(r"(PASSWORD|TOKEN|SECRET)$")
_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<at>@)")
_KV_PASSWORD = re.compile(r"(?i)(?P<key>password\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s;,)]+)")


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The credential values this process holds (longest first, so none masks a part)."""
    found: set[str] = set()
    for name, value in env.items():
        base = name.removesuffix("_FILE")
        if not _SECRET_VARS.search(base) or not value:
            continue
        if name.endswith("_FILE"):
            try:
                value = Path(value).read_text().strip()
            except OSError:
                continue
        if len(value) >= 3:  # shorter values would mask ordinary words
            found.add(value)
    return sorted(found, key=len, reverse=True)


class Redactor:
    def __init__(self, secrets: Iterable[str] = (), columns: Iterable[str] = ()) -> None:
        self.secrets = [s for s in secrets if s]
        self.columns = frozenset(columns)

    def text(self, s: str) -> str:
        for value in self.secrets:
            if value in s:
                s = s.replace(value, MASK)
        s = _URL_PASSWORD.sub(lambda m: f"{m['pre']}{MASK}{m['at']}", s)
        return _KV_PASSWORD.sub(lambda m: f"{m['key']}{MASK}", s)

    def value(self, v: Any, key: str | None = None) -> Any:
        if key is not None and key in self.columns:
            return MASK
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, Mapping):
            return {k: self.value(x, str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(self.value(x) for x in v)
        return v

    # structlog processor
    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> Any:
        return {k: self.value(v, k) for k, v in event.items()}


class RedactingFilter(logging.Filter):
    """The same rules for the standard library's logging (the operator, Kopf, drivers)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        record.msg, record.args = self.redactor.text(message), None
        return True


def from_environment(columns: Iterable[str] = ()) -> Redactor:
    return Redactor(secret_values(os.environ), columns)
