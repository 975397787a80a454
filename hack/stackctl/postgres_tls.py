"""PostgreSQL's secure profile: TLS with the stack CA and an app role that only TLS may use.

The plaintext superuser `cdc` stays as it is (tests and tools use it). Beside it,
`ssl = on` on the same port serves the stack CA's certificate, and the login role
`cdc_app` (password generated under <state>/secrets) is accepted only through
`hostssl … scram-sha-256`: pg_hba rejects it without TLS and over the Unix socket.
Everything is written into the data directory idempotently, so an existing server
picks it up with a reload (`ssl` is reloadable) instead of a restart.
"""

from __future__ import annotations

import shutil
import socket
import struct
from pathlib import Path

from . import tls

APP_USER = "cdc_app"
SECURE_CONF = "stack-secure.conf"
INCLUDE = f"include_if_exists = '{SECURE_CONF}'"
HBA_BEGIN = "# BEGIN cass-cdc-pg secure profile (hack/stackctl/postgres_tls.py)"
HBA_END = "# END cass-cdc-pg secure profile"
HBA_BLOCK = f"""{HBA_BEGIN}
hostssl   all {APP_USER} 127.0.0.1/32 scram-sha-256
hostssl   all {APP_USER} ::1/128      scram-sha-256
local     all {APP_USER}       reject
hostnossl all {APP_USER} all   reject
{HBA_END}
"""
SSL_REQUEST = 80877103


def _put(path: Path, content: str, mode: int, owner: str | None) -> bool:
    if path.exists() and path.read_text() == content and (path.stat().st_mode & 0o777) == mode:
        return False
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(content)
    tmp.chmod(mode)
    if owner:
        shutil.chown(tmp, owner, owner)
    tmp.replace(path)
    return True


def configure(data: Path, owner: str | None) -> bool:
    """Certificate, key, `ssl = on` and the pg_hba block in `data`; True when anything changed."""
    crt, key = tls.server_cert("postgres")
    changed = _put(data / "stack-server.crt", crt.read_text(), 0o644, owner)
    changed |= _put(data / "stack-server.key", key.read_text(), 0o600, owner)
    conf = (
        "# cass-cdc-pg local stack: the secure profile (TLS beside plaintext)\n"
        f"ssl = on\nssl_cert_file = '{data / 'stack-server.crt'}'\n"
        f"ssl_key_file = '{data / 'stack-server.key'}'\n"
        "ssl_min_protocol_version = 'TLSv1.2'\npassword_encryption = 'scram-sha-256'\n"
    )
    changed |= _put(data / SECURE_CONF, conf, 0o600, owner)
    main = data / "postgresql.conf"
    text = main.read_text()
    if INCLUDE not in text:
        _put(main, text.rstrip("\n") + f"\n{INCLUDE}\n", 0o600, owner)
        changed = True
    hba = data / "pg_hba.conf"
    text = hba.read_text()
    if HBA_BLOCK not in text:
        if HBA_BEGIN in text:  # an older block: replace it
            head, _, rest = text.partition(HBA_BEGIN)
            text = head + rest.partition(HBA_END + "\n")[2]
        _put(hba, HBA_BLOCK + text, 0o600, owner)  # first match wins: the block goes on top
        changed = True
    return changed


def role_sql(database: str) -> str:
    """The app role with the generated password; run as the superuser through psql's stdin."""
    pw = tls.password(APP_USER)
    return (
        "\\set ON_ERROR_STOP on\n"
        "SET password_encryption = 'scram-sha-256';\n"
        f"SELECT 'CREATE ROLE {APP_USER} LOGIN' "
        f"WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_USER}') \\gexec\n"
        f"ALTER ROLE {APP_USER} WITH LOGIN NOSUPERUSER PASSWORD '{pw}';\n"
        f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {database} TO {APP_USER};\n"
        f"\\connect {database}\n"
        f"GRANT USAGE, CREATE ON SCHEMA public TO {APP_USER};\n"
    )


def tls_offers_scram(port: int, database: str) -> bool:
    """SSLRequest, a handshake verified against the stack CA (host name `localhost`), then a
    startup packet for the app role: the server must answer with a SASL (SCRAM) request."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            raw.sendall(struct.pack(">ii", 8, SSL_REQUEST))
            if raw.recv(1) != b"S":
                return False
            with tls.client_context().wrap_socket(raw, server_hostname="localhost") as s:
                params = f"user\0{APP_USER}\0database\0{database}\0\0".encode()
                s.sendall(struct.pack(">ii", 8 + len(params), 196608) + params)
                head = s.recv(9)
                return head[:1] == b"R" and struct.unpack(">i", head[5:9])[0] == 10
    except (OSError, struct.error):
        return False


def env(port: int, database: str) -> dict[str, str]:
    ca = tls.CA_CRT
    return {
        "PG_SECURE_HOST": "localhost",
        "PG_SECURE_PORT": str(port),
        "PG_APP_USER": APP_USER,
        "PG_APP_PASSWORD_FILE": str(tls.SECRETS_DIR / f"{APP_USER}.password"),
        "PG_SECURE_DSN": f"postgresql://{APP_USER}@localhost:{port}/{database}"
        f"?sslmode=verify-full&sslrootcert={ca}",
    }
