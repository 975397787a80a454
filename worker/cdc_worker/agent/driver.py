"""The agent's Cassandra login and TLS trust: never in the rendered driver config, added at start.

The Debezium agent connects to its node through the DataStax Java driver 4.x it bundles,
configured only by the HOCON file its properties name (`cassandra.driver.config.file`). The
operator (and hack/stack) render that file without a secret. When cdc-agent has Cassandra
credentials in its environment — `CASSANDRA_USERNAME`/`CASSANDRA_PASSWORD` or the files named
by `CASSANDRA_USERNAME_FILE`/`CASSANDRA_PASSWORD_FILE` (the sidecar's Secret) — or a CA for the
node's certificate (`--cassandra-ca`, `CDC_AGENT_CASSANDRA_CA_FILE`, PEM), it writes a runtime
copy of the driver config (0600, in its private runtime directory) with
`advanced.auth-provider` (PlainTextAuthProvider) and `advanced.ssl-engine-factory`
(DefaultSslEngineFactory with host name validation) appended, and points the runtime
properties' `cassandra.driver.config.file` at it. The driver 4.14 only reads JKS/PKCS#12
truststores, so the PEM CA becomes a PKCS#12 truststore made by `keytool` (beside `java`) with a
random per-start store password passed through the environment, never on a command line.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cdc_worker.config import ConfigError, secret

RUNTIME_CONF = "driver-runtime.conf"
TRUSTSTORE = "cassandra-truststore.p12"
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class DriverSetupError(Exception):
    """The Cassandra login or trust cannot be set up (message names no secret)."""


@dataclass(frozen=True)
class CassandraTrust:
    ca_file: Path
    verify_hostname: bool = True


def cassandra_login(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, password) from CASSANDRA_USERNAME/PASSWORD (or *_FILE); None when unset. The
    probe's older CDC_AGENT_CASSANDRA_USERNAME/PASSWORD are accepted too."""
    e = dict(env)
    try:
        user = secret(e, "CASSANDRA_USERNAME") or e.get("CDC_AGENT_CASSANDRA_USERNAME")
        password = secret(e, "CASSANDRA_PASSWORD") or e.get("CDC_AGENT_CASSANDRA_PASSWORD")
    except ConfigError as err:
        raise DriverSetupError(f"cassandra: {err}") from None
    if not user and not password:
        return None
    if not user or not password:
        raise DriverSetupError(
            "cassandra: only one of CASSANDRA_USERNAME/CASSANDRA_PASSWORD (or their *_FILE "
            "variants) is set"
        )
    return user, password


def hocon_string(v: str) -> str:
    """A HOCON quoted string (JSON escaping)."""
    out = []
    for ch in v:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _keytool(java: str) -> str:
    found = shutil.which(java)
    if found:
        beside = Path(found).resolve().parent / "keytool"
        if beside.exists():
            return str(beside)
    tool = shutil.which("keytool")
    if tool is None:
        raise DriverSetupError("cassandra: keytool not found beside java or on PATH")
    return tool


def truststore(ca_file: Path, runtime_dir: Path, java: str) -> tuple[Path, str]:
    """A PKCS#12 truststore of every certificate in the PEM `ca_file`, and its store password."""
    try:
        pems = _PEM.findall(ca_file.read_text())
    except OSError as e:
        raise DriverSetupError(
            f"cassandra: cannot read the CA file {ca_file}: {e.strerror}"
        ) from None
    if not pems:
        raise DriverSetupError(f"cassandra: no PEM certificate in {ca_file}")
    store = runtime_dir / TRUSTSTORE
    store.unlink(missing_ok=True)
    password = secrets.token_urlsafe(18)
    env = {**os.environ, "CDC_AGENT_TRUSTSTORE_PASS": password}
    tool = _keytool(java)
    with tempfile.TemporaryDirectory(dir=runtime_dir) as tmp:
        for i, pem in enumerate(pems):
            cert = Path(tmp) / f"ca-{i}.pem"
            cert.write_text(pem + "\n")
            # keytool beside the configured java, an argument list, no shell
            res = subprocess.run(  # nosec B603
                [tool, "-importcert", "-noprompt", "-alias", f"ca-{i}", "-file", str(cert),
                 "-keystore", str(store), "-storetype", "PKCS12",
                 "-storepass:env", "CDC_AGENT_TRUSTSTORE_PASS"],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if res.returncode != 0:
                raise DriverSetupError(
                    f"cassandra: keytool could not import {ca_file}: "
                    f"{(res.stdout + res.stderr).strip()[-300:]}"
                )
    store.chmod(0o600)
    return store, password


def runtime_driver_conf(
    driver_conf: Path,
    runtime_dir: Path,
    login: tuple[str, str] | None,
    trust: CassandraTrust | None,
    java: str = "java",
) -> Path:
    """The 0600 runtime copy of `driver_conf` with the login and TLS trust appended."""
    try:
        text = driver_conf.read_text()
    except OSError as e:
        raise DriverSetupError(
            f"cassandra: cannot read the driver config {driver_conf}: {e.strerror}"
        ) from None
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = ["", "# added by cdc-agent at start (from its environment)"]
    if login is not None:
        user, password = login
        lines.append(
            "datastax-java-driver.advanced.auth-provider { class = PlainTextAuthProvider, "
            f"username = {hocon_string(user)}, password = {hocon_string(password)} }}"
        )
    if trust is not None:
        store, store_password = truststore(trust.ca_file, runtime_dir, java)
        validate = "true" if trust.verify_hostname else "false"
        lines.append(
            "datastax-java-driver.advanced.ssl-engine-factory { class = DefaultSslEngineFactory, "
            f"truststore-path = {hocon_string(str(store))}, "
            f"truststore-password = {hocon_string(store_password)}, "
            f"hostname-validation = {validate} }}"
        )
    path = runtime_dir / RUNTIME_CONF
    tmp = runtime_dir / (RUNTIME_CONF + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def remove_runtime(runtime_dir: Path) -> None:
    for name in (RUNTIME_CONF, TRUSTSTORE):
        (runtime_dir / name).unlink(missing_ok=True)
