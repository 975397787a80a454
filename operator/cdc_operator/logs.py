"""The operator's logs: JSON lines, with every credential it has read masked.

The operator reads credentials at run time (Vault, Secrets), so the redactor learns them as
they arrive (`learn`), on top of what its environment holds; Kopf's and the drivers' messages
pass through the same filter (cdc_worker/redact.py holds the rules).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cdc_worker.redact import RedactingFilter, Redactor, secret_values

REDACTOR = Redactor()


def install(level: str) -> None:
    import os

    REDACTOR.secrets = secret_values(os.environ)
    logging.basicConfig(
        level=level,
        format='{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s",'
        '"message":%(message)r}',
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(REDACTOR))


def learn(creds: Mapping[str, str]) -> None:
    """Mask these credentials from now on (the secret ones: not usernames, see redact.py)."""
    values = [v for k, v in creds.items() if not k.endswith("USERNAME")]
    known = set(REDACTOR.secrets) | {v for v in values if v and len(v) >= 3}
    REDACTOR.secrets = sorted(known, key=len, reverse=True)
