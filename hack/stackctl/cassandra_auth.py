"""Cassandra's secure profile: client encryption with the stack CA, PasswordAuthenticator, roles.

The native transport only speaks TLS (`client_encryption_options.optional: false`): the node
serves the stack CA's certificate (a PEM keystore, PEMBasedSslContextFactory), valid for
localhost and 127.0.0.1..5 so a client verifying the host name works against every node of a
ring. Logins go through `PasswordAuthenticator` and permissions through `CassandraAuthorizer`.

Roles (passwords generated under <state>/secrets, never printed; `hack/stack env` names files):
- `cdc_admin`: superuser for the stack's own tests and tools (CASSANDRA_USERNAME/_PASSWORD_FILE).
- `cdc_worker`: SELECT on all keyspaces (source schemas, reread, scans); it cannot write.
- `cdc_operator`: SELECT and ALTER on all keyspaces (`ALTER TABLE … WITH cdc = true`).
- `cdc_agent`: SELECT on all keyspaces (the Debezium agent's driver reads schema metadata and
  snapshots) and on the virtual table system_views.local_write_latency (cdc-agent's probe).
Test keyspaces are created under random names, so grants are on ALL KEYSPACES (read-only for
the worker and the agent) rather than per keyspace.
The default superuser `cassandra` is used once, on the first start with authentication (fresh
state, or a data directory from before this profile: Cassandra then creates it because no role
exists): it creates `cdc_admin` and is then disabled (no login, no superuser, random password).
Every later start logs in as `cdc_admin` and re-applies roles, passwords and grants idempotently.
A ring (CDC_STACK_CASSANDRA_NODES > 1) keeps system_auth at replication factor 1 for now: the
roles live on one node, so a test that stops that node loses logins until it is back.

`Cql` is a minimal native-protocol v4 client over TLS (STARTUP, PLAIN SASL, QUERY), because
hack/stack runs before the project's virtualenv (and cassandra-driver) exists.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import struct
import time

from . import tls
from .core import StackError, log

ADMIN = "cdc_admin"
DEFAULT_SUPERUSER = "cassandra"
# role -> (permission, resource) grants
ROLES: dict[str, tuple[tuple[str, str], ...]] = {
    "cdc_worker": (("SELECT", "ALL KEYSPACES"),),
    "cdc_operator": (("SELECT", "ALL KEYSPACES"), ("ALTER", "ALL KEYSPACES")),
    # Virtual tables are not under ALL KEYSPACES: cdc-agent's probe reads this node-local one.
    "cdc_agent": (
        ("SELECT", "ALL KEYSPACES"),
        ("SELECT", "TABLE system_views.local_write_latency"),
    ),
}
# Names in `hack/stack env`: CASSANDRA_<KEY>_USERNAME / _PASSWORD_FILE
ENV_KEYS = {"cdc_worker": "WORKER", "cdc_operator": "OPERATOR", "cdc_agent": "AGENT"}
EXTRA_SANS = tuple(f"IP:127.0.0.{i}" for i in range(2, 6))  # topology.MAX_MEMBERS nodes

BAD_CREDENTIALS = 0x0100
UNAUTHORIZED = 0x2100

OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT, OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x07, 0x08, 0x0F, 0x10


class CqlError(StackError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"CQL error 0x{code:04x}: {message}")
        self.code = code


def keystore() -> str:
    """The node's PEM keystore: the PKCS#8 private key, then the certificate (0600)."""
    crt, key = tls.server_cert("cassandra", EXTRA_SANS)
    path = crt.with_name("cassandra-keystore.pem")
    text = key.read_text() + crt.read_text()
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(path)
    return str(path)


def password_file(role: str) -> str:
    return str(tls.password_file(f"cassandra-{role}"))


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">H", len(raw)) + raw


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise StackError("connection closed")
        buf += chunk
    return buf


class Cql:
    """One TLS connection to a node, verified against the stack CA, logged in as `user`."""

    def __init__(self, host: str, port: int, user: str | None, password: str | None,
                 timeout: float = 5.0, context: ssl.SSLContext | None = None) -> None:  # fmt: skip
        ctx = context or tls.client_context()
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=host)
        except (OSError, ssl.SSLError):
            raw.close()
            raise
        self.stream = 0
        try:
            startup = struct.pack(">H", 1) + _string("CQL_VERSION") + _string("3.0.0")
            opcode, _ = self._call(OP_STARTUP, startup)
            if opcode == OP_AUTHENTICATE:
                if user is None or password is None:
                    raise CqlError(BAD_CREDENTIALS, "the node asks for a login")
                token = b"\0" + user.encode() + b"\0" + password.encode()
                opcode, _ = self._call(OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token)
                if opcode != OP_AUTH_SUCCESS:
                    raise StackError(f"unexpected CQL opcode 0x{opcode:02x} after AUTH_RESPONSE")
            elif opcode != OP_READY:
                raise StackError(f"unexpected CQL opcode 0x{opcode:02x} after STARTUP")
        except BaseException:
            self.close()
            raise

    def _call(self, opcode: int, body: bytes) -> tuple[int, bytes]:
        self.stream = (self.stream + 1) % 0x7FFF
        self.sock.sendall(struct.pack(">BBhBi", 4, 0, self.stream, opcode, len(body)) + body)
        _v, _f, _s, op, length = struct.unpack(">BBhBi", _recv(self.sock, 9))
        res = _recv(self.sock, length)
        if op == OP_ERROR:
            code = struct.unpack(">i", res[:4])[0]
            (n,) = struct.unpack(">H", res[4:6])
            raise CqlError(code, res[6 : 6 + n].decode(errors="replace"))
        return op, res

    def query(self, cql: str, consistency: int = 0x0001) -> bytes:
        """Run one statement (consistency ONE by default); the RESULT body."""
        raw = cql.encode()
        body = struct.pack(">i", len(raw)) + raw + struct.pack(">HB", consistency, 0)
        return self._call(OP_QUERY, body)[1]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def asks_for_login(host: str, port: int, timeout: float = 3.0) -> bool:
    """Health: a TLS handshake verified with the stack CA, then STARTUP answered AUTHENTICATE."""
    try:
        Cql(host, port, None, None, timeout).close()
    except CqlError as e:
        return e.code == BAD_CREDENTIALS
    except (OSError, ssl.SSLError, StackError, struct.error):
        return False
    return False  # READY: the node serves anonymous clients, not this profile


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _admin_session(host: str, port: int, deadline: float) -> Cql:
    """Log in as cdc_admin, creating it with the default superuser on the first secure start."""
    admin_pw = tls.password(f"cassandra-{ADMIN}")
    last: Exception | None = None
    created = False
    while True:
        try:
            return Cql(host, port, ADMIN, admin_pw)
        except CqlError as e:
            if e.code != BAD_CREDENTIALS:
                last = e
            else:
                try:
                    boot = Cql(host, port, DEFAULT_SUPERUSER, DEFAULT_SUPERUSER)
                except CqlError as e2:
                    last = e2  # the default role may not exist yet (created after startup)
                else:
                    log(f"cassandra: first start with authentication: creating {ADMIN}, "
                        f"disabling the default superuser")  # fmt: skip
                    try:  # CREATE, or (a role from lost secrets) a new password: not both at once
                        verb = "ALTER ROLE" if created else "CREATE ROLE IF NOT EXISTS"
                        boot.query(f"{verb} {ADMIN} WITH SUPERUSER = true AND LOGIN = true "
                                   f"AND PASSWORD = {_q(admin_pw)}")  # fmt: skip
                        created = True
                    finally:
                        boot.close()
                    continue
        except (OSError, ssl.SSLError, StackError) as e:
            last = e
        if time.monotonic() > deadline:
            raise StackError(
                f"cassandra: cannot log in as {ADMIN} nor bootstrap it with the default "
                f"superuser ({type(last).__name__}: {last}); if the state's secrets were lost, "
                f"remove {tls.STATE / 'cassandra'} and run `hack/stack up cassandra` again"
            )
        time.sleep(1)


def _can_login(host: str, port: int, role: str, password: str) -> bool:
    try:
        Cql(host, port, role, password).close()
    except CqlError:
        return False
    return True


def ensure_roles(host: str, port: int, timeout: float = 90) -> None:
    """Idempotently: cdc_admin, the per-client roles with their passwords and grants, and the
    default superuser disabled."""
    c = _admin_session(host, port, time.monotonic() + timeout)
    try:
        for role, perms in ROLES.items():
            pw = tls.password(f"cassandra-{role}")
            c.query(f"CREATE ROLE IF NOT EXISTS {role} WITH LOGIN = true AND PASSWORD = {_q(pw)}")
            if not _can_login(host, port, role, pw):  # Cassandra limits password changes
                c.query(f"ALTER ROLE {role} WITH SUPERUSER = false AND LOGIN = true "
                        f"AND PASSWORD = {_q(pw)}")  # fmt: skip
            for perm, resource in perms:
                c.query(f"GRANT {perm} ON {resource} TO {role}")
        if _can_login(host, port, DEFAULT_SUPERUSER, DEFAULT_SUPERUSER):
            c.query(f"ALTER ROLE {DEFAULT_SUPERUSER} WITH SUPERUSER = false AND LOGIN = false "
                    f"AND PASSWORD = {_q(secrets.token_urlsafe(24))}")  # fmt: skip
    finally:
        c.close()


def env() -> dict[str, str]:
    out = {
        "CASSANDRA_CA_FILE": str(tls.CA_CRT),
        "CASSANDRA_USERNAME": ADMIN,
        "CASSANDRA_PASSWORD_FILE": str(tls.SECRETS_DIR / f"cassandra-{ADMIN}.password"),
    }
    for role, key in ENV_KEYS.items():
        out[f"CASSANDRA_{key}_USERNAME"] = role
        out[f"CASSANDRA_{key}_PASSWORD_FILE"] = str(tls.SECRETS_DIR / f"cassandra-{role}.password")
    return out
