"""Trust boundaries, for real: Vault identity per pipeline, topic ownership, image allow-list.

The operator runs under the chart's RBAC (tests/support/kube.py) against the stack's API
server, OpenBao and Kafka. OpenBao's Kubernetes auth method is configured against the stack's
kube-apiserver (TokenReview through a reviewer account), with one role and policy per tenant.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import hvac
import pytest
import yaml
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.support.kube import Cluster, Operator, drop_finalizers
from tests.support.worker_proc import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.k8s, pytest.mark.long]


def _ns(cluster: Cluster, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cluster.run("create", "namespace", name)
    return name


@pytest.fixture
def namespaces(cluster: Cluster) -> Iterator[tuple[str, str]]:
    a, b = _ns(cluster, "ta"), _ns(cluster, "tb")
    yield a, b
    for n in (a, b):
        drop_finalizers(cluster.kubeconfig, n)
    cluster.run("delete", "namespace", a, b, "--wait=false", check=False)
    cluster.run("delete", "clusterrole,clusterrolebinding", f"cdc-operator-{a}", check=False)


@pytest.fixture
def k8s_auth(cluster: Cluster, env: dict[str, str]) -> Iterator[str]:
    """A Kubernetes auth mount in OpenBao that validates tokens with the stack's API server."""
    cluster.run("create", "serviceaccount", "vault-reviewer", "-n", "default", check=False)
    cluster.run("create", "clusterrolebinding", "vault-reviewer", "--clusterrole",
                "system:auth-delegator", "--serviceaccount", "default:vault-reviewer",
                check=False)  # fmt: skip
    reviewer = cluster.run("create", "token", "vault-reviewer", "-n", "default",
                           "--duration=2h").stdout.strip()  # fmt: skip
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]
    mount = f"k8s-{uuid.uuid4().hex[:6]}"
    vault = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
    vault.sys.enable_auth_method("kubernetes", path=mount)
    vault.write(f"auth/{mount}/config", kubernetes_host=admin["server"],
                kubernetes_ca_cert=base64.b64decode(admin["certificate-authority-data"]).decode(),
                token_reviewer_jwt=reviewer, disable_local_ca_jwt=True)  # fmt: skip
    yield mount
    vault.sys.disable_auth_method(mount)


def tenant(env: dict[str, str], mount: str, ns: str, role: str, account: str) -> None:
    vault = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
    vault.sys.create_or_update_policy(
        role, f'path "secret/data/{ns}/*" {{ capabilities = ["read"] }}'
    )
    vault.write(f"auth/{mount}/role/{role}", bound_service_account_names=[account],
                bound_service_account_namespaces=[ns], policies=[role], audience="vault",
                token_ttl="5m")  # fmt: skip
    vault.secrets.kv.v2.create_or_update_secret(
        path=f"{ns}/postgres", secret={"username": f"u-{ns}", "password": f"p-{ns}"},
        mount_point="secret",
    )  # fmt: skip


def pipeline(ns: str, name: str, env: dict[str, str], vault: dict[str, Any] | None = None,
             creds: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {
        "cassandra": {"contactPoints": ["127.0.0.1:59042"]},
        "debezium": {"topicPrefix": f"{ns}-{name}"},
        "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                  "deadLetterTopic": f"{ns}-{name}.dlq", "topic": {"partitions": 1}},
        "postgres": {"host": "127.0.0.1", "port": 55432, "database": "cdc",
                     "credentials": creds or {"secretRef": {"name": "pg"}}},
        "worker": {"image": "localhost/cass-cdc-pg:dev", "replicas": 0},
    }  # fmt: skip
    if vault:
        spec["vault"] = vault
    spec.update(kw)
    return {"apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


def cond(cluster: Cluster, ns: str, name: str, type_: str) -> dict[str, Any]:
    obj = cluster.get("cdcp", name, ns) or {}
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def wait_reason(cluster: Cluster, ns: str, name: str, type_: str, status: str, reason: str,
                op: Operator, timeout: float = 60) -> dict[str, Any]:  # fmt: skip
    def ok() -> bool:
        c = cond(cluster, ns, name, type_)
        return c.get("status") == status and c.get("reason") == reason

    wait_for(ok, timeout, f"{ns}/{name} {type_}={status} {reason}, got "
             f"{cond(cluster, ns, name, type_)}; log:\n{op.logs()[-2000:]}")  # fmt: skip
    return cond(cluster, ns, name, type_)


def _secret(cluster: Cluster, ns: str, name: str) -> dict[str, str]:
    s = cluster.get("secret", name, ns) or {}
    return {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}


def _accessors(env: dict[str, str]) -> int:
    vault = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
    return len(vault.list("auth/token/accessors")["data"]["keys"])


def test_each_pipeline_reaches_vault_only_as_itself(
    cluster: Cluster, env: dict[str, str], namespaces: tuple[str, str], k8s_auth: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    a, b = namespaces
    tenant(env, k8s_auth, a, f"{a}-role", "mine-cdc")
    tenant(env, k8s_auth, b, f"{b}-role", "theirs-cdc")
    op = Operator(cluster, a, tmp_path, also=(b,)).start()
    try:

        def vault(role: str, account: str | None = None) -> dict[str, Any]:
            k8s: dict[str, Any] = {"role": role, "mountPath": k8s_auth}
            if account:
                k8s["serviceAccountName"] = account
            return {"address": env["VAULT_ADDR"], "refreshInterval": "2s",
                    "auth": {"kubernetes": k8s}}  # fmt: skip

        cluster.apply([
            pipeline(a, "mine", env, vault(f"{a}-role"), {"vaultPath": f"{a}/postgres"}),
            # Tenant A names tenant B's path, logging in as its own account (the role's): that
            # role cannot read B's path.
            pipeline(a, "steal", env, vault(f"{a}-role", "mine-cdc"),
                     {"vaultPath": f"{b}/postgres"}),
            # Tenant A names tenant B's role: that role is bound to B's account only.
            pipeline(a, "borrow", env, vault(f"{b}-role"), {"vaultPath": f"{b}/postgres"}),
            pipeline(b, "theirs", env, vault(f"{b}-role"), {"vaultPath": f"{b}/postgres"}),
        ])  # fmt: skip
        wait_reason(cluster, a, "mine", "SecretsReady", "True", "Loaded", op)
        assert _secret(cluster, a, "mine-credentials") == {
            "POSTGRES_USERNAME": f"u-{a}", "POSTGRES_PASSWORD": f"p-{a}"}  # fmt: skip
        wait_reason(cluster, b, "theirs", "SecretsReady", "True", "Loaded", op)
        c = wait_reason(cluster, a, "steal", "SecretsReady", "False", "VaultForbidden", op)
        assert f"{b}/postgres" in c["message"]
        wait_reason(cluster, a, "borrow", "SecretsReady", "False", "VaultForbidden", op)
        # Ready says why (not a ReconcileError from a Kafka client without its login).
        wait_reason(cluster, a, "borrow", "Ready", "False", "VaultForbidden", op)
        assert cluster.get("secret", "steal-credentials", a) is None
        assert cluster.get("secret", "borrow-credentials", a) is None
        # Every refresh (2 s) logs in again; the tokens it gets are revoked after use.
        before = _accessors(env)
        time.sleep(12)
        assert _accessors(env) - before <= 3
    finally:
        op.stop()


class Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Recorder.seen.append({"path": self.path, "headers": dict(self.headers),
                              "body": body.decode(errors="replace")})  # fmt: skip
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors":["permission denied"]}')

    do_GET = do_PUT = do_POST

    def log_message(self, *args: Any) -> None:
        pass


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


def test_a_vault_address_never_receives_the_operators_token(
    cluster: Cluster, env: dict[str, str], namespaces: tuple[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    a, _ = namespaces
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Recorder.seen = []
    address = f"http://127.0.0.1:{server.server_address[1]}"
    spy = {"address": address, "refreshInterval": "2s",
           "auth": {"kubernetes": {"role": "any", "mountPath": "kubernetes"}}}  # fmt: skip
    op = Operator(cluster, a, tmp_path).start()
    try:
        cluster.apply([pipeline(a, "spied", env, spy, {"vaultPath": "x/postgres"})])
        wait_reason(cluster, a, "spied", "SecretsReady", "False", "VaultForbidden", op)
        logins = [r for r in Recorder.seen if r["path"].endswith("/login")]
        assert logins, Recorder.seen
        for r in Recorder.seen:
            assert op.token not in json.dumps(r)
        claims = _claims(json.loads(logins[0]["body"])["jwt"])
        assert claims["sub"] == f"system:serviceaccount:{a}:spied-cdc"
        assert claims["aud"] == ["vault"]
        assert claims["exp"] - claims["iat"] <= 3600
        # An unknown host is unreachable, said so.
        cluster.apply([pipeline(a, "nowhere", env, {**spy, "address": "http://vault.invalid:8200"},
                                {"vaultPath": "x/postgres"})])  # fmt: skip
        wait_reason(cluster, a, "nowhere", "SecretsReady", "False", "VaultUnreachable", op)
    finally:
        op.stop()
    # Without the admin's permission, http:// is refused before anything is sent.
    op = Operator(cluster, a, tmp_path).start(CDC_OPERATOR_ALLOW_INSECURE_VAULT="false")
    try:
        Recorder.seen = []
        cluster.apply([pipeline(a, "plain", env, spy, {"vaultPath": "x/postgres"})])
        c = wait_reason(cluster, a, "plain", "SecretsReady", "False", "VaultInsecure", op)
        assert "security.allowInsecureVault" in c["message"]
        time.sleep(3)
        assert Recorder.seen == []
    finally:
        op.stop()
        server.shutdown()


def _retention(admin: AdminClient, topic: str) -> str:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return str(admin.describe_configs([res])[res].result(15)["retention.ms"].value)


def test_topics_the_pipeline_did_not_create_are_left_alone(
    cluster: Cluster, env: dict[str, str], namespaces: tuple[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    a, _ = namespaces
    cluster.run("create", "secret", "generic", "pg", "-n", a,
                "--from-literal=username=cdc", "--from-literal=password=cdc")  # fmt: skip
    admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
    theirs = f"{a}-p.shop.orders"  # another team's topic, with its own retention
    for f in admin.create_topics(
        [NewTopic(theirs, 1, 1, config={"retention.ms": "12345"})]
    ).values():
        f.result(30)
    op = Operator(cluster, a, tmp_path).start()
    try:
        p = pipeline(a, "p", env)
        p["spec"]["kafka"]["deletionPolicy"] = "Delete"
        orders = {"apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
                  "metadata": {"name": "orders", "namespace": a},
                  "spec": {"pipelineRef": {"name": "p"},
                           "source": {"keyspace": "shop", "table": "orders"}}}  # fmt: skip
        cluster.apply([p, orders])
        c = wait_reason(cluster, a, "p", "TopicsReady", "False", "TopicNotOwned", op)
        assert theirs in c["message"]
        assert _retention(admin, theirs) == "12345"
        wait_for(lambda: (cluster.get("cdcp", "p", a) or {}).get("status", {}).get("ownedTopics")
                 == [f"{a}-p.dlq"], 30, "the dead-letter topic to be owned")  # fmt: skip
        # A second pipeline naming the same prefix is a conflict and touches nothing.
        twin = pipeline(a, "twin", env)
        twin["spec"]["debezium"]["topicPrefix"] = f"{a}-p"
        cluster.apply([twin])
        wait_reason(cluster, a, "twin", "Conflict", "True", "TopicsInUse", op)
        cluster.run("delete", "cdcp", "twin", "-n", a, "--wait=true", "--timeout=60s")
        # Deleting the pipeline deletes what it created, never the other team's topic.
        cluster.run("delete", "cdcp", "p", "-n", a, "--wait=true", "--timeout=60s")
        wait_for(lambda: f"{a}-p.dlq" not in admin.list_topics(timeout=10).topics, 30,
                 "the owned dead-letter topic to be deleted")  # fmt: skip
        assert theirs in admin.list_topics(timeout=10).topics
        assert _retention(admin, theirs) == "12345"
    finally:
        op.stop()
        for f in admin.delete_topics([theirs]).values():
            f.result(30)


def test_a_disallowed_worker_image_never_reaches_a_deployment(
    cluster: Cluster, env: dict[str, str], namespaces: tuple[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    a, _ = namespaces
    cluster.run("create", "secret", "generic", "pg", "-n", a,
                "--from-literal=username=cdc", "--from-literal=password=cdc")  # fmt: skip
    op = Operator(cluster, a, tmp_path).start(
        CDC_OPERATOR_ALLOWED_IMAGES="localhost/cass-cdc-pg:*,localhost/cass-cdc-pg@*"
    )
    try:
        p = pipeline(a, "img", env)
        p["spec"]["worker"]["image"] = "registry.example/exfiltrate:1"
        cluster.apply([p])
        c = wait_reason(cluster, a, "img", "WorkersAvailable", "False", "ImageNotAllowed", op)
        assert "registry.example/exfiltrate:1" in c["message"]
        assert cluster.get("deployment", "img-worker", a) is None
        p["spec"]["worker"]["image"] = "localhost/cass-cdc-pg:dev"
        cluster.apply([p])
        wait_for(lambda: cluster.get("deployment", "img-worker", a) is not None, 60, "deployment")
        p["spec"]["worker"]["image"] = "registry.example/exfiltrate:2"
        cluster.apply([p])
        wait_reason(cluster, a, "img", "WorkersAvailable", "False", "ImageNotAllowed", op)
        dep = cluster.get("deployment", "img-worker", a) or {}
        images = [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]]
        assert images == ["localhost/cass-cdc-pg:dev"]
    finally:
        op.stop()
