"""`make demo`: the whole product end to end on the local stack, then Cassandra vs PostgreSQL.

1. starts the stack (PostgreSQL, Redis, OpenBao, Kafka, Cassandra, Kubernetes and its local
   node) and builds the image;
2. installs the chart: the operator runs as a Pod on the local node;
3. creates a keyspace with rows in it, stores the PostgreSQL credentials in OpenBao, and
   applies examples/shop-pipeline.yaml (a CdcPipeline and two TableReplications);
4. hands the configuration the operator rendered to this node's cdc-agent (the file it watches,
   as a mounted ConfigMap would be), which restarts the Debezium agent on it: no restart by
   hand, and none after the DDL either (cdc-agent restarts the agent for new cdc tables);
5. writes a stream of inserts, updates, deletes, a partition delete and a schema change;
6. prints `kubectl get cdcpipelines,tablereplications` and a side-by-side count/checksum of
   Cassandra and PostgreSQL; exits non-zero if they differ.
The stack is left running; the end of the output says how to look around and how to stop.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import shlex
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from string import Template
from typing import Any

import hvac
import psycopg
import yaml
from cassandra.cluster import Cluster, Session

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "hack" / "stack"
sys.path.insert(0, str(REPO))
from tests.support import cassandra as stack_cassandra  # noqa: E402

NAMESPACE = "cdc-demo"
RELEASE = "cass-cdc-pg"
COMPONENTS = ["postgres", "redis", "vault", "kafka", "cassandra", "debezium", "k8s", "node"]
COLUMNS = {
    "customers": ["id", "name", "email", "tier", "loyalty_points"],
    "orders": ["customer_id", "order_id", "status", "total", "items", "placed_at"],
}


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def sh(*cmd: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    res = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False)
    if check and res.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(cmd)}\n{res.stdout}{res.stderr}")
    return res.stdout


def stack_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in sh(str(STACK), "env").splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = shlex.split(value)[0] if value else ""
    env["PATH"] = env["PATH"].replace("$PATH", os.environ["PATH"])
    return env


class Kube:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, "KUBECONFIG": env["KUBECONFIG"], "PATH": env["PATH"]}

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        res = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if check and res.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed:\n{res.stderr}")
        return res.stdout

    def helm(self, *args: str) -> str:
        return sh("helm", *args, env=self.env)

    def cond(self, kind: str, name: str, type_: str) -> dict[str, Any]:
        out = self("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
        if not out:
            return {}
        for c in (json.loads(out).get("status") or {}).get("conditions") or []:
            if c["type"] == type_:
                return c  # type: ignore[no-any-return]
        return {}


def wait(check: Any, timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def agent_status(env: dict[str, str]) -> dict[str, Any]:
    """cdc-agent's /status ({} while it does not answer)."""
    try:
        with urllib.request.urlopen(f"{env['CDC_AGENT_URL']}/status", timeout=5) as resp:  # noqa: S310
            return json.loads(resp.read())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return {}


def build_image() -> str:
    say("building the image (make image; cached layers are reused)")
    subprocess.run(["make", "-s", "image"], cwd=REPO, check=True)
    tag = sh("make", "-s", "--no-print-directory", "print-image", env=os.environ).strip()
    return tag or "localhost/cass-cdc-pg:dev"


def install_chart(kube: Kube, image: str) -> None:
    repo, _, tag = image.rpartition(":")
    for crd in ("cdcpipelines.casscdc.io", "tablereplications.casscdc.io"):
        # CRDs applied by hand (or by the tests) are adopted by the release, as Helm documents.
        if kube("get", "crd", crd, check=False):
            kube("label", "crd", crd, "app.kubernetes.io/managed-by=Helm", "--overwrite")
            kube("annotate", "crd", crd, f"meta.helm.sh/release-name={RELEASE}",
                 "meta.helm.sh/release-namespace=cdc-system", "--overwrite")  # fmt: skip
    kube("create", "namespace", NAMESPACE, check=False)  # the chart's Role goes there
    say(f"installing the chart ({image}) into namespace cdc-system")
    kube.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(REPO / "charts" / "cass-cdc-pg"),
        "-n",
        "cdc-system",
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
        "--set",
        f"image.repository={repo}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        f"watchNamespaces[0]={NAMESPACE}",
        "--set",
        "statusIntervalSeconds=3",
    )
    # The image keeps its tag when rebuilt: without a restart an operator installed by an
    # earlier run would go on running the code of that run.
    kube("rollout", "restart", f"deployment/{RELEASE}-operator", "-n", "cdc-system")
    kube("rollout", "status", f"deployment/{RELEASE}-operator", "-n", "cdc-system",
         "--timeout=180s")  # fmt: skip


def cassandra(env: dict[str, str]) -> tuple[Cluster, Session]:
    """The demo's own session (keyspace setup, then the comparison): TLS verified against the
    stack CA, as the stack's superuser cdc_admin (tests/support/cassandra.py)."""
    cluster = stack_cassandra.cluster(env, protocol_version=5)
    return cluster, cluster.connect()


def create_keyspace(session: Session, ks: str, customers: int, rng: random.Random) -> None:
    say(f"creating keyspace {ks} with {customers} customers and their orders (before the pipeline)")
    session.execute(
        f"CREATE KEYSPACE {ks} WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )
    session.execute(
        f"CREATE TABLE {ks}.customers (id uuid PRIMARY KEY, name text, email text, tier int)"
    )
    session.execute(
        f"CREATE TABLE {ks}.orders (customer_id uuid, order_id timeuuid, status text, "
        "total decimal, items frozen<list<text>>, placed_at timestamp, "
        "PRIMARY KEY (customer_id, order_id)) WITH CLUSTERING ORDER BY (order_id DESC)"
    )
    for _ in range(customers):
        cid = uuid.uuid4()
        session.execute(
            f"INSERT INTO {ks}.customers (id, name, email, tier) VALUES (%s, %s, %s, %s)",
            (
                cid,
                f"customer {rng.randrange(10**6)}",
                f"c{rng.randrange(10**6)}@shop.test",
                rng.randrange(3),
            ),
        )
        for _ in range(rng.randrange(3)):
            _insert_order(session, ks, cid, rng)


def _insert_order(session: Session, ks: str, cid: uuid.UUID, rng: random.Random) -> None:
    session.execute(
        f"INSERT INTO {ks}.orders (customer_id, order_id, status, total, items, placed_at) "
        "VALUES (%s, now(), %s, %s, %s, toTimestamp(now()))",
        (
            cid,
            "new",
            Decimal(rng.randrange(100, 100_000)) / 100,
            [f"sku-{rng.randrange(1000)}" for _ in range(rng.randrange(1, 4))],
        ),
    )


def stream(session: Session, ks: str, events: int, rng: random.Random) -> dict[str, int]:
    say(f"writing {events} changes into Cassandra (inserts, updates, deletes, a schema change)")
    counts: dict[str, int] = {}
    customers = [r.id for r in session.execute(f"SELECT id FROM {ks}.customers")]
    evolved = False
    for i in range(events):
        roll = rng.random()
        cid = rng.choice(customers) if customers else uuid.uuid4()
        if not evolved and i >= events // 2:
            session.execute(f"ALTER TABLE {ks}.customers ADD loyalty_points int")
            # The agent sees new columns at its next schema refresh; writes to the column made
            # before that are emitted without it (docs/debezium-wire-format.md), so wait.
            _wait_agent_schema(f"{ks}.customers", "loyalty_points")
            evolved = True
            kind = "alter table add column"
        elif roll < 0.45:
            _insert_order(session, ks, cid, rng)
            kind = "insert order"
        elif roll < 0.65:
            rows = list(
                session.execute(
                    f"SELECT order_id FROM {ks}.orders WHERE customer_id = %s LIMIT 3", (cid,)
                )
            )
            if not rows:
                continue
            session.execute(
                f"UPDATE {ks}.orders SET status = %s WHERE customer_id = %s AND order_id = %s",
                (rng.choice(["paid", "shipped", "returned"]), cid, rows[0].order_id),
            )
            kind = "update order status"
        elif roll < 0.80:
            if evolved and rng.random() < 0.5:
                session.execute(
                    f"UPDATE {ks}.customers SET loyalty_points = %s WHERE id = %s",
                    (rng.randrange(1000), cid),
                )
            else:
                session.execute(
                    f"UPDATE {ks}.customers SET tier = %s, email = %s WHERE id = %s",
                    (rng.randrange(3), f"new{rng.randrange(10**6)}@shop.test", cid),
                )
            kind = "update customer"
        elif roll < 0.88:
            rows = list(
                session.execute(
                    f"SELECT order_id FROM {ks}.orders WHERE customer_id = %s LIMIT 1", (cid,)
                )
            )
            if not rows:
                continue
            session.execute(
                f"DELETE FROM {ks}.orders WHERE customer_id = %s AND order_id = %s",
                (cid, rows[0].order_id),
            )
            kind = "delete order"
        elif roll < 0.90:
            session.execute(f"DELETE FROM {ks}.orders WHERE customer_id = %s", (cid,))
            kind = "delete all orders of a customer (partition)"
        elif roll < 0.93:
            session.execute(f"UPDATE {ks}.customers SET email = null WHERE id = %s", (cid,))
            kind = "clear a column"
        else:
            new = uuid.uuid4()
            session.execute(
                f"INSERT INTO {ks}.customers (id, name, tier) VALUES (%s, %s, %s)",
                (new, f"customer {rng.randrange(10**6)}", 0),
            )
            customers.append(new)
            kind = "insert customer"
        counts[kind] = counts.get(kind, 0) + 1
        if events >= 10 and (i + 1) % max(1, events // 10) == 0:
            say(f"  {i + 1}/{events} changes written")
    return counts


def _wait_agent_schema(table: str, column: str, timeout: float = 30) -> None:
    log = REPO / ".stack" / "debezium" / "debezium.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        # The agent logs the whole new table definition after "Updated table [".
        chunks = text.split(f"Updated table [CREATE TABLE {table} (")[1:]
        if any(column in chunk[:4000].split("Updated table")[0] for chunk in chunks):
            return
        time.sleep(0.5)
    say(f"  (the agent did not report the new column of {table} within {timeout:.0f}s)")


def _canon(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return int(v.timestamp() * 1000)
    if isinstance(v, Decimal):
        return str(v.normalize())
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, list | tuple):
        return [_canon(x) for x in v]
    return v


def snapshot_cassandra(session: Session, ks: str) -> dict[str, list[Any]]:
    out = {}
    for table, cols in COLUMNS.items():
        have = {
            r.column_name
            for r in session.execute(
                "SELECT column_name FROM system_schema.columns "
                "WHERE keyspace_name=%s AND table_name=%s",
                (ks, table),
            )
        }
        sel = [c for c in cols if c in have]
        rows = session.execute(f"SELECT {', '.join(sel)} FROM {ks}.{table}")
        out[table] = sorted(
            json.dumps([_canon(getattr(r, c)) if c in sel else None for c in cols]) for r in rows
        )
    return out


def snapshot_postgres(dsn: str, schema: str) -> dict[str, list[Any]]:
    out = {}
    with psycopg.connect(dsn, autocommit=True) as pg:
        for table, cols in COLUMNS.items():
            have = {
                r[0]
                for r in pg.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema=%s "
                    "AND table_name=%s",
                    (schema, table),
                )
            }
            if not have:
                out[table] = []
                continue
            sel = ", ".join(c if c in have else "NULL" for c in cols)
            rows = pg.execute(f'SELECT {sel} FROM "{schema}"."{table}"').fetchall()
            out[table] = sorted(json.dumps([_canon(v) for v in r]) for r in rows)
    return out


def digest(rows: list[Any]) -> str:
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=3000, help="changes to write into Cassandra")
    ap.add_argument("--customers", type=int, default=200, help="rows before the pipeline")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--summary", type=Path, default=REPO / ".stack" / "demo" / "last-run.json")
    args = ap.parse_args(argv)
    started = time.monotonic()
    rng = random.Random(args.seed)
    run_id = datetime.now(UTC).strftime("%m%d%H%M%S")
    say("starting the local stack: " + " ".join(COMPONENTS))
    subprocess.run([str(STACK), "up", *COMPONENTS], check=True)
    env = stack_env()
    kube = Kube(env)
    image = build_image()
    install_chart(kube, image)

    # Names under the stack's Kafka ACL prefixes (docs/local-stack.md, secure profile).
    ks, schema = f"shop_{run_id}", f"demo_{run_id}"
    prefix = f"{env['KAFKA_SECURE_TOPIC_PREFIX']}demo{run_id}"
    dlq = f"{env['KAFKA_SECURE_DLQ_PREFIX']}demo{run_id}"
    cluster, session = cassandra(env)
    create_keyspace(session, ks, args.customers, rng)
    pg_dsn = env["PG_DSN"]  # the superuser, only to compare PostgreSQL with Cassandra below
    store_credentials(env)
    ensure_agent_identity(env)
    kube("create", "namespace", NAMESPACE, check=False)
    kube(
        "delete",
        "cdcpipelines,tablereplications",
        "--all",
        "-n",
        NAMESPACE,
        "--wait=true",
        check=False,
    )
    vault_kubernetes_auth(env, kube)
    state = Path(env["DEBEZIUM_STATE_DIR"]) / "runs" / run_id
    values = {
        **env,
        "NAMESPACE": NAMESPACE,
        "KEYSPACE": ks,
        "PG_SCHEMA": schema,
        "TOPIC_PREFIX": prefix,
        "DLQ_TOPIC": dlq,
        "STACK_CA": json.dumps(Path(env["CDC_STACK_CA"]).read_text()),
        "IMAGE": image,
        "PG_PORT": pg_dsn.rsplit(":", 1)[1].split("/")[0],
        "DEBEZIUM_OFFSETS_DIR": str(state / "offsets"),
        "DEBEZIUM_RELOCATION_DIR": str(state / "relocation"),
        "DEBEZIUM_HTTP_PORT": env.get("DEBEZIUM_HTTP_PORT", "58000"),
        "AGENT_PORT": env["CDC_AGENT_URL"].rsplit(":", 1)[1],
    }
    manifest = Template((REPO / "examples" / "shop-pipeline.yaml").read_text()).substitute(values)
    say("applying examples/shop-pipeline.yaml (credentials come from OpenBao over https)")
    kube("apply", "-f", "-", stdin=manifest)
    wait(
        lambda: kube.cond("cdcp", "shop", "CassandraReady").get("status") == "True",
        120,
        "cdc = true on the tables (CassandraReady)",
    )
    wait(
        lambda: kube.cond("cdcp", "shop", "ConnectorConfigured").get("status") == "True",
        60,
        "the rendered connector configuration",
    )
    cm = json.loads(kube("get", "configmap", "shop-debezium", "-n", NAMESPACE, "-o", "json"))
    text = next(iter(cm["data"].values()))
    state.mkdir(parents=True, exist_ok=True)
    (state / "agent.properties").write_text(text)  # kept for looking around afterwards
    # The file this node's cdc-agent watches, as a Pod's mounted ConfigMap: new content there
    # restarts the Debezium agent on it (and the keyspace created above is picked up with it).
    watched = Path(env["DEBEZIUM_CONFIG"])
    say(f"handing the operator-rendered configuration to cdc-agent ({watched.name})")
    watched.write_text(text)
    sha = hashlib.sha256(text.encode()).hexdigest()
    wait(
        # /status shows the new digest only once the old agent stopped and the new one started.
        lambda: (
            (st := agent_status(env)).get("config_sha256") == sha and st.get("phase") == "ready"
        ),
        120,
        "cdc-agent to run the Debezium agent on the rendered configuration",
    )
    wait(
        lambda: kube.cond("cdcp", "shop", "Ready").get("status") == "True",
        300,
        "the pipeline to be Ready (workers running on the local node)",
        2,
    )
    counts = stream(session, ks, args.events, rng)

    say("waiting for PostgreSQL to equal Cassandra")
    deadline = time.monotonic() + 180
    while True:
        cass, pg = snapshot_cassandra(session, ks), snapshot_postgres(pg_dsn, schema)
        equal = cass == pg
        if equal or time.monotonic() > deadline:
            break
        time.sleep(2)
    cluster.shutdown()
    in_sync = verify(kube) if equal else {}

    print()
    print(kube("get", "cdcpipelines,tablereplications", "-n", NAMESPACE))
    print(
        f"{'table':<12}{'cassandra rows':>16}{'postgres rows':>15}  "
        f"{'cassandra sum':<18}{'postgres sum':<18}"
    )
    for table in COLUMNS:
        print(
            f"{table:<12}{len(cass[table]):>16}{len(pg[table]):>15}  {digest(cass[table]):<18}"
            f"{digest(pg[table]):<18}{'equal' if cass[table] == pg[table] else 'DIFFERENT'}"
        )
    summary = {
        "equal": equal,
        "inSync": in_sync,
        "keyspace": ks,
        "schema": schema,
        "events": counts,
        "tables": {
            t: {
                "cassandra": len(cass[t]),
                "postgres": len(pg[t]),
                "cassandra_sum": digest(cass[t]),
                "postgres_sum": digest(pg[t]),
            }
            for t in COLUMNS
        },
        "seconds": round(time.monotonic() - started, 1),
    }
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print("Hops (secure profile; certificates verified against the stack CA):")
    for hop, how in HOPS:
        print(f"  {hop:<34}{how}")
    summary["hops"] = dict(HOPS)
    args.summary.write_text(json.dumps(summary, indent=2) + "\n")
    print()
    print(
        "Cassandra and PostgreSQL are",
        "EQUAL" if equal else "DIFFERENT",
        f"({summary['seconds']}s);",
        "the product's own verify:",
        ", ".join(f"{t} InSync={v}" for t, v in in_sync.items()) or "not run",
    )
    print(f"""
Look around (eval "$(hack/stack env)" first):
  kubectl get cdcp,tr -n {NAMESPACE}; kubectl describe cdcp shop -n {NAMESPACE}
  kubectl logs -n {NAMESPACE} deploy/shop-worker
  kubectl logs -n cdc-system deploy/{RELEASE}-operator
  psql "$PG_DSN" -c 'select * from {schema}.orders limit 5'
  curl -s localhost:8081/metrics | grep cdc_worker_events_applied     # the worker's metrics
Stop everything: hack/stack down""")
    return 0 if equal and in_sync and all(v == "True" for v in in_sync.values()) else 1


HOPS = [
    ("operator -> OpenBao", "https, Kubernetes auth as the pipeline's ServiceAccount "
     "(audience-bound token; authenticated, encrypted)"),
    ("worker -> PostgreSQL", "TLS verify-full, SCRAM as cdc_app (authenticated, encrypted)"),
    ("agent -> Kafka", "SASL_SSL, SCRAM-SHA-512 as agent (authenticated, encrypted)"),
    ("worker -> Kafka", "SASL_SSL, SCRAM-SHA-512 as worker (authenticated, encrypted)"),
    ("operator -> Kafka (topics, lag)", "SASL_SSL, SCRAM-SHA-512 as operator (authenticated, "
     "encrypted)"),
    ("worker, operator -> Redis", "TLS, ACL user cdc (authenticated, encrypted)"),
    ("agent -> Cassandra", "TLS (stack CA, host name verified), PasswordAuthenticator as "
     "cdc_agent (authenticated, encrypted)"),
    ("operator, worker -> Cassandra", "TLS (spec.cassandra.tls), PasswordAuthenticator as "
     "cdc_operator from OpenBao (authenticated, encrypted)"),
]  # fmt: skip


def store_credentials(env: dict[str, str]) -> None:
    """The pipeline's credentials in OpenBao (over https): one identity per client."""
    say("storing the pipeline's credentials in OpenBao (PostgreSQL, Kafka, Redis, Cassandra)")

    def pw(var: str) -> str:
        return Path(env[var]).read_text().strip()

    vault = hvac.Client(url=env["VAULT_TLS_ADDR"], token=env["VAULT_TOKEN"],
                        verify=env["CDC_STACK_CA"])  # fmt: skip
    for path, secret in {
        "cdc-demo/postgres": {"username": env["PG_APP_USER"],
                              "password": pw("PG_APP_PASSWORD_FILE")},
        "cdc-demo/kafka-worker": {"username": env["KAFKA_WORKER_USER"],
                                  "password": pw("KAFKA_WORKER_PASSWORD_FILE")},
        "cdc-demo/kafka-operator": {"username": env["KAFKA_OPERATOR_USER"],
                                    "password": pw("KAFKA_OPERATOR_PASSWORD_FILE")},
        "cdc-demo/redis": {"password": pw("REDIS_PASSWORD_FILE")},
        # One Cassandra login per pipeline (operator and workers): the role that may ALTER
        # tables for cdc = true and read them, nothing else.
        "cdc-demo/cassandra": {"username": env["CASSANDRA_OPERATOR_USERNAME"],
                               "password": pw("CASSANDRA_OPERATOR_PASSWORD_FILE")},
    }.items():  # fmt: skip
        vault.secrets.kv.v2.create_or_update_secret(path=path, secret=secret, mount_point="secret")


def vault_kubernetes_auth(env: dict[str, str], kube: Kube) -> None:
    """OpenBao's Kubernetes auth against the stack's API server, and a role only the pipeline's
    own ServiceAccount (`shop-cdc`, created by the operator) can log in as, reading only its
    namespace's secrets: the operator asks the API server for a short-lived token of that
    account (audience `vault`) and never lends its own (docs/security.md)."""
    say("configuring OpenBao's Kubernetes auth: the pipeline logs in as its own ServiceAccount")
    kube("create", "serviceaccount", "vault-reviewer", "-n", "kube-system", check=False)
    # Its own binding name: tests bind another `vault-reviewer` (in `default`) to the same role.
    kube("create", "clusterrolebinding", "cdc-demo-vault-reviewer", "--clusterrole",
         "system:auth-delegator", "--serviceaccount", "kube-system:vault-reviewer",
         check=False)  # fmt: skip
    reviewer = kube("create", "token", "vault-reviewer", "-n", "kube-system",
                    "--duration=24h").strip()  # fmt: skip
    admin = yaml.safe_load(Path(env["KUBECONFIG"]).read_text())["clusters"][0]["cluster"]
    vault = hvac.Client(url=env["VAULT_TLS_ADDR"], token=env["VAULT_TOKEN"],
                        verify=env["CDC_STACK_CA"])  # fmt: skip
    if "kubernetes/" not in vault.sys.list_auth_methods():
        vault.sys.enable_auth_method("kubernetes", path="kubernetes")
    vault.write("auth/kubernetes/config", kubernetes_host=admin["server"],
                kubernetes_ca_cert=base64.b64decode(admin["certificate-authority-data"]).decode(),
                token_reviewer_jwt=reviewer, disable_local_ca_jwt=True)  # fmt: skip
    role = f"{NAMESPACE}-shop"
    vault.sys.create_or_update_policy(
        role, f'path "secret/data/{NAMESPACE}/*" {{ capabilities = ["read"] }}'
    )
    vault.write(f"auth/kubernetes/role/{role}", bound_service_account_names=["shop-cdc"],
                bound_service_account_namespaces=[NAMESPACE], policies=[role],
                audience="vault", token_ttl="10m", token_max_ttl="1h")  # noqa: S106  # fmt: skip
    kube("delete", "secret", "vault-token", "-n", NAMESPACE, check=False)  # older demos


def ensure_agent_identity(env: dict[str, str]) -> None:
    """This node's cdc-agent must hold the agent's Kafka and Cassandra logins (hack/stack starts
    it with them); one started before the secure profile is restarted once."""
    pid_file = Path(env["DEBEZIUM_STATE_DIR"]) / "debezium.pid"
    try:
        pid = pid_file.read_text().split()[0]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, IndexError):
        environ = []
    wanted = (b"KAFKA_PASSWORD_FILE=", b"CASSANDRA_PASSWORD_FILE=")
    if all(any(e.startswith(w) for e in environ) for w in wanted):
        return
    say("restarting this node's cdc-agent with the agent's Kafka and Cassandra logins")
    subprocess.run([str(STACK), "restart", "debezium"], check=True)


def verify(kube: Kube) -> dict[str, str]:
    """Ask the product itself: a verify Job per table (spec.verify), its verdict `InSync`."""
    say("running the product's own verify (spec.verify: a token-range scan Job per table)")
    tables = ("customers", "orders")
    for t in tables:
        kube("patch", "tr", t, "-n", NAMESPACE, "--type", "merge",
             "-p", json.dumps({"spec": {"verify": {"interval": "24h"}}}))  # fmt: skip

    def verdicts() -> dict[str, str]:
        out = {}
        for t in tables:
            c = kube.cond("tr", t, "InSync")
            out[t] = str(c.get("status", "Unknown")) if c.get("reason") != "Verifying" else "?"
        return out

    wait(lambda: all(v in ("True", "False") for v in verdicts().values()), 300,
         "the verify Jobs' verdicts (InSync)", 2)  # fmt: skip
    return verdicts()


if __name__ == "__main__":
    sys.exit(main())
