"""What the cluster admin allows, as opposed to what a pipeline's author asks for.

A CdcPipeline is written by a tenant; these settings come from the chart (the operator's
environment), so a tenant cannot widen them: whether Vault may be reached over plain HTTP
(`security.allowInsecureVault`), and which worker images may receive the pipeline's
credentials (`security.allowedWorkerImages`, glob patterns; unset: any image, for a
development run outside the chart, which always sets it).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    allow_insecure_vault: bool
    allowed_images: tuple[str, ...]

    @classmethod
    def from_env(cls) -> Policy:
        images = os.environ.get("CDC_OPERATOR_ALLOWED_IMAGES", "")
        return cls(
            allow_insecure_vault=os.environ.get("CDC_OPERATOR_ALLOW_INSECURE_VAULT", "false")
            .strip()
            .lower()
            == "true",
            allowed_images=tuple(p.strip() for p in images.split(",") if p.strip()),
        )

    def image_allowed(self, image: str) -> bool:
        if not self.allowed_images:
            return True
        return any(fnmatch.fnmatchcase(image, pattern) for pattern in self.allowed_images)


def policy() -> Policy:
    return Policy.from_env()
