"""The stack CA, its server certificates and the generated passwords of the secure profile.

Issue #12 wants every hop of the local stack authenticated and encrypted, so the
services get TLS listeners beside their plaintext ones (which the existing tests
and tools keep using). One CA under <state>/tls signs one serving certificate per
service, valid for `localhost` and `127.0.0.1`, so clients can verify the
hostname (`sslmode=verify-full`, Kafka's endpoint identification, HTTPS). It is
separate from the Kubernetes cluster CA on purpose: that one asserts Kubernetes
identities, this one only vouches for loopback servers. Passwords are generated
once into <state>/secrets/<name>.password (0600) and only ever passed around as
file paths; nothing here prints them.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from pathlib import Path

from .core import STATE, log, run

TLS_DIR = STATE / "tls"
SECRETS_DIR = STATE / "secrets"
CA_CRT = TLS_DIR / "ca.crt"
CA_KEY = TLS_DIR / "ca.key"
CERT_DAYS = 825
LOOPBACK_SANS = ("DNS:localhost", "IP:127.0.0.1")


def _key(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
         "-out", tmp])  # fmt: skip
    tmp.chmod(0o600)
    tmp.replace(path)


def make_ca(directory: Path, cn: str) -> tuple[Path, Path]:
    """A self-signed CA (ca.crt, ca.key) in directory; tests use it for a throwaway CA too."""
    directory.mkdir(parents=True, exist_ok=True)  # certificates readable by all, keys 0600
    crt, key = directory / "ca.crt", directory / "ca.key"
    _key(key)
    run(["openssl", "req", "-x509", "-new", "-key", key, "-subj", f"/CN={cn}",
         "-days", str(CERT_DAYS), "-sha256",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
         "-out", crt.with_suffix(".tmp")])  # fmt: skip
    crt.with_suffix(".tmp").replace(crt)
    return crt, key


def sign(
    directory: Path, name: str, ca: tuple[Path, Path], extra_sans: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """<name>.crt/.key in directory: a loopback serving certificate signed by ca."""
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    _key(key)
    ext = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth",
        "subjectAltName=" + ",".join((*LOOPBACK_SANS, *extra_sans)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        csr, extfile = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
        extfile.write_text("\n".join(ext) + "\n")
        run(["openssl", "req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr])
        run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
             "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(CERT_DAYS),
             "-sha256", "-extfile", extfile, "-out", crt.with_suffix(".tmp")])  # fmt: skip
    crt.with_suffix(".tmp").replace(crt)
    return crt, key


def ensure_ca() -> Path:
    """The stack CA, created on first use; a new CA invalidates every certificate it signed."""
    if not (CA_CRT.exists() and CA_KEY.exists()):
        log("tls: generating the stack CA")
        for stale in TLS_DIR.glob("*.crt"):
            stale.unlink()
        make_ca(TLS_DIR, "cass-cdc-pg-stack-ca")
    return CA_CRT


def server_cert(name: str, extra_sans: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """(certificate, key) of service `name`, signed by the stack CA; created when missing.
    `extra_sans` are names beyond localhost and 127.0.0.1 (a Cassandra ring's 127.0.0.N)."""
    ensure_ca()
    crt, key = TLS_DIR / f"{name}.crt", TLS_DIR / f"{name}.key"
    if not (crt.exists() and key.exists()):
        sign(TLS_DIR, name, (CA_CRT, CA_KEY), extra_sans)
    return crt, key


def password_file(name: str) -> Path:
    """<state>/secrets/<name>.password (0600), generated once; callers pass the path on."""
    path = SECRETS_DIR / f"{name}.password"
    if not path.exists():
        SECRETS_DIR.mkdir(parents=True, exist_ok=True)
        SECRETS_DIR.chmod(0o700)
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
        path.with_suffix(".tmp").replace(path)
    return path


def password(name: str) -> str:
    return password_file(name).read_text().strip()


def client_context() -> ssl.SSLContext:
    """What a careful client does: trust only the stack CA and check the host name."""
    ctx = ssl.create_default_context(cafile=str(ensure_ca()))
    ctx.check_hostname = True
    return ctx


def env() -> dict[str, str]:
    return {"CDC_STACK_CA": str(CA_CRT)}
