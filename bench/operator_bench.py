"""Benchmark: the operator's apply→Ready latency, and its cost at 200 pipelines x 10 tables.

1. apply→Ready: a CdcPipeline with 10 TableReplications (`manageTableCdc`, so the operator
   enables CDC and reads the schemas), workers running from the image on the local node;
   time from `kubectl apply` to `Ready=True`, repeated RUNS times (fresh names each time).
2. scale: 200 pipelines x 10 tables in one namespace, workers at 0 replicas (the local node's
   host network cannot run 200 worker Pods on one port), each pipeline its own topics, applied
   with `kubectl apply` (client-side, 200 objects per call). Reports the time until every
   pipeline is `Ready=True` and every table's status is written, the API server's requests in
   that time (by verb and resource, from its own metrics: the operator's and kubectl's), then
   the steady state over STEADY seconds with the default 15 s status interval: operator CPU,
   RSS, API requests/s.
3. outage: the same, in a fresh namespace with a fresh operator, beside BROKEN more pipelines
   whose Kafka refuses connections (127.0.0.1:1): the healthy ones must be as fast as in 2,
   the broken ones must show `Ready=False, reason KafkaUnavailable`.
The operator runs as a local process (admin kubeconfig) so its CPU and memory can be read
directly. Each figure is printed with the machine's load average (2 shared cores: noisy).

Phase 1 runs its workers on a node agent of its own (bench/placement.py: `BENCH_NODE=shared`
uses the stack's local-node instead); each run's steps are recorded from watches and the
worker's own `worker_ready` line (bench/timeline.py). `KWOK=1` starts `hack/stack up kwok` and
gives phase 2's pipelines one worker each, scheduled onto the kwok node (Ready without a
process), so the figures include 200 Deployments becoming available (bench-results/
operator-kwok.json).

    make bench-operator        # RUNS=5 PIPELINES=200 BROKEN=50 STEADY=60 (PHASES=1,2,3)
    PHASES=2 KWOK=1 make bench-operator
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
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

sys.path.insert(0, str(REPO / "bench"))
from placement import KWOK_NODE, PRIVATE_NODE, PrivateNode, place, unplace  # noqa: E402
from timeline import Timeline, worker_phases  # noqa: E402

TABLES = 10


def rss_mib(pid: int) -> tuple[float, float]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def api_requests(kube: demo.Kube) -> collections.Counter[tuple[str, str, str]]:
    """The API server's request counters by (verb, resource, subresource)."""
    out: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for line in kube("get", "--raw", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            key = (labels.get("verb", ""), labels.get("resource", ""),
                   labels.get("subresource", ""))  # fmt: skip
            out[key] += int(float(line.rsplit(" ", 1)[1]))
    return out


def top(c: collections.Counter[tuple[str, str, str]], n: int = 8) -> dict[str, int]:
    return {" ".join(x for x in k if x): v for k, v in c.most_common(n)}


def start_operator(env: dict[str, str], ns: str, log: Path,
                   interval: str = "5") -> subprocess.Popen[bytes]:  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "cdc-operator"), "--namespace", ns, "--log-level", "WARNING"],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        env={**os.environ, "KUBECONFIG": env["KUBECONFIG"],
             "CDC_OPERATOR_STATUS_INTERVAL": interval,
             "CDC_OPERATOR_LIVENESS": f"http://127.0.0.1:{free_port()}/healthz",
             "CDC_OPERATOR_METRICS_PORT": str(port)},
    )  # fmt: skip
    proc.metrics_port = port  # type: ignore[attr-defined]
    return proc


def started(op: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait until the operator serves its metrics (it takes seconds to start on a busy machine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            own_requests(op)
            time.sleep(1)  # and its watches have listed what is there
            return
        except OSError:
            if op.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def own_requests(op: subprocess.Popen[bytes]) -> int:
    """The API requests the operator's passes made (its cdc_operator_api_requests counter)."""
    import urllib.request

    port = op.metrics_port  # type: ignore[attr-defined]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("cdc_operator_api_requests_total{")))  # fmt: skip


def pipeline(ns: str, name: str, env: dict[str, str], ks: str, prefix: str, image: str,
             replicas: int, manage: bool, kafka: str | None = None,
             ) -> list[dict[str, Any]]:  # fmt: skip
    pg_port = env["PG_DSN"].rsplit(":", 1)[1].split("/")[0]
    docs: list[dict[str, Any]] = [{
        "apiVersion": "casscdc.io/v1alpha1", "kind": "CdcPipeline",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "cassandra": demo.stack_cassandra.pipeline_spec(env, manageTableCdc=manage),
            "debezium": {"topicPrefix": prefix},
            "kafka": {"bootstrapServers": kafka or env["KAFKA_BOOTSTRAP_SERVERS"],
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


def ready_reason(obj: dict[str, Any]) -> str | None:
    """`True`, or the reason of Ready=False, or None when not written (for this generation)."""
    st = obj.get("status") or {}
    if st.get("observedGeneration") != obj["metadata"].get("generation"):
        return None
    c = next((c for c in st.get("conditions") or [] if c["type"] == "Ready"), None)
    return None if c is None else ("True" if c["status"] == "True" else c["reason"])


def namespace(kube: demo.Kube, env: dict[str, str], prefix: str) -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:5]}"
    kube("create", "namespace", ns)
    kube("create", "secret", "generic", "pg", "-n", ns, "--from-literal=username=cdc",
         "--from-literal=password=cdc")  # fmt: skip
    kube("apply", "-f", "-", stdin=json.dumps(demo.stack_cassandra.secret_manifest(env, ns)))
    return ns


def scale_run(
    kube: demo.Kube, env: dict[str, str], ns: str, ks: str, image: str, count: int,
    broken: int, steady: float, log: Path, replicas: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Bulk-apply `count` pipelines x 10 tables (+ `broken` on an unreachable Kafka) to a fresh
    operator; time until all healthy ones are Ready with every table's status written (and,
    with `replicas`, every worker Deployment available: its Pods on the kwok node)."""
    op = start_operator(env, ns, log, interval="15")
    out: dict[str, Any] = {}
    try:
        started(op)
        prefix = f"{ns}"
        # Each pipeline its own topics: two pipelines sharing a prefix are a Conflict.
        docs = [
            d
            for i in range(count)
            for d in pipeline(ns, f"s{i}", env, ks, f"{prefix}-{i}", image, replicas, False)
        ]
        bad = [d for i in range(broken)
               for d in pipeline(ns, f"x{i}", env, ks, f"{prefix}-x{i}", image, 0, False,
                                 kafka="127.0.0.1:1")]  # fmt: skip
        if bad:  # interleaved: broken pipelines queued before and among the healthy ones
            step = max(1, len(docs) // len(bad))
            mixed: list[dict[str, Any]] = []
            for i in range(0, len(docs), step * (TABLES + 1)):
                mixed += bad[: TABLES + 1] + docs[i : i + step * (TABLES + 1)]
                bad = bad[TABLES + 1 :]
            docs = mixed + bad
        cpu0, req0, t0 = cpu_seconds(op.pid), api_requests(kube), time.perf_counter()
        own0 = own_requests(op)
        for start in range(0, len(docs), 200):
            chunk = docs[start : start + 200]
            kube("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in chunk))
        out["apply_s"] = round(time.perf_counter() - t0, 1)
        out["worker_replicas"] = replicas
        out["apply_load"] = load()
        seen: dict[str, Any] = {}

        def all_reconciled() -> bool:
            """Every healthy pipeline Ready and every healthy table's status written."""
            items = json.loads(kube("get", "cdcp", "-n", ns, "-o", "json"))["items"]
            trs = json.loads(kube("get", "tr", "-n", ns, "-o", "json"))["items"]
            good = [i for i in items if i["metadata"]["name"].startswith("s")
                    and (i.get("status") or {}).get("tables") == TABLES
                    and ready_reason(i) == "True"]  # fmt: skip
            written = [t for t in trs if t["metadata"]["name"].startswith("s")
                       and (t.get("status") or {}).get("conditions")]  # fmt: skip
            seen["broken"] = collections.Counter(
                ready_reason(o) for o in items + trs if o["metadata"]["name"].startswith("x")
            )
            if replicas and len(good) == count:
                deps = json.loads(kube("get", "deploy", "-n", ns, "-o", "json"))["items"]
                available = [
                    d
                    for d in deps
                    if d["metadata"]["name"].startswith("s")
                    and (d.get("status") or {}).get("availableReplicas", 0) >= replicas
                ]
                seen["available"] = len(available)
                if len(available) < count:
                    return False
            return len(good) == count and len(written) == count * TABLES

        demo.wait(all_reconciled, 1800, f"{count} pipelines reconciled", 2)
        took = time.perf_counter() - t0
        cpu1, req1, own1 = cpu_seconds(op.pid), api_requests(kube), own_requests(op)
        out |= {"all_reconciled_s": round(took, 1), "load": load(),
                "operator_cpu_s": round(cpu1 - cpu0, 1),
                "api_requests": sum((req1 - req0).values()),
                "api_requests_per_s": round(sum((req1 - req0).values()) / took, 1),
                "api_requests_top": top(req1 - req0),
                "operator_pass_requests": own1 - own0}  # fmt: skip
        if broken:
            demo.wait(all_reconciled, 5, "the healthy pipelines to stay Ready", 1)
            out["broken_ready_reasons"] = dict(seen["broken"])
        # Steady state: the status refresh (15 s) over every pipeline, nothing changing.
        time.sleep(20)
        cpu2, req2, t2 = cpu_seconds(op.pid), api_requests(kube), time.perf_counter()
        own2 = own_requests(op)
        time.sleep(steady)
        cpu3, req3, t3 = cpu_seconds(op.pid), api_requests(kube), time.perf_counter()
        own3 = own_requests(op)
        rss, hwm = rss_mib(op.pid)
        out |= {"steady_cpu_pct": round((cpu3 - cpu2) / (t3 - t2) * 100, 1),
                "steady_api_requests_per_s": round(sum((req3 - req2).values()) / (t3 - t2), 1),
                "steady_api_requests_top": top(req3 - req2, 5),
                "steady_operator_pass_requests_per_s": round((own3 - own2) / (t3 - t2), 2),
                "steady_load": load(),
                "rss_mib": round(rss, 1), "peak_rss_mib": round(hwm, 1)}  # fmt: skip
    finally:
        op.terminate()
        op.wait(30)
    return out


def run_steps(kube: demo.Kube, ns: str, watcher: Timeline, name: str, t0: float,
              applied: float) -> dict[str, float]:  # fmt: skip
    """Each milestone of one apply → Ready in seconds after the apply started, in order."""
    seen = dict(watcher.seen.get(name, {}))
    out = {"apply_returned": applied - t0}
    out |= {k: v - t0 for k, v in seen.items() if k != "pipeline_seen"}
    pod = watcher.pods.get(name)
    text = ""
    for _ in range(10):  # the first assignment comes after Ready now: wait for it a little
        text = kube("logs", pod, "-n", ns, check=False) if pod else ""
        if not pod or '"partitions_assigned"' in text:
            break
        time.sleep(1)
    phases = worker_phases(text)
    if phases is not None:
        exec_at, marks = phases
        out |= {f"worker_{k}": exec_at - t0 + v for k, v in marks.items()}
        out["worker_exec"] = exec_at - t0
    return {k: round(v, 3) for k, v in sorted(out.items(), key=lambda kv: kv[1])}


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, math.ceil(0.95 * len(xs)) - 1)]


def main() -> int:
    runs = int(os.environ.get("RUNS", "5"))
    count = int(os.environ.get("PIPELINES", "200"))
    broken = int(os.environ.get("BROKEN", "50"))
    steady = float(os.environ.get("STEADY", "60"))
    phases = set(os.environ.get("PHASES", "1,2,3").split(","))
    kwok = os.environ.get("KWOK", "0") == "1"
    subprocess.run([str(REPO / "hack/stack"), "up", "postgres", "kafka", "cassandra", "k8s",
                    "node", *(["kwok"] if kwok else [])], check=True)  # fmt: skip
    env = demo.stack_env()
    kube = demo.Kube(env)
    image = demo.build_image()
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    log = out_dir / "operator-bench.log"
    cluster, session = demo.cassandra(env)
    ks = f"opbench_{uuid.uuid4().hex[:6]}"
    session.execute(f"CREATE KEYSPACE {ks} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    for i in range(TABLES):
        session.execute(f"CREATE TABLE {ks}.t{i} (id int PRIMARY KEY, v text)")
    cluster.shutdown()
    kube("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    result: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S")}
    made: list[str] = []
    try:
        if "1" in phases:
            # 1. apply → Ready with workers on the local node.
            ns = namespace(kube, env, "opb")
            made.append(ns)
            # The workers on the benchmark's own node (placement.py), or on the shared one.
            node = PrivateNode(kube) if os.environ.get("BENCH_NODE", "private") == "private" \
                else None  # fmt: skip
            if node is not None:
                place(kube, ns, PRIVATE_NODE)
            op = start_operator(env, ns, log)
            latencies: list[float] = []
            steps: list[dict[str, float]] = []
            watcher = Timeline(env["KUBECONFIG"], ns)
            try:
                time.sleep(3)
                for r in range(runs):
                    name = f"p{r}"
                    docs = pipeline(ns, name, env, ks, f"opb{r}{uuid.uuid4().hex[:4]}", image,
                                    1, True)  # fmt: skip
                    t0 = time.time()
                    kube("apply", "-f", "-", stdin="\n---\n".join(json.dumps(d) for d in docs))
                    applied = time.time()
                    end = watcher.wait(name, "pipeline_ready", 180)
                    latencies.append(end - t0)
                    steps.append(run_steps(kube, ns, watcher, name, t0, applied))
                    print(f"run {r}: apply→Ready {latencies[-1]:.2f}s (load {load()})")
                    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in steps[-1].items()))
                    kube("delete", "cdcp", name, "-n", ns, "--wait=true")
                    kube("delete", "tr", "-n", ns, "--all", "--wait=true")
                    # The worker Pod (a port on the host network) must be gone before the next.
                    demo.wait(lambda: not kube("get", "pods", "-n", ns, "-o", "name",
                                               check=False).strip(),
                              120, "the previous worker Pod to stop", 0.5)  # fmt: skip
            finally:
                watcher.stop()
                op.terminate()
                op.wait(30)
                if node is not None:
                    node.stop()
                    unplace(kube, PRIVATE_NODE)
            result |= {"apply_to_ready_s": [round(x, 2) for x in latencies],
                       "apply_to_ready_steps_s": steps,
                       "apply_to_ready_p50_s": round(statistics.median(latencies), 2),
                       "apply_to_ready_p95_s": round(p95(latencies), 2),
                       "apply_to_ready_load": load()}  # fmt: skip
            result["target_apply_to_ready_p95_2s_met"] = result["apply_to_ready_p95_s"] <= 2
        if "2" in phases:
            # 2. scale: PIPELINES x 10 tables, workers at 0.
            ns = namespace(kube, env, "ops")
            made.append(ns)
            # KWOK=1: every pipeline with a worker (replicas 1) whose Pod runs on the kwok node
            # (Ready without a process); else workers at 0 replicas.
            replicas = 0
            if kwok:
                place(kube, ns, KWOK_NODE)
                replicas = 1
            try:
                scale = scale_run(kube, env, ns, ks, image, count, 0, steady, log, replicas)
            finally:
                if kwok:
                    unplace(kube, KWOK_NODE)
            print("scale:", json.dumps(scale))
            result["scale"] = scale
            result["target_scale_60s_met"] = scale["all_reconciled_s"] <= 60
            result["target_steady_cpu_10pct_met"] = scale["steady_cpu_pct"] <= 10
            result["target_rss_200mib_met"] = scale["peak_rss_mib"] <= 200
        if "3" in phases and broken:
            # 3. the same beside pipelines whose Kafka is unreachable for the whole run.
            ns = namespace(kube, env, "opo")
            made.append(ns)
            outage = scale_run(kube, env, ns, ks, image, count, broken, steady, log)
            print("outage:", json.dumps(outage))
            result["outage"] = outage
            result["outage_broken_pipelines"] = broken
            reasons = outage.get("broken_ready_reasons", {})
            result["outage_broken_all_kafka_unavailable"] = reasons == {
                "KafkaUnavailable": broken * (TABLES + 1)}  # fmt: skip
            result["target_outage_60s_met"] = outage["all_reconciled_s"] <= 60
    finally:
        from confluent_kafka.admin import AdminClient

        from tests.support.kube import drop_finalizers

        for n in made:
            drop_finalizers(env["KUBECONFIG"], n)
        if made:
            kube("delete", "namespace", *made, "--wait=false", check=False)
        admin = AdminClient({"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"]})
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(("ops-", "opo-"))
                or t.startswith("opb")]  # fmt: skip
        if ours:
            admin.delete_topics(ours)

    print()
    for k, v in result.items():
        print(f"{k:<38}{json.dumps(v)}")
    name = os.environ.get("OUT", "operator-kwok.json" if kwok else "operator.json")
    (out_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
