"""Benchmark: one cdc-worker process draining realistic Debezium events into PostgreSQL.

Loads N messages into the stack's Kafka (10-column table: bigint key, 3 text,
3 int, 2 double, 1 boolean; 75% inserts, 20% partial updates, 5% deletes; every
change copied RF=3 times as replicas do, interleaved), runs the worker until
PostgreSQL holds all offsets, and reports events/s, batch latency p50/p95 and
peak RSS. In the same run it measures PostgreSQL's own ceiling: a plain COPY of
the final rows into an empty copy of the table. Prints a table and writes JSON.

    make bench-worker            # N=300000 messages, batch 10000
    BENCH_EVENTS=600000 make bench-worker
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
SOURCE = {"version": "3.4.1.Final", "connector": "cassandra", "name": "bench", "snapshot": "false",
          "db": "NULL", "sequence": None, "cluster": "bench", "file": "CommitLog-8-1.log",
          "pos": 1, "keyspace": "bench", "table": "items"}  # fmt: skip


def _cell(v: Any) -> dict[str, Any]:
    return {"value": v, "deletion_ts": None, "set": True}


def _value(rng: random.Random, col: str) -> Any:
    typ = COLUMNS[col]
    if typ == "text":
        return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=rng.randint(20, 60)))
    if typ == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if typ == "double":
        return rng.random() * 1e6
    return rng.random() < 0.5


def make_events(n_messages: int, seed: int = 1) -> tuple[list[tuple[bytes, bytes]], int]:
    rng = random.Random(seed)
    logical = n_messages // 3
    keys = max(1, logical // 5)
    events: list[tuple[bytes, bytes]] = []
    ts = 1_700_000_000_000_000
    values = [c for c in COLUMNS if c != "id"]
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
            after.update({c: _cell(_value(rng, c)) if c in chosen else None for c in values})
        else:
            op = "i"
            after.update({c: _cell(_value(rng, c)) for c in values})
        after["_range_start"] = after["_range_end"] = None
        payload = {"ts_ms": ts // 1000 + 700, "op": op,
                   "source": {**SOURCE, "ts_ms": ts // 1000, "ts_us": ts, "ts_ns": ts * 1000},
                   "after": after}  # fmt: skip
        k = orjson.dumps({"id": key})
        v = orjson.dumps(payload)
        for _ in range(3):
            events.append((k, v))
    # Replica copies interleave: shuffle within a sliding window, as commit logs of 3 nodes would.
    window = 3000
    for start in range(0, len(events), window):
        chunk = events[start : start + window]
        rng.shuffle(chunk)
        events[start : start + window] = chunk
    return events, keys


def load(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
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


def main() -> int:
    n = int(os.environ.get("BENCH_EVENTS", "300000"))
    batch = int(os.environ.get("BENCH_BATCH", "10000"))
    env = _stack_env()
    subprocess.run([str(REPO / "hack/stack"), "up", "postgres", "kafka", "redis"], check=True)
    name = f"bench{uuid.uuid4().hex[:6]}"
    topic = f"{name}.bench.items"
    t = time.perf_counter()
    events, keys = make_events(n)
    load(env["KAFKA_BOOTSTRAP_SERVERS"], topic, events)
    print(f"loaded {len(events)} messages ({keys} keys) in {time.perf_counter() - t:.1f}s")

    dsn = env["PG_DSN"]
    nopw = dsn.replace(":cdc@", "@", 1)
    cfg = {
        "pipeline": name,
        "kafka": {"bootstrapServers": env["KAFKA_BOOTSTRAP_SERVERS"], "groupId": name,
                  "deadLetterTopic": f"{name}.dlq"},
        "postgres": {"dsn": nopw, "schema": name},
        "redis": {"url": env["REDIS_URL"]},
        "tables": [{"topic": topic, "source": {"keyspace": "bench", "table": "items"},
                    "schema": {"partitionKey": ["id"], "columns": COLUMNS}}],
        "batch": {"maxEvents": batch, "maxWaitMs": 500},
        "httpPort": free_port(),
    }  # fmt: skip
    tmp = REPO / "bench-results"
    tmp.mkdir(exist_ok=True)
    worker = WorkerProcess(tmp, cfg, {"POSTGRES_PASSWORD": "cdc", "CDC_LOG_LEVEL": "DEBUG"})
    with psycopg.connect(dsn, autocommit=True) as pg:
        worker.start()
        assert worker.proc is not None
        start = None
        done = None
        while True:
            time.sleep(0.05)
            if worker.proc.poll() is not None:
                print(worker.logs()[-3000:])
                raise SystemExit("worker exited")
            try:
                got = pg.execute(f"SELECT COALESCE(sum(next_offset),0) FROM {name}._cdc_offsets")
                applied = int(got.fetchone()[0])  # type: ignore[index]
            except psycopg.errors.UndefinedTable:
                continue
            if start is None and applied > 0:
                start = time.perf_counter()
                first = applied
            if applied >= len(events):
                done = time.perf_counter()
                break
        rss = peak_rss_mib(worker.proc.pid)
        worker.stop()
        assert start is not None
        # The first batch is excluded: it ran before the clock started.
        rate = (len(events) - first) / (done - start)
        lat = [json.loads(line)["ms"] for line in worker.logs().splitlines()
               if '"batch_applied"' in line]  # fmt: skip
        rows = pg.execute(f"SELECT count(*) FROM {name}.items").fetchone()[0]  # type: ignore[index]
        # PostgreSQL's ceiling: plain COPY of the final rows into an empty copy of the table.
        cols = ", ".join(COLUMNS)
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
    result = {
        "messages": len(events), "logical_changes": len(events) // 3, "keys": keys,
        "final_rows": rows, "batch_max_events": batch,
        "worker_events_per_s": round(rate), "batch_ms_p50": round(statistics.median(lat), 1),
        "batch_ms_p95": round(sorted(lat)[int(len(lat) * 0.95) - 1], 1) if lat else None,
        "batches": len(lat), "peak_rss_mib": round(rss, 1),
        "copy_ceiling_rows_per_s": round(copy_rate), "ratio_vs_copy": round(rate / copy_rate, 2),
        "machine": f"{os.cpu_count()} cores", "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    print()
    print(f"{'metric':<28}{'value':>14}")
    print("-" * 42)
    for k, v in result.items():
        print(f"{k:<28}{v!s:>14}")
    (tmp / "worker.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {tmp / 'worker.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
