"""The stack's secure listeners (issue #12), through the clients the product uses.

Each one must accept the right credentials when the client trusts only the stack CA
and checks the host name, and refuse a wrong password, a plaintext attempt and a
server certificate checked against another (throwaway) CA. Kafka's ACLs let the
`worker` user consume its topics and nothing else. Real services from hack/stack.
"""

from __future__ import annotations

import socket
import ssl
import struct
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hvac
import psycopg
import pytest
import redis
import requests
from cassandra import Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import NoHostAvailable
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.support import cassandra as stack_cassandra

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    return stack("postgres", "redis", "vault", "kafka")


@pytest.fixture(scope="module")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA nobody uses: trusting it instead of the stack CA must fail every handshake."""
    crt = tmp_path_factory.mktemp("rogue") / "ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
         str(crt.with_suffix(".key")), "-subj", "/CN=rogue-ca", "-days", "1", "-out", str(crt),
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(crt)


def _secret(env: dict[str, str], var: str) -> str:
    return Path(env[var]).read_text().strip()


def _port(url: str) -> int:
    port = urlsplit(url if "//" in url else f"//{url}").port
    assert port is not None
    return port


def _handshake(port: int, ca: str, hostname: str, *, pg: bool = False) -> None:
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        if pg:  # PostgreSQL negotiates TLS on its port with an SSLRequest first
            raw.sendall(struct.pack(">ii", 8, 80877103))
            assert raw.recv(1) == b"S"
        with ctx.wrap_socket(raw, server_hostname=hostname) as s:
            assert s.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("var", ["PG_SECURE_PORT", "REDIS_TLS_URL", "VAULT_TLS_ADDR",
                                 "KAFKA_SASL_SSL_BOOTSTRAP"])  # fmt: skip
def test_every_listener_proves_its_name_with_the_stack_ca(
    env: dict[str, str], rogue_ca: str, var: str
) -> None:
    port, pg = (int(env[var]), True) if var == "PG_SECURE_PORT" else (_port(env[var]), False)
    for name in ("localhost", "127.0.0.1"):
        _handshake(port, env["CDC_STACK_CA"], name, pg=pg)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|IP address"):
        _handshake(port, env["CDC_STACK_CA"], "not-in-the-cert.invalid", pg=pg)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(port, rogue_ca, "localhost", pg=pg)


# ---- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_app_role_over_verify_full(env: dict[str, str]) -> None:
    with psycopg.connect(env["PG_SECURE_DSN"], password=_secret(env, "PG_APP_PASSWORD_FILE"),
                         connect_timeout=5) as conn:  # fmt: skip
        row = conn.execute(
            "SELECT current_user, ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None
    assert row[0] == env["PG_APP_USER"]
    assert row[1] is True
    assert row[2] in ("TLSv1.2", "TLSv1.3")


def test_postgres_app_role_refuses_wrong_password_plaintext_and_rogue_ca(
    env: dict[str, str], rogue_ca: str
) -> None:
    dsn, password = env["PG_SECURE_DSN"], _secret(env, "PG_APP_PASSWORD_FILE")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn, password=password + "x", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match=r"no encryption|rejects connection"):
        psycopg.connect(dsn, password=password, sslmode="disable", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(dsn, password=password, sslrootcert=rogue_ca, connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="does not match host name"):
        psycopg.connect(dsn, password=password, host="wrong.invalid", hostaddr="127.0.0.1",
                        connect_timeout=5)  # fmt: skip


def test_postgres_superuser_plaintext_is_unchanged(env: dict[str, str]) -> None:
    with psycopg.connect(env["PG_DSN"], sslmode="disable", connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("cdc",)


# ---- Redis --------------------------------------------------------------------------------


def _redis(env: dict[str, str], *, ca: str | None = None, password: str | None = None,
           **kw: object) -> redis.Redis:  # fmt: skip
    return redis.Redis.from_url(
        env["REDIS_TLS_URL"],
        password=password if password is not None else _secret(env, "REDIS_PASSWORD_FILE"),
        ssl_ca_certs=ca or env["CDC_STACK_CA"],
        ssl_check_hostname=True,
        socket_timeout=5,
        socket_connect_timeout=5,
        **kw,  # type: ignore[arg-type]
    )


def test_redis_acl_user_over_tls_runs_what_worker_and_operator_need(env: dict[str, str]) -> None:
    c = _redis(env)
    assert c.ping()  # as `cdc`: the key and command limits below prove it is not `default`
    key = f"cdc:test-{uuid.uuid4().hex[:8]}"
    pipe = c.pipeline()
    pipe.hset(f"{key}:worker:w1", mapping={"ts": 1, "lagEvents": 2})
    pipe.hincrby(f"{key}:table:ks.t", "applied", 3)
    pipe.expire(f"{key}:worker:w1", 30)
    pipe.execute()
    c.set(f"{key}:paused", "1")
    assert c.mget([f"{key}:paused"]) == [b"1"]
    assert list(c.scan_iter(f"{key}:worker:*")) == [f"{key}:worker:w1".encode()]
    assert c.hgetall(f"{key}:table:ks.t") == {b"applied": b"3"}
    c.delete(f"{key}:paused", f"{key}:worker:w1", f"{key}:table:ks.t")
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.set("not-cdc:key", "1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.flushall()


def test_redis_tls_refuses_wrong_password_plaintext_and_rogue_ca(
    env: dict[str, str], rogue_ca: str
) -> None:
    with pytest.raises(redis.exceptions.AuthenticationError):
        _redis(env, password="wrong").ping()
    with pytest.raises(redis.exceptions.ConnectionError):
        _redis(env, ca=rogue_ca).ping()
    plain = redis.Redis(host="127.0.0.1", port=_port(env["REDIS_TLS_URL"]), username="cdc",
                        password=_secret(env, "REDIS_PASSWORD_FILE"), socket_timeout=2,
                        socket_connect_timeout=2)  # fmt: skip
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()


# ---- OpenBao ------------------------------------------------------------------------------


def test_vault_https_listener(env: dict[str, str], rogue_ca: str) -> None:
    addr, ca = env["VAULT_TLS_ADDR"], env["CDC_STACK_CA"]
    client = hvac.Client(url=addr, token=env["VAULT_TOKEN"], verify=ca)
    assert client.is_authenticated()
    path = f"test/{uuid.uuid4().hex}"
    client.secrets.kv.v2.create_or_update_secret(path=path, secret={"k": "v"})
    read = client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)
    assert read["data"]["data"] == {"k": "v"}
    client.secrets.kv.v2.delete_metadata_and_all_versions(path=path)
    assert not hvac.Client(url=addr, token="wrong-token", verify=ca).is_authenticated()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{addr}/v1/sys/health", verify=rogue_ca, timeout=5)
    plain = requests.get(f"http://127.0.0.1:{_port(addr)}/v1/sys/health", timeout=5)
    assert plain.status_code == 400  # "Client sent an HTTP request to an HTTPS server"


# ---- Kafka --------------------------------------------------------------------------------


def _sasl(env: dict[str, str], user: str, *, password: str | None = None,
          ca: str | None = None) -> dict[str, str | int]:  # fmt: skip
    return {
        "bootstrap.servers": env["KAFKA_SASL_SSL_BOOTSTRAP"],
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": env["KAFKA_SASL_MECHANISM"],
        "sasl.username": user,
        "sasl.password": password or _secret(env, f"KAFKA_{user.upper()}_PASSWORD_FILE"),
        "ssl.ca.location": ca or env["CDC_STACK_CA"],
        "ssl.endpoint.identification.algorithm": "https",
    }


def _consume_one(conf: dict[str, str | int], topic: str) -> tuple[bytes | None, KafkaError | None]:
    consumer = Consumer({**conf, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is not None:
                return msg.value(), msg.error()
        return None, None
    finally:
        consumer.close()


def test_kafka_acls_let_the_worker_consume_its_topics_only(env: dict[str, str]) -> None:
    run = uuid.uuid4().hex[:8]
    ours = f"{env['KAFKA_SECURE_TOPIC_PREFIX']}test{run}.ks.t"
    dlq = f"{env['KAFKA_SECURE_DLQ_PREFIX']}test{run}"
    other = f"other.test{run}"
    operator = AdminClient(_sasl(env, "operator"))
    for t in (ours, dlq):
        operator.create_topics([NewTopic(t, num_partitions=1, replication_factor=1)])[t].result(30)
    plain = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    plain.create_topics([NewTopic(other, num_partitions=1, replication_factor=1)])[other].result(30)
    with pytest.raises(KafkaException, match=r"TOPIC_AUTHORIZATION_FAILED|not authorized"):
        operator.create_topics([NewTopic(f"other2.{run}", 1, 1)])[f"other2.{run}"].result(30)
    try:
        for topic in (ours, other):  # the plaintext listener (User:ANONYMOUS) is a super user
            p = Producer({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
            p.produce(topic, value=b"event")
            assert p.flush(30) == 0
        agent = Producer(_sasl(env, "agent"))
        agent.produce(ours, value=b"from-agent")
        assert agent.flush(30) == 0
        worker = {**_sasl(env, "worker"), "group.id": f"{env['KAFKA_SECURE_GROUP_PREFIX']}t{run}"}
        assert _consume_one(worker, ours) == (b"event", None)
        value, err = _consume_one(worker, other)
        assert value is None or err is not None
        assert err is not None
        assert err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
        errors: list[KafkaError] = []
        w = Producer({**_sasl(env, "worker"), "error_cb": errors.append})
        w.produce(dlq, value=b"dead letter")
        w.produce(ours, value=b"forged", on_delivery=lambda e, _m: e and errors.append(e))
        w.flush(30)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    finally:
        for t in (ours, dlq):
            operator.delete_topics([t])[t].result(30)
        plain.delete_topics([other])


def test_kafka_sasl_ssl_refuses_wrong_password_plaintext_and_rogue_ca(
    env: dict[str, str], rogue_ca: str
) -> None:
    attempts: list[tuple[dict[str, str | int], int]] = [
        (_sasl(env, "worker", password="wrong"), KafkaError._AUTHENTICATION),
        (_sasl(env, "worker", ca=rogue_ca), KafkaError._SSL),
        # A plaintext client is disconnected at its first request: all brokers look down.
        ({"bootstrap.servers": env["KAFKA_SASL_SSL_BOOTSTRAP"]}, KafkaError._ALL_BROKERS_DOWN),
    ]
    for conf, expected in attempts:
        errors: list[KafkaError] = []
        admin = AdminClient({**conf, "error_cb": errors.append, "log_level": 0})
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=3)
        admin.poll(0.1)
        assert expected in {e.code() for e in errors}, errors


# --- Cassandra: TLS required (stack CA), PasswordAuthenticator, least-privilege roles ---


@pytest.fixture(scope="module")
def cas_env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    return stack("cassandra")


def _cassandra(env: dict[str, str], role: str = "admin", **kw: Any) -> Any:
    """A connected session (the driver's errors raised as they come: NoHostAvailable)."""
    cluster = stack_cassandra.cluster(env, role, connect_timeout=5,
                                      control_connection_timeout=5, **kw)  # fmt: skip
    try:
        return cluster, cluster.connect()
    except Exception:
        cluster.shutdown()
        raise


def _refusal(env: dict[str, str], **kw: Any) -> str:
    with pytest.raises(NoHostAvailable) as e:
        _cassandra(env, **kw)
    return str(e.value)


def test_cassandra_tls_with_the_stack_ca_and_each_role_logs_in(cas_env: dict[str, str]) -> None:
    for role in ("admin", "worker", "operator", "agent"):
        cluster, session = _cassandra(cas_env, role)
        try:
            assert session.execute("SELECT release_version FROM system.local").one()[0]
            # Over TLS: the driver's connection is an SSL socket verified with the stack CA.
            conn = cluster.control_connection._connection
            assert isinstance(conn._socket, ssl.SSLSocket)
            assert conn._socket.version() in ("TLSv1.2", "TLSv1.3")
        finally:
            cluster.shutdown()


def test_cassandra_refuses_anonymous_wrong_password_plaintext_and_rogue_ca(
    cas_env: dict[str, str], rogue_ca: str
) -> None:
    user, password = stack_cassandra.credentials(cas_env, "worker")
    hosts, port = stack_cassandra.contact(cas_env)
    # Anonymous (TLS, no login): the node asks for credentials, the driver has none.
    assert "requires authentication" in _refusal(cas_env, auth_provider=None).lower()
    wrong = PlainTextAuthProvider(user, password + "x")
    assert "bad credentials" in _refusal(cas_env, auth_provider=wrong).lower()
    # The default superuser is disabled.
    _refusal(cas_env, auth_provider=PlainTextAuthProvider("cassandra", "cassandra"))
    # Plaintext to the TLS-only native port, with the right password: refused.
    _refusal(cas_env, role="worker", ssl_context=None)
    # The node's certificate checked against another CA: the handshake fails.
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(port, rogue_ca, hosts[0])
    _refusal(cas_env, role="worker", ssl_context=stack_cassandra.ssl_context(cas_env, rogue_ca))


def test_cassandra_roles_are_least_privilege(cas_env: dict[str, str]) -> None:
    ks = f"sec_{uuid.uuid4().hex[:8]}"
    admin, s = _cassandra(cas_env)
    try:
        s.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                  "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
        s.execute(f"CREATE TABLE {ks}.t (id int PRIMARY KEY, v text)")
        s.execute(f"INSERT INTO {ks}.t (id, v) VALUES (1, 'one')")
        worker, w = _cassandra(cas_env, "worker")
        operator, o = _cassandra(cas_env, "operator")
        try:
            # The worker reads source schemas and rows, and cannot change anything.
            assert w.execute(f"SELECT v FROM {ks}.t WHERE id = 1").one()[0] == "one"
            cols = w.execute("SELECT column_name FROM system_schema.columns "
                             "WHERE keyspace_name = %s AND table_name = 't'", (ks,))  # fmt: skip
            assert {r[0] for r in cols} == {"id", "v"}
            for stmt in (f"INSERT INTO {ks}.t (id, v) VALUES (2, 'two')",
                         f"DELETE FROM {ks}.t WHERE id = 1",
                         f"ALTER TABLE {ks}.t WITH cdc = true",
                         f"DROP TABLE {ks}.t"):  # fmt: skip
                with pytest.raises(Unauthorized):
                    w.execute(stmt)
            # The operator turns CDC on, and cannot write rows or drop tables.
            o.execute(f"ALTER TABLE {ks}.t WITH cdc = true")
            with pytest.raises(Unauthorized):
                o.execute(f"INSERT INTO {ks}.t (id, v) VALUES (3, 'three')")
            with pytest.raises(Unauthorized):
                o.execute(f"DROP TABLE {ks}.t")
            assert s.execute(f"SELECT count(*) FROM {ks}.t").one()[0] == 1
        finally:
            worker.shutdown()
            operator.shutdown()
    finally:
        s.execute(f"DROP KEYSPACE IF EXISTS {ks}")
        admin.shutdown()
