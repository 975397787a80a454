"""Benchmark: cdc-worker processes draining realistic Debezium events into PostgreSQL.

Each case loads N messages into the stack's Kafka (75% inserts, 20% partial updates,
5% deletes; every change copied RF=3 times as replicas emit it — same change, each
copy with its own commitlog file/position and emission time — interleaved), runs
the workers until PostgreSQL holds all offsets, and reports events/s, batch latency
p50/p95 and peak RSS. In the same run it measures PostgreSQL's own ceiling: a plain
COPY of the final rows into an empty copy of the table. Cases (issue #16):

- `main`: the 10-column table (bigint key, 3 text, 3 int, 2 double, 1 boolean), one worker;
  the targets (>= 100,000 events/s, milestone 75,000; >= 0.3 x COPY; RSS <= 300 MiB) apply here;
- `wide50`: a 50-column table (bigint key + 49 columns of the same four kinds);
- `text1k`: the 10-column table with a 1 KiB value in one text column (per-byte cost);
- `scale1/2/3`: 1, 2 and 3 workers of one group draining a topic of 6 partitions.

Prints a table with the targets marked met / not met and writes JSON
(bench-results/worker.json), with the load average around each case: the machine is
shared, compare figures taken back to back. Because the rate depends on what else runs, each
case also reports the CPU time per event, over the same interval as the rate, of the worker
processes and of their PostgreSQL backends (found by `application_name`; PostgreSQL is
local): those vary far less with the load, and `1e6 / max(worker, PostgreSQL)` is the rate
the pipeline would reach with a core each (`cpu-bound`; Kafka's own CPU is not counted).

    make bench-worker                         # all cases
    BENCH_CASES=main make bench-worker        # only some (comma-separated)
    BENCH_EVENTS=600000 make bench-worker     # messages of the main and scaling cases
"""

from __future__ import annotations

import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import _stack_env  # noqa: E402
from tests.support.worker_proc import WorkerProcess, free_port  # noqa: E402

COLUMNS = {"id": "bigint", "t1": "text", "t2": "text", "t3": "text", "i1": "int", "i2": "int",
           "i3": "int", "d1": "double", "d2": "double", "flag": "boolean"}  # fmt: skip
WIDE = {"id": "bigint"} | {
    f"c{i:02d}": ("text", "int", "double", "boolean")[i % 4] for i in range(1, 50)
}
SOURCE = {"version": "3.4.1.Final", "connector": "cassandra", "name": "bench", "snapshot": "false",
          "db": "NULL", "sequence": None, "cluster": "bench", "keyspace": "bench",
          "table": "items"}  # fmt: skip
TARGET_EVENTS, MILESTONE, TARGET_RATIO, TARGET_RSS = 100_000, 75_000, 0.3, 300.0


@dataclass(frozen=True)
class Case:
    name: str
    what: str
    columns: dict[str, str]
    messages: int
    partitions: int = 3
    workers: int = 1
    big_text: int = 0  # t1 carries this many characters (0: 20-60)


def _cell(v: Any) -> dict[str, Any]:
    return {"value": v, "deletion_ts": None, "set": True}


def _value(rng: random.Random, typ: str, size: int = 0) -> Any:
    if typ == "text":
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=size or rng.randint(20, 60)))
    if typ == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if typ == "double":
        return rng.random() * 1e6
    return rng.random() < 0.5


def make_events(
    n_messages: int, columns: dict[str, str] = COLUMNS, big_text: int = 0, seed: int = 1
) -> tuple[list[tuple[bytes, bytes]], int]:
    rng = random.Random(seed)
    logical = n_messages // 3
    keys = max(1, logical // 5)
    events: list[tuple[bytes, bytes]] = []
    ts = 1_700_000_000_000_000
    values = [c for c in columns if c != "id"]
    pos = [0, 0, 0]

    def value(c: str) -> Any:
        return _value(rng, columns[c], big_text if c == "t1" else 0)

    for _ in range(logical):
        ts += rng.randint(1, 50)
        key = rng.randrange(keys)
        roll = rng.random()
        after: dict[str, Any] = {"id": _cell(key)}
        if roll < 0.05:
            op = "d"
            after.update({c: {"value": None, "deletion_ts": ts, "set": True} for c in values})
        elif roll < 0.25:
            op = "u"
            chosen = set(rng.sample(values, rng.randint(1, 3)))
            after.update({c: _cell(value(c)) if c in chosen else None for c in values})
        else:
            op = "i"
            after.update({c: _cell(value(c)) for c in values})
        after["_range_start"] = after["_range_end"] = None
        k = orjson.dumps({"id": key})
        # Each replica's agent emits its own copy: the same change with its own commitlog
        # position and emission time (copies are not byte-identical, as on a real cluster).
        for node in range(3):
            pos[node] += rng.randint(200, 1200)
            source = {**SOURCE, "ts_ms": ts // 1000, "ts_us": ts, "ts_ns": ts * 1000,
                      "file": f"CommitLog-8-17000000{node}.log", "pos": pos[node]}  # fmt: skip
            payload = {"ts_ms": ts // 1000 + 700 + rng.randint(0, 300), "op": op,
                       "source": source, "after": after}  # fmt: skip
            events.append((k, orjson.dumps(payload)))
    # Replica copies interleave: shuffle within a sliding window, as commit logs of 3 nodes would.
    window = 3000
    for start in range(0, len(events), window):
        chunk = events[start : start + window]
        rng.shuffle(chunk)
        events[start : start + window] = chunk
    return events, keys


def load(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "compression.type": "lz4",
                  "queue.buffering.max.messages": 1_000_000})  # fmt: skip
    for k, v in events:
        while True:
            try:
                p.produce(topic, key=k, value=v)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(120) == 0


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time of the worker processes and of their PostgreSQL backends, from a mark on."""

    def __init__(self, pg: psycopg.Connection[Any], pipeline: str, workers: list[int]) -> None:
        self.pg, self.app, self.workers = pg, f"cdc-worker:{pipeline}", workers
        self.w0, self.b0 = 0.0, dict[int, float]()

    def _backends(self) -> dict[int, float]:
        rows = self.pg.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (self.app,)
        ).fetchall()
        return {int(r[0]): cpu_seconds(int(r[0])) for r in rows}

    def mark(self) -> None:
        self.w0, self.b0 = sum(cpu_seconds(p) for p in self.workers), self._backends()

    def since(self) -> tuple[float, float]:
        """(worker seconds, backend seconds) since the mark; a backend that started after it
        counts whole."""
        w = sum(cpu_seconds(p) for p in self.workers) - self.w0
        b = sum(t - self.b0.get(pid, 0.0) for pid, t in self._backends().items())
        return w, b


def _load() -> float:
    return round(os.getloadavg()[0], 1)


def run_case(case: Case, env: dict[str, str], batch: int, tmp: Path) -> dict[str, Any]:
    name = f"bench{uuid.uuid4().hex[:6]}"
    topic = f"{name}.bench.items"
    t = time.perf_counter()
    events, keys = make_events(case.messages, case.columns, case.big_text)
    load(env["KAFKA_BOOTSTRAP_SERVERS"], topic, events, case.partitions)
    size = sum(len(v) for _, v in events) / len(events)
    print(f"[{case.name}] loaded {len(events)} messages ({keys} keys, {size:.0f} B avg) "
          f"in {time.perf_counter() - t:.1f}s", flush=True)  # fmt: skip
    dsn = env["PG_DSN"]
    cfg = {
        "pipeline": name,
        "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"], "groupId": name,
                  "deadLetterTopic": f"{name}.dlq"},
        "postgres": {"dsn": dsn.replace(":cdc@", "@", 1), "schema": name},
        "redis": {"url": env["REDIS_URL"]},
        "tables": [{"topic": topic, "source": {"keyspace": "bench", "table": "items"},
                    "schema": {"partitionKey": ["id"], "columns": case.columns}}],
        "batch": {"maxEvents": batch, "maxWaitMs": 500},
    }  # fmt: skip
    wenv = {"POSTGRES_PASSWORD": "cdc", "CDC_LOG_LEVEL": "DEBUG"}
    workers = [
        WorkerProcess(tmp, {**cfg, "httpPort": free_port()}, wenv) for _ in range(case.workers)
    ]
    load_before = _load()
    with psycopg.connect(dsn, autocommit=True) as pg:
        for w in workers:
            w.start()
        start = done = None
        first = 0
        meter = CpuMeter(pg, name, [w.proc.pid for w in workers if w.proc is not None])
        while True:
            time.sleep(0.05)
            for w in workers:
                assert w.proc is not None
                if w.proc.poll() is not None:
                    print(w.logs()[-3000:])
                    raise SystemExit("worker exited")
            try:
                got = pg.execute(f"SELECT COALESCE(sum(next_offset),0) FROM {name}._cdc_offsets")
                applied = int(got.fetchone()[0])  # type: ignore[index]
            except psycopg.errors.UndefinedTable:
                continue
            if start is None and applied > 0:
                start, first = time.perf_counter(), applied
                meter.mark()
            if applied >= len(events):
                done = time.perf_counter()
                worker_cpu, pg_cpu = meter.since()
                break
        rss = max(peak_rss_mib(w.proc.pid) for w in workers if w.proc is not None)
        for w in workers:
            w.stop()
        assert start is not None
        assert done is not None
        # The first batch is excluded: it ran before the clock started.
        rate = (len(events) - first) / (done - start)
        lat = [json.loads(line)["ms"] for w in workers for line in w.logs().splitlines()
               if '"batch_applied"' in line]  # fmt: skip
        rows = pg.execute(f"SELECT count(*) FROM {name}.items").fetchone()[0]  # type: ignore[index]
        # PostgreSQL's ceiling: plain COPY of the final rows into an empty copy of the table.
        cols = ", ".join(case.columns)
        pg.execute(f"CREATE TABLE {name}.ceiling (LIKE {name}.items INCLUDING ALL)")
        buf = io.BytesIO()
        with pg.cursor().copy(f"COPY (SELECT {cols} FROM {name}.items) TO STDOUT") as cp:
            for chunk in cp:
                buf.write(chunk)
        data = buf.getvalue()
        t = time.perf_counter()
        with pg.cursor().copy(f"COPY {name}.ceiling ({cols}) FROM STDIN") as cp:
            cp.write(data)
        copy_s = time.perf_counter() - t
        pg.execute(f"DROP SCHEMA {name} CASCADE")
    copy_rate = rows / copy_s
    lat.sort()
    counted = len(events) - first
    worker_us, pg_us = worker_cpu / counted * 1e6, pg_cpu / counted * 1e6
    return {
        "case": case.name, "what": case.what, "columns": len(case.columns),
        "message_bytes_avg": round(size), "partitions": case.partitions,
        "workers": case.workers, "messages": len(events), "keys": keys, "final_rows": rows,
        "events_per_s": round(rate), "mib_per_s": round(rate * size / 2**20, 1),
        "batch_ms_p50": round(statistics.median(lat), 1) if lat else None,
        "batch_ms_p95": round(lat[max(0, int(len(lat) * 0.95) - 1)], 1) if lat else None,
        "batches": len(lat), "peak_rss_mib": round(rss, 1),
        "copy_ceiling_rows_per_s": round(copy_rate), "ratio_vs_copy": round(rate / copy_rate, 2),
        "worker_cpu_us_per_event": round(worker_us, 1), "pg_cpu_us_per_event": round(pg_us, 1),
        "cpu_bound_events_per_s": round(1e6 / max(worker_us, pg_us, 1e-9)),
        "load_avg_before": load_before, "load_avg_after": _load(),
    }  # fmt: skip


def cases(n: int) -> list[Case]:
    wide = max(30_000, n // 4)
    return [
        Case("main", "10 columns, 1 worker", COLUMNS, n),
        Case("wide50", "50 columns, 1 worker", WIDE, wide),
        Case("text1k", "10 columns, t1 = 1 KiB text, 1 worker", COLUMNS, wide, big_text=1024),
        *(Case(f"scale{w}", f"10 columns, {w} worker(s)", COLUMNS, n, 6, w) for w in (1, 2, 3)),
    ]


def targets(main: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rate, ratio, rss = main["events_per_s"], main["ratio_vs_copy"], main["peak_rss_mib"]
    return {
        f"events/s >= {TARGET_EVENTS:,}": {"value": rate, "met": rate >= TARGET_EVENTS},
        f"events/s >= {MILESTONE:,} (milestone)": {"value": rate, "met": rate >= MILESTONE},
        f"ratio vs COPY >= {TARGET_RATIO}": {"value": ratio, "met": ratio >= TARGET_RATIO},
        f"peak RSS <= {TARGET_RSS:.0f} MiB": {"value": rss, "met": rss <= TARGET_RSS},
    }


def main() -> int:
    n = int(os.environ.get("BENCH_EVENTS", "300000"))
    batch = int(os.environ.get("BENCH_BATCH", "10000"))
    wanted = [c for c in os.environ.get("BENCH_CASES", "").split(",") if c]
    env = _stack_env()
    subprocess.run([str(REPO / "hack/stack"), "up", "postgres", "kafka", "redis"], check=True)
    tmp = REPO / "bench-results"
    tmp.mkdir(exist_ok=True)
    results = [run_case(c, env, batch, tmp) for c in cases(n) if not wanted or c.name in wanted]
    cols = [("case", 8), ("what", 40), ("B/msg", 6), ("events/s", 9), ("MiB/s", 6),
            ("p50 ms", 7), ("p95 ms", 7), ("RSS MiB", 8), ("COPY rows/s", 11), ("ratio", 6),
            ("wkr us/ev", 9), ("pg us/ev", 8), ("cpu-bound", 9), ("load", 10)]  # fmt: skip
    print()
    print(" ".join(f"{h:>{w}}" if i > 1 else f"{h:<{w}}" for i, (h, w) in enumerate(cols)))
    for r in results:
        cells = [r["case"], r["what"], r["message_bytes_avg"], f"{r['events_per_s']:,}",
                 r["mib_per_s"], r["batch_ms_p50"], r["batch_ms_p95"], r["peak_rss_mib"],
                 f"{r['copy_ceiling_rows_per_s']:,}", r["ratio_vs_copy"],
                 r["worker_cpu_us_per_event"], r["pg_cpu_us_per_event"],
                 f"{r['cpu_bound_events_per_s']:,}",
                 f"{r['load_avg_before']}-{r['load_avg_after']}"]  # fmt: skip
        print(" ".join(f"{c!s:>{w}}" if i > 1 else f"{c!s:<{w}}"
                       for i, (c, (_, w)) in enumerate(zip(cells, cols, strict=True))))  # fmt: skip
    scale = {r["workers"]: r["events_per_s"] for r in results if r["case"].startswith("scale")}
    if 1 in scale:
        each = [f"{w} worker(s) {v:,}/s ({v / scale[1]:.2f}x)" for w, v in sorted(scale.items())]
        print("\nscaling (6 partitions): " + ", ".join(each))
    out: dict[str, Any] = {
        "batch_max_events": batch,
        "machine": f"{os.cpu_count()} cores",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cases": results,
    }
    main_case = next((r for r in results if r["case"] == "main"), None)
    if main_case is not None:
        out["targets"] = targets(main_case)
        print("\ntargets (main case, issue #16):")
        for what, t in out["targets"].items():
            print(f"  {what:<32} {t['value']!s:>10}  {'met' if t['met'] else 'NOT MET'}")
    (tmp / "worker.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {tmp / 'worker.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
