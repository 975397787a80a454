"""What every part of the agent shares: its tunables, its log line, timestamps, errors.

Kept apart so that the modules for volumes, probes, status and the node loop can import them
without importing each other.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

STORAGE_DRIVER = os.environ.get("IMAGE_STORAGE_DRIVER", "overlay")
SYNC_INTERVAL = 1.0
LEASE_INTERVAL = 10.0
NODE_STATUS_INTERVAL = 60.0
LEASE_SECONDS = 40
TOKEN_REFRESH_FRACTION = 0.8
VOLUME_RESYNC = 15.0
BACKOFF_START, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0
SHUTDOWN_GRACE_CAP = 20.0


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} node-agent: {msg}", flush=True)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ConfigError(Exception):
    """The container cannot be configured yet (missing Secret/ConfigMap, bad reference)."""


def write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    tmp.replace(path)
