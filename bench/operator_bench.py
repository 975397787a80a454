"""Benchmark: the operator's apply→Ready latency, and its cost at 200 pipelines x 10 tables.

1. apply→Ready: a CdcPipeline with 10 TableReplications (`manageTableCdc`, so the operator
   enables CDC and reads the schemas), workers running from the image on the local node;
   time from `kubectl apply` to `Ready=True`, repeated RUNS times (fresh names each time).
2. scale: 200 pipelines x 10 tables in one namespace, workers at 0 replicas (the local node's
   host network cannot run 200 worker Pods on one port); all pipelines share one topic prefix,
   so the run measures the operator, not Kafka's topic creation. Reports the time until every
   pipeline has been reconciled (TopicsReady and 10 tables), then the operator's RSS after
   several timer cycles.
The operator runs as a local process (admin kubeconfig) so its memory can be read directly.

    make bench-operator        # RUNS=5, PIPELINES=200
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "hack" / "demo"))

import run as demo  # noqa: E402

from tests.support.worker_proc import free_port  # noqa: E402

TABLES = 10


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def start_operator(env: dict[str, str], ns: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "cdc-operator"), "--namespace", ns, "--log-level", "WARNING"],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "KUBECONFIG": env["KUBECONFIG"], "CDC_OPERATOR_STATUS_INTERVAL": "5",
             "CDC_OPERATOR_LIVENESS": f"http://127.0.0.1:{free_port()}/healthz",
             "CDC_OPERATOR_METRICS_PORT": str(free_port())},
    )  # fmt: skip


def pipeline(ns: str, name: str, env: dict[str, str], ks: str, prefix: str, image: str,
             replicas: int, manage: bool) -> list[dict[str, Any]]:  # fmt: skip
    pg_port = env["PG_DSN"].rsplit(":", 1)[1].split("/")[0]
    docs: list[dict[str, Any]] = [{
        "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "cassandra": demo.stack_cassandra.pipeline_spec(env, manageTableCdc=manage),
            "debezium": {"topicPrefix": prefix},
            "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"],
                      "deadLetterTopic": f"{prefix}.dlq", "topic": {"partitions": 1}},
            "postgres": {"host": "127.0.0.1", "port": int(pg_port), "database": "cdc",
                         "schema": f"b_{ks}", "credentials": {"secretRef": {"name": "pg"}}},
            "worker": {"image": image, "replicas": replicas, "imagePullPolicy": "Never"},
        },
    }]  # fmt: skip
    for i in range(TABLES):
        docs.append({
            "apiVersion": "casscdc.io/v1alpha1", "kind": "TableReplication",
            "metadata": {"name": f"{name}-t{i}", "namespace": ns},
            "spec": {"pipelineRef": {"name": name}, "source": {"keyspace": ks, "table": f"t{i}"}},
        })  # fmt: skip
    return docs


def ready(kube: demo.Kube, ns: str, name: str) -> bool:
    out = kube("get", "cdcp", name, "-n", ns, "-o", "json", check=False)
    conds = (json.loads(out).get("status") or {}).get("conditions", []) if out else []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def main() -> int:
    runs = int(os.environ.get("RUNS", "5"))
    count = int(os.environ.get("PIPELINES", "200"))
    subprocess.run([str(REPO / "hack/stack"), "up", "postgres", "kafka", "cassandra", "k8s",
                    "node"], check=True)  # fmt: skip
    env = demo.stack_env()
    kube = demo.Kube(env)
    image = demo.build_image()
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    cluster, session = demo.cassandra(env)
    ks = f"opbench_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    for i in range(TABLES):
        session.execute(f"CREATE TABLE {ks}.t{i} (id int PRIMARY KEY, v text)")
    cluster.shutdown()
    kube("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))

    # 1. apply → Ready with workers on the local node.
    ns = f"opb-{uuid.uuid4().hex[:5]}"
    kube("create", "namespace", ns)
    kube("create", "secret", "generic", "pg", "-n", ns, "--from-literal=username=cdc",
         "--from-literal=password=cdc")  # fmt: skip
    kube("apply", "-f", "-", stdin=json.dumps(demo.stack_cassandra.secret_manifest(env, ns)))
    op = start_operator(env, ns, out_dir / "operator-bench.log")
    latencies = []
    try:
        time.sleep(3)
        for r in range(runs):
            name = f"p{r}"
            docs = pipeline(ns, name, env, ks, f"opb{r}{uuid.uuid4().hex[:4]}", image, 1, True)
            t0 = time.perf_counter()
            kube("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))
            demo.wait(lambda name=name: ready(kube, ns, name), 180, f"{name} Ready", 0.1)
            latencies.append(time.perf_counter() - t0)
            print(f"run {r}: apply→Ready {latencies[-1]:.2f}s")
            kube("delete", "cdcp", name, "-n", ns, "--wait=true")
            kube("delete", "tr", "-n", ns, "--all", "--wait=true")
            # The worker Pod (port 8081 on the host network) must be gone before the next run.
            demo.wait(lambda: not kube("get", "pods", "-n", ns, "-o", "name", check=False).strip(),
                      120, "the previous worker Pod to stop", 0.5)  # fmt: skip
    finally:
        op.terminate()
        op.wait(30)

    # 2. scale: PIPELINES x 10 tables, workers at 0.
    ns2 = f"ops-{uuid.uuid4().hex[:5]}"
    kube("create", "namespace", ns2)
    kube("create", "secret", "generic", "pg", "-n", ns2, "--from-literal=username=cdc",
         "--from-literal=password=cdc")  # fmt: skip
    op = start_operator(env, ns2, out_dir / "operator-bench.log")
    try:
        time.sleep(3)
        prefix = f"ops{uuid.uuid4().hex[:4]}"
        # Each pipeline its own topics: two pipelines sharing a prefix are a Conflict.
        docs = [
            d for i in range(count)
            for d in pipeline(ns2, f"s{i}", env, ks, f"{prefix}-{i}", image, 0, False)
        ]  # fmt: skip
        t0 = time.perf_counter()
        for start in range(0, len(docs), 200):
            chunk = docs[start : start + 200]
            kube("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in chunk))
        applied = time.perf_counter() - t0

        def all_reconciled() -> bool:
            """Every pipeline Ready and every table's status written (the issue's target)."""
            items = json.loads(kube("get", "cdcp", "-n", ns2, "-o", "json"))["items"]
            done = [i for i in items if (i.get("status") or {}).get("tables") == TABLES
                    and any(c["type"] == "Ready" and c["status"] == "True"
                            for c in i["status"].get("conditions", []))]  # fmt: skip
            if len(done) < count:
                return False
            trs = json.loads(kube("get", "tr", "-n", ns2, "-o", "json"))["items"]
            return sum(1 for t in trs if (t.get("status") or {}).get("conditions")) == count * 10

        demo.wait(all_reconciled, 1800, f"{count} pipelines reconciled", 2)
        reconciled = time.perf_counter() - t0
        time.sleep(30)  # a few timer cycles (5 s) over every pipeline
        rss, hwm = rss_mib(op.pid)
    finally:
        op.terminate()
        op.wait(30)
        from confluent_kafka.admin import AdminClient

        from tests.support.kube import drop_finalizers

        for n in (ns, ns2):
            drop_finalizers(env["KUBECONFIG"], n)
        kube("delete", "namespace", ns, ns2, "--wait=false", check=False)
        admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith("ops")]
        if ours:
            admin.delete_topics(ours)

    result = {
        "apply_to_ready_s": [round(x, 2) for x in latencies],
        "apply_to_ready_p50_s": round(statistics.median(latencies), 2),
        "apply_to_ready_max_s": round(max(latencies), 2),
        "scale_pipelines": count, "scale_tables": count * TABLES,
        "scale_apply_s": round(applied, 1), "scale_all_reconciled_s": round(reconciled, 1),
        "scale_reconciles_per_s": round(count / reconciled, 1),
        "operator_rss_mib": round(rss, 1), "operator_peak_rss_mib": round(hwm, 1),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    result["target_scale_60s_met"] = result["scale_all_reconciled_s"] <= 60
    result["target_rss_200mib_met"] = result["operator_peak_rss_mib"] <= 200
    print()
    for k, v in result.items():
        print(f"{k:<28}{v!s:>24}")
    (out_dir / "operator.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
