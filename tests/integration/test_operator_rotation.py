"""Credentials through the real operator and real worker Pods on the local node (issue #12).

Each test gets its own PostgreSQL login role and its own Kafka SCRAM user (with ACLs for its
own topic, group and dead-letter prefixes), so rotating their passwords touches nothing the
stack's other users rely on. The pipeline runs on the secure endpoints: OpenBao over https
(token from a Secret), Kafka SASL_SSL with SCRAM-SHA-512, PostgreSQL verify-full, Redis TLS.
Events are produced in the Debezium Cassandra connector's shape straight to the table's topic
(tests/support/events.py); the source table exists in Cassandra because the worker reads its
schema there.

- Rotation: the role's and the SCRAM user's passwords change (ALTER ROLE, SCRAM upsert) and the
  new ones are written to Vault while events keep flowing; the operator's Secret changes, the
  worker Deployment rolls to a new Pod, and every event produced before, during and after is in
  PostgreSQL, with no dead letter.
- Wrong credentials, per hop: Vault holds a wrong PostgreSQL (or Kafka) password; the worker's
  log and readiness name the hop, the pipeline shows its workers unavailable, nothing is
  applied and nothing is dead-lettered; once Vault holds the right one, the pipeline catches up
  and PostgreSQL holds every event.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from tests.conftest import REPO
from tests.support import cassandra as stack_cassandra
from tests.support.events import cell, envelope
from tests.support.kube import Cluster, Operator, drop_finalizers
from tests.support.worker_proc import free_port, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600), pytest.mark.k8s, pytest.mark.long]

IMAGE = "localhost/cass-cdc-pg:dev"
PIPELINE = "shop"
WORKERS = "app.kubernetes.io/component=worker"


@pytest.fixture(scope="module")
def env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    return stack("postgres", "redis", "vault", "kafka", "cassandra", "k8s", "node")


@pytest.fixture(scope="module")
def image() -> str:
    """`make image` (seconds when nothing changed): the worker Pods run this tree's code."""
    res = subprocess.run(["make", "-s", "image"], cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"make image failed:\n{res.stdout}\n{res.stderr}", pytrace=False)
    return IMAGE


def _pw() -> str:
    return secrets.token_urlsafe(18)


@dataclass
class Rig:
    """One pipeline's world: namespace, PostgreSQL role, SCRAM user, Cassandra table, Vault."""

    env: dict[str, str]
    cluster: Cluster
    ns: str
    ident: str
    pg_password: str = field(default_factory=_pw)
    kafka_password: str = field(default_factory=_pw)
    next_id: int = 0
    # The workers' HTTP port (CDC_OPERATOR_WORKER_HTTP_PORT): the local node shares the host's
    # network, where a process binding 0.0.0.0:8081 would keep every worker Pod from starting.
    worker_port: int = field(default_factory=free_port)
    pg_ca: str | None = None  # a CA bundle for PostgreSQL other than the stack's (untrusted)

    # Names -----------------------------------------------------------------------------
    @property
    def role(self) -> str:
        return f"rot_{self.ident}"  # also the PostgreSQL schema the worker creates

    @property
    def kafka_user(self) -> str:
        return f"rot-{self.ident}"

    @property
    def keyspace(self) -> str:
        return f"rot_{self.ident}"

    @property
    def topic_prefix(self) -> str:
        return f"{self.env['KAFKA_SECURE_TOPIC_PREFIX']}{self.ns}"

    @property
    def topic(self) -> str:
        return f"{self.topic_prefix}.{self.keyspace}.orders"

    @property
    def dlq(self) -> str:
        return f"{self.env['KAFKA_SECURE_DLQ_PREFIX']}{self.ns}"

    @property
    def group(self) -> str:
        return f"{self.env['KAFKA_SECURE_GROUP_PREFIX']}{self.ns}"

    # Services ----------------------------------------------------------------------------
    def admin(self) -> AdminClient:
        # The PLAINTEXT listener's principal is the stack's super user: it manages users/ACLs.
        return AdminClient({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP_SERVERS"]})

    def pg(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.env["PG_DSN"], autocommit=True)

    def vault(self) -> hvac.Client:
        return hvac.Client(url=self.env["VAULT_TLS_ADDR"], token=self.env["VAULT_TOKEN"],
                           verify=self.env["CDC_STACK_CA"])  # fmt: skip

    def set_pg_password(self, password: str) -> None:
        with self.pg() as c:
            c.execute("SET password_encryption = 'scram-sha-256'")
            c.execute(f"ALTER ROLE {self.role} WITH LOGIN PASSWORD '{password}'")

    def set_kafka_password(self, password: str) -> None:
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
        up = UserScramCredentialUpsertion(self.kafka_user, info, password.encode())
        admin = self.admin()  # kept alive until the futures resolve
        for f in admin.alter_user_scram_credentials([up]).values():
            f.result(30)

    def write_vault(self, what: str, username: str, password: str) -> None:
        self.vault().secrets.kv.v2.create_or_update_secret(
            path=f"{self.ns}/{what}", secret={"username": username, "password": password},
            mount_point="secret",
        )  # fmt: skip

    def acls(self) -> list[AclBinding]:
        user = f"User:{self.kafka_user}"

        def acl(rtype: ResourceType, name: str, op: AclOperation) -> AclBinding:
            return AclBinding(rtype, name, ResourcePatternType.PREFIXED, user, "*", op,
                              AclPermissionType.ALLOW)  # fmt: skip

        return [
            *(acl(ResourceType.TOPIC, self.topic_prefix, op)
              for op in (AclOperation.READ, AclOperation.DESCRIBE)),
            *(acl(ResourceType.GROUP, self.group, op)
              for op in (AclOperation.READ, AclOperation.DESCRIBE)),
            *(acl(ResourceType.TOPIC, self.dlq, op)
              for op in (AclOperation.WRITE, AclOperation.DESCRIBE)),
        ]  # fmt: skip

    def setup(self, wrong: dict[str, str] | None = None) -> None:
        """Role, SCRAM user and ACLs, source table, Vault paths (`wrong`: hop -> a wrong
        password Vault holds instead of the right one), the Vault token Secret."""
        wrong = wrong or {}
        with self.pg() as c:
            c.execute(f"CREATE ROLE {self.role} LOGIN")
            c.execute(f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE cdc TO {self.role}")
        self.set_pg_password(self.pg_password)
        self.set_kafka_password(self.kafka_password)
        admin = self.admin()
        for f in admin.create_acls(self.acls()).values():
            f.result(30)
        cas = stack_cassandra.cluster(self.env)
        try:
            s = cas.connect()
            s.execute(f"CREATE KEYSPACE {self.keyspace} WITH replication = "
                      "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
            s.execute(f"CREATE TABLE {self.keyspace}.orders (id int PRIMARY KEY, v text)")
        finally:
            cas.shutdown()
        stack_pw = {k: Path(self.env[k]).read_text().strip()
                    for k in ("KAFKA_OPERATOR_PASSWORD_FILE", "REDIS_PASSWORD_FILE")}  # fmt: skip
        self.write_vault("postgres", self.role, wrong.get("postgres", self.pg_password))
        self.write_vault("kafka-worker", self.kafka_user,
                         wrong.get("kafka", self.kafka_password))  # fmt: skip
        # The operator's own Kafka login and Redis: the stack's users, never rotated here.
        self.write_vault("kafka-operator", self.env["KAFKA_OPERATOR_USER"],
                         stack_pw["KAFKA_OPERATOR_PASSWORD_FILE"])  # fmt: skip
        self.write_vault("redis", self.env["REDIS_USER"], stack_pw["REDIS_PASSWORD_FILE"])
        self.cluster.run("create", "secret", "generic", "vault-token", "-n", self.ns,
                         f"--from-literal=token={self.env['VAULT_TOKEN']}")  # fmt: skip
        # Cassandra (TLS with the stack CA, a login): the stack's operator role, never rotated.
        self.cluster.apply(stack_cassandra.secret_manifest(self.env, self.ns))

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self.cluster.run("delete", "deployment", "-n", self.ns, "-l", WORKERS,
                             "--wait=true", "--timeout=60s", check=False)  # fmt: skip
            wait_for(lambda: not self.pods(), 60, "the worker Pods gone")
        with contextlib.suppress(Exception), self.pg() as c:
            c.execute(f"DROP SCHEMA IF EXISTS {self.role} CASCADE")
            c.execute(f"DROP OWNED BY {self.role}")
            c.execute(f"DROP ROLE IF EXISTS {self.role}")
        admin = self.admin()
        with contextlib.suppress(Exception):
            gone = UserScramCredentialDeletion(self.kafka_user, ScramMechanism.SCRAM_SHA_512)
            for f in admin.alter_user_scram_credentials([gone]).values():
                f.result(30)
        with contextlib.suppress(Exception):
            filt = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY,
                                    f"User:{self.kafka_user}", None, AclOperation.ANY,
                                    AclPermissionType.ANY)  # fmt: skip
            for f in admin.delete_acls([filt]).values():
                f.result(30)
        with contextlib.suppress(Exception):
            for f in admin.delete_topics([self.topic, self.dlq]).values():
                f.result(30)
        with contextlib.suppress(Exception):
            cas = stack_cassandra.cluster(self.env)
            try:
                cas.connect().execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}")
            finally:
                cas.shutdown()

    # The pipeline ----------------------------------------------------------------------------
    def pipeline(self, image: str) -> list[dict[str, Any]]:
        env, ca = self.env, Path(self.env["CDC_STACK_CA"]).read_text()
        spec = {
            "cassandra": stack_cassandra.pipeline_spec(env),
            "debezium": {"topicPrefix": self.topic_prefix},
            "kafka": {"bootstrapServers": env["KAFKA_SASL_SSL_BOOTSTRAP"],
                      "securityProtocol": "SASL_SSL", "saslMechanism": env["KAFKA_SASL_MECHANISM"],
                      "caBundle": ca, "credentials": {"vaultPath": f"{self.ns}/kafka-worker"},
                      "operatorCredentials": {"vaultPath": f"{self.ns}/kafka-operator"},
                      "deadLetterTopic": self.dlq, "topic": {"partitions": 2}},
            "postgres": {"host": env["PG_SECURE_HOST"], "port": int(env["PG_SECURE_PORT"]),
                         "database": "cdc", "schema": self.role, "sslMode": "verify-full",
                         "caBundle": self.pg_ca or ca,
                         "credentials": {"vaultPath": f"{self.ns}/postgres"}},
            "redis": {"url": env["REDIS_TLS_URL"], "caBundle": ca,
                      "credentials": {"vaultPath": f"{self.ns}/redis"}},
            # Refreshed every 2 s (the operator's timer runs every 2 s in these tests).
            "vault": {"address": env["VAULT_TLS_ADDR"], "caBundle": ca, "refreshInterval": "2s",
                      "auth": {"tokenSecretRef": {"name": "vault-token"}}},
            "worker": {"image": image, "imagePullPolicy": "Never", "replicas": 1},
        }  # fmt: skip
        return [
            {"apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
             "metadata": {"name": PIPELINE, "namespace": self.ns}, "spec": spec},
            {"apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
             "metadata": {"name": "orders", "namespace": self.ns},
             "spec": {"pipelineRef": {"name": PIPELINE},
                      "source": {"keyspace": self.keyspace, "table": "orders"}}},
        ]  # fmt: skip

    # Events ------------------------------------------------------------------------------
    def events(self, n: int) -> list[tuple[bytes | None, bytes | None]]:
        """`n` inserts with new ids (value `v<id>`), in the real connector's shape."""
        base = int(time.time() * 1_000_000)
        out: list[tuple[bytes | None, bytes | None]] = []
        for _ in range(n):
            i, self.next_id = self.next_id, self.next_id + 1
            value = envelope("i", base + i, self.keyspace, "orders",
                             {"id": cell(i), "v": cell(f"v{i}")})  # fmt: skip
            out.append((json.dumps({"id": i}).encode(), value))
        return out

    def produce(self, n: int) -> None:
        produce(self.env["KAFKA_BOOTSTRAP_SERVERS"], self.topic, self.events(n))

    def rows(self) -> list[tuple[int, str]]:
        with self.pg() as c:
            try:
                return c.execute(f"SELECT id, v FROM {self.role}.orders ORDER BY id").fetchall()
            except psycopg.errors.UndefinedTable:
                return []

    def expected(self) -> list[tuple[int, str]]:
        return [(i, f"v{i}") for i in range(self.next_id)]

    def dead_letters(self) -> int:
        c = Consumer({"bootstrap.servers": self.env["KAFKA_BOOTSTRAP_SERVERS"],
                      "group.id": f"t-{uuid.uuid4().hex[:8]}"})  # fmt: skip
        try:
            meta = c.list_topics(self.dlq, timeout=10).topics.get(self.dlq)
            if meta is None or meta.error is not None:
                return 0
            total = 0
            for p in meta.partitions:
                low, high = c.get_watermark_offsets(TopicPartition(self.dlq, p), timeout=10)
                total += high - low
            return total
        finally:
            c.close()

    # Kubernetes ---------------------------------------------------------------------------
    def pods(self) -> list[dict[str, Any]]:
        res = self.cluster.run("get", "pods", "-n", self.ns, "-l", WORKERS, "-o", "json")
        return [p for p in json.loads(res.stdout)["items"]
                if not p["metadata"].get("deletionTimestamp")]  # fmt: skip

    def ready_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.pods()
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in p["status"].get("conditions") or [])]  # fmt: skip

    def deployment(self) -> dict[str, Any]:
        return self.cluster.get("deployment", f"{PIPELINE}-worker", self.ns) or {}

    def secret(self) -> dict[str, Any]:
        return self.cluster.get("secret", f"{PIPELINE}-credentials", self.ns) or {}

    def secret_values(self) -> dict[str, str]:
        data = self.secret().get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def template_version(self) -> str:
        tpl = self.deployment().get("spec", {}).get("template", {}).get("metadata", {})
        return str((tpl.get("annotations") or {}).get("casscdc.io/secret-version", ""))

    def logs(self) -> str:
        return str(self.cluster.run("logs", "-n", self.ns, "-l", WORKERS, "--tail=-1",
                                    "--prefix", check=False).stdout)  # fmt: skip

    def pipeline_obj(self) -> dict[str, Any]:
        return self.cluster.get("cdcp", PIPELINE, self.ns) or {}

    def condition(self, type_: str) -> dict[str, Any]:
        for c in (self.pipeline_obj().get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return dict(c)
        return {}

    def describe(self, op: Operator | None = None) -> str:
        """What a failed wait shows: pipeline status, Pods, worker and operator logs."""
        status = json.dumps(self.pipeline_obj().get("status"), indent=1)[-3000:]
        pods = [(p["metadata"]["name"], p["status"].get("phase"),
                 [(c["type"], c["status"]) for c in p["status"].get("conditions") or []])
                for p in self.pods()]  # fmt: skip
        out = f"status: {status}\npods: {pods}\nworker logs:\n{self.logs()[-4000:]}"
        if op is not None:
            out += f"\noperator log:\n{op.logs()[-3000:]}"
        return out


def readyz(pod: dict[str, Any], port: int) -> str:
    """The worker's own readiness answer (it binds its Pod IP on the local node)."""
    ip = pod["status"].get("podIP")
    if not ip:
        return ""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/readyz", timeout=2) as r:
            return str(r.read().decode())
    except urllib.error.HTTPError as e:
        return str(e.read().decode())
    except OSError:
        return ""


@pytest.fixture
def rig(cluster: Cluster, env: dict[str, str], image: str) -> Iterator[Rig]:
    ident = uuid.uuid4().hex[:6]
    ns = f"rot-{ident}"
    cluster.run("create", "namespace", ns)
    r = Rig(env, cluster, ns, ident)
    try:
        yield r
    finally:
        r.teardown()
        drop_finalizers(cluster.kubeconfig, ns)
        cluster.run("delete", "namespace", ns, "--wait=false", check=False)
        cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{ns}", check=False)


def _start(rig: Rig, tmp_path: Path) -> Operator:
    op = Operator(rig.cluster, rig.ns, tmp_path).start(
        CDC_OPERATOR_ALLOWED_IMAGES="localhost/cass-cdc-pg:*",
        CDC_OPERATOR_WORKER_HTTP_PORT=str(rig.worker_port),
    )
    rig.cluster.apply(rig.pipeline(IMAGE))
    return op


def until(check: Callable[[], bool], timeout: float, what: str, rig: Rig,
          op: Operator | None = None) -> None:  # fmt: skip
    """wait_for, with the pipeline's state described when it times out (not before)."""
    try:
        wait_for(check, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{rig.describe(op)}") from None


def _no_secret_in(text: str, *values: str) -> None:
    for v in values:
        assert v not in text, "a password appears in a log"


def test_rotating_postgres_and_kafka_passwords_rolls_workers_without_loss(
    rig: Rig, tmp_path: Path
) -> None:
    started = time.monotonic()
    rig.setup()
    op = _start(rig, tmp_path)
    try:
        until(lambda: len(rig.ready_pods()) == 1
              and rig.condition("Ready").get("status") == "True",
              150, "a ready pipeline and worker", rig, op)  # fmt: skip
        rig.produce(200)
        until(lambda: len(rig.rows()) == 200, 60, "the first 200 events", rig, op)
        old_pods = {p["metadata"]["name"] for p in rig.pods()}
        old_secret_rv = rig.secret()["metadata"]["resourceVersion"]
        old_template = rig.template_version()
        assert old_template == old_secret_rv
        old_pg, old_kafka = rig.pg_password, rig.kafka_password
        assert rig.secret_values()["POSTGRES_PASSWORD"] == old_pg

        # Events keep coming while the passwords change and the workers roll.
        stop = threading.Event()
        errors: list[BaseException] = []

        def trickle() -> None:
            try:
                while not stop.is_set():
                    rig.produce(20)
                    time.sleep(0.25)
            except BaseException as e:  # surfaced by the main thread
                errors.append(e)

        producer = threading.Thread(target=trickle, daemon=True)
        producer.start()
        time.sleep(1.5)
        # The rotation, as an operator of the databases does it: new passwords in the
        # services first (the running worker keeps its open sessions), then in Vault.
        rig.pg_password, rig.kafka_password = _pw(), _pw()
        rig.set_pg_password(rig.pg_password)
        rig.set_kafka_password(rig.kafka_password)
        time.sleep(1.5)  # the old credentials are now refused for any new connection
        rig.write_vault("postgres", rig.role, rig.pg_password)
        rig.write_vault("kafka-worker", rig.kafka_user, rig.kafka_password)
        rotated = time.monotonic()

        until(lambda: rig.secret_values().get("POSTGRES_PASSWORD") == rig.pg_password
              and rig.secret_values().get("KAFKA_PASSWORD") == rig.kafka_password,
              30, "the operator's Secret refreshed from Vault", rig, op)  # fmt: skip
        secret_rv = rig.secret()["metadata"]["resourceVersion"]
        assert secret_rv != old_secret_rv
        until(
            lambda: rig.template_version() == secret_rv,
            30,
            "the pod template annotated with the new Secret",
            rig,
            op,
        )

        def rolled() -> bool:
            ready = rig.ready_pods()
            pods = rig.pods()
            return (len(ready) == 1 and len(pods) == 1
                    and ready[0]["metadata"]["name"] not in old_pods)  # fmt: skip

        until(rolled, 120, "the worker rolled to a new ready Pod", rig, op)
        rolled_after = time.monotonic() - rotated
        time.sleep(2)
        stop.set()
        producer.join(30)
        assert not errors, errors
        rig.produce(200)  # after the rotation, through the new Pod only
        total = rig.next_id
        until(lambda: len(rig.rows()) == total, 90, f"all {total} events in PostgreSQL", rig, op)
        assert rig.rows() == rig.expected()
        assert rig.dead_letters() == 0
        assert total > 400  # events were produced during the rotation
        # The new Pod holds the new passwords; none appears in a log.
        _no_secret_in(rig.logs() + op.logs(), old_pg, old_kafka, rig.pg_password,
                      rig.kafka_password)  # fmt: skip
        assert rig.condition("Ready").get("status") == "True", rig.describe(op)
        print(
            f"rotation: rolled {rolled_after:.1f}s after Vault changed; {total} events; "
            f"test {time.monotonic() - started:.1f}s"
        )
    finally:
        op.stop()


# What each hop's refusal looks like in the worker's own log line (which also says why) and in
# its readiness: both name the hop (the worker's structured line, not librdkafka's own output).
# The pipeline's condition carries only a code naming the hop (worker hops.py), never the text.
HOP_SIGNS = {
    "postgres": ('"what": "postgres_connect"', "password authentication failed",
                 "postgres_connect: ", "PostgresAuthFailed"),
    "kafka": ('"event": "kafka_refused"', "authentication failed", "kafka authentication failed",
              "KafkaAuthFailed"),
    "postgres-tls": ('"what": "postgres_connect"', "certificate verify failed",
                     "postgres_connect: ", "PostgresTlsFailed"),
}  # fmt: skip


def foreign_ca(tmp: Path) -> str:
    """A CA certificate that signed none of the stack's servers."""
    key, crt = tmp / "foreign.key", tmp / "foreign.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=not-the-stack-ca"],
                   check=True, capture_output=True)  # fmt: skip
    return crt.read_text()


@pytest.mark.parametrize("hop", ["postgres", "kafka", "postgres-tls"])
def test_wrong_credentials_name_the_hop_and_nothing_is_lost_once_fixed(
    rig: Rig, tmp_path: Path, hop: str
) -> None:
    started = time.monotonic()
    wrong = _pw()
    if hop == "postgres-tls":  # the right password, but a CA that did not sign the server
        rig.pg_ca = foreign_ca(tmp_path)
        rig.setup()
    else:
        rig.setup(wrong={hop: wrong})
    op = _start(rig, tmp_path)
    try:
        until(lambda: rig.condition("SecretsReady").get("status") == "True" and bool(rig.pods()),
              120, "the Secret and a worker Pod", rig, op)  # fmt: skip
        rig.produce(150)  # produced while the worker cannot get through
        log_sign, why, ready_sign, code = HOP_SIGNS[hop]
        until(lambda: log_sign in rig.logs(), 90, f"a worker log line saying {log_sign!r}",
              rig, op)  # fmt: skip
        line = next(ln for ln in rig.logs().splitlines() if log_sign in ln)
        assert why in line.lower(), line  # and says why
        # Readiness says why, naming the hop; the pipeline shows its workers unavailable.
        until(lambda: any(ready_sign in readyz(p, rig.worker_port).lower()
                          for p in rig.pods()), 60,
              f"the worker's readiness naming {hop}", rig, op)  # fmt: skip
        assert not rig.ready_pods()
        until(lambda: rig.condition("WorkersAvailable").get("reason") == code
              and rig.condition("Ready").get("status") == "False", 30,
              f"the pipeline not ready, WorkersAvailable naming the hop ({code})",
              rig, op)  # fmt: skip
        assert rig.condition("WorkersAvailable")["status"] == "False"
        assert rig.role not in rig.condition("WorkersAvailable")["message"]
        time.sleep(3)
        assert rig.rows() == []
        assert rig.dead_letters() == 0
        _no_secret_in(rig.logs() + op.logs(), wrong, rig.pg_password, rig.kafka_password)

        # The fix: the right password in Vault (the operator refreshes it), or the right CA in
        # the spec. Either way the worker rolls.
        old_pods = {p["metadata"]["name"] for p in rig.pods()}
        if hop == "postgres":
            rig.write_vault("postgres", rig.role, rig.pg_password)
        elif hop == "kafka":
            rig.write_vault("kafka-worker", rig.kafka_user, rig.kafka_password)
        else:
            rig.pg_ca = None
            rig.cluster.apply(rig.pipeline(IMAGE))
        until(lambda: any(p["metadata"]["name"] not in old_pods for p in rig.ready_pods()),
              120, "a new worker Pod ready with the fixed credentials", rig, op)  # fmt: skip
        rig.produce(150)
        total = rig.next_id
        until(lambda: len(rig.rows()) == total, 90, f"all {total} events in PostgreSQL", rig, op)
        assert rig.rows() == rig.expected()
        assert rig.dead_letters() == 0
        until(lambda: rig.condition("Ready").get("status") == "True", 30, "the pipeline ready",
              rig, op)  # fmt: skip
        _no_secret_in(rig.logs() + op.logs(), wrong, rig.pg_password, rig.kafka_password)
        print(f"{hop}: test {time.monotonic() - started:.1f}s")
    finally:
        op.stop()
