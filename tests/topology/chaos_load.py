"""The chaos run's write load: a separate process writing a steady mix of every change kind.

It runs in its own process (multiprocessing, spawn) so the driver's event loop and the pacing are
not slowed by the main process, which watches markers, injects faults and runs workers. Every
write is recorded (send time, ack latency, consistency, ok) into binary arrays the main process
reads after the run; nothing is modelled here: the truth is what Cassandra returns at ALL at the
end, because a write that timed out may or may not have been applied.

Mix (into `ev`, clustering key, and `kv`, simple key): full inserts (some with TTL), partial
updates (some with TTL), cell deletes, row deletes, range deletes, partition deletes; half at
LOCAL_QUORUM, half at ONE.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EV_DDL = (
    "CREATE TABLE {ks}.ev (p int, c int, a int, b text, d double, t timestamp, "
    "tags frozen<set<text>>, PRIMARY KEY (p, c)) WITH cdc = true"
)
KV_DDL = "CREATE TABLE {ks}.kv (id bigint PRIMARY KEY, v text, n int, f boolean) WITH cdc = true"
PARTITIONS, CLUSTERINGS, KV_KEYS = 400, 16, 6000
TTL_RANGE = (15, 40)  # seconds: every TTL runs out during the run or the drain

# kind -> (weight, CQL); ? order is what _params returns for the kind.
KINDS: dict[str, tuple[int, str]] = {
    "insert": (28, "INSERT INTO {ks}.ev (p, c, a, b, d, t, tags) VALUES (?, ?, ?, ?, ?, ?, ?)"),
    "insert_ttl": (
        3,
        "INSERT INTO {ks}.ev (p, c, a, b, d, t, tags) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?",
    ),
    "update_a": (14, "UPDATE {ks}.ev SET a = ? WHERE p = ? AND c = ?"),
    "update_bd": (10, "UPDATE {ks}.ev SET b = ?, d = ? WHERE p = ? AND c = ?"),
    "update_ttl": (3, "UPDATE {ks}.ev USING TTL ? SET b = ? WHERE p = ? AND c = ?"),
    "cell_delete": (5, "DELETE b FROM {ks}.ev WHERE p = ? AND c = ?"),
    "row_delete": (5, "DELETE FROM {ks}.ev WHERE p = ? AND c = ?"),
    "range_delete": (3, "DELETE FROM {ks}.ev WHERE p = ? AND c >= ? AND c < ?"),
    "partition_delete": (1, "DELETE FROM {ks}.ev WHERE p = ?"),
    "kv_insert": (16, "INSERT INTO {ks}.kv (id, v, n, f) VALUES (?, ?, ?, ?)"),
    "kv_update": (9, "UPDATE {ks}.kv SET n = ? WHERE id = ?"),
    "kv_delete": (3, "DELETE FROM {ks}.kv WHERE id = ?"),
}
# flags of a recorded write
OK, QUORUM = 1, 2


@dataclass(frozen=True)
class LoadSpec:
    env: dict[str, str]
    keyspace: str
    rate: float  # writes per second
    out_dir: str
    seed: int = 15
    in_flight: int = 512
    nice: int = -10


def _params(kind: str, rng: random.Random, i: int) -> tuple[Any, ...]:
    p, c = rng.randrange(PARTITIONS), rng.randrange(CLUSTERINGS)
    ttl = rng.randint(*TTL_RANGE)
    if kind in ("insert", "insert_ttl"):
        row = (p, c, rng.randrange(-1000, 1000), f"b{i}", rng.random() * 1e6,
               datetime.fromtimestamp(1.7e9 + rng.randrange(10**8) / 1000, tz=UTC),
               {f"t{rng.randrange(50)}" for _ in range(rng.randint(1, 3))})  # fmt: skip
        return (*row, ttl) if kind == "insert_ttl" else row
    if kind == "update_a":
        return (rng.randrange(-1000, 1000), p, c)
    if kind == "update_bd":
        return (f"u{i}", rng.random() * 1e6, p, c)
    if kind == "update_ttl":
        return (ttl, f"x{i}", p, c)
    if kind in ("cell_delete", "row_delete"):
        return (p, c)
    if kind == "range_delete":
        lo = rng.randrange(CLUSTERINGS)
        return (p, lo, lo + rng.randint(1, 4))
    if kind == "partition_delete":
        return (p,)
    key = rng.randrange(KV_KEYS)
    if kind == "kv_insert":
        return (key, f"v{i}", rng.randrange(1000), rng.random() < 0.5)
    if kind == "kv_update":
        return (rng.randrange(1000), key)
    return (key,)


def run(spec: LoadSpec, stop: Any, progress: Any) -> None:
    """The load process: write at `spec.rate` until `stop` is set, then dump the record.

    It raises its own CPU priority (`spec.nice`, when allowed: root): it stands for clients
    that in production run on machines of their own, and on 2 shared cores at a load average
    of 30-50 a normal-priority Python client could not send more than ~50 writes/s. The ring,
    the brokers, the agents and the workers keep their normal priority."""
    with contextlib.suppress(OSError):
        os.nice(spec.nice)
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

    from tests.support import cassandra as stack_cassandra

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(
            DCAwareRoundRobinPolicy(spec.env.get("CASSANDRA_LOCAL_DATACENTER", "datacenter1"))
        ),
        request_timeout=10,
    )
    cluster = stack_cassandra.cluster(spec.env, execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    session = cluster.connect()
    stmts = {}
    for kind, (_, cql) in KINDS.items():
        for cl in (ConsistencyLevel.LOCAL_QUORUM, ConsistencyLevel.ONE):
            s = session.prepare(cql.format(ks=spec.keyspace))
            s.consistency_level = cl
            stmts[kind, cl] = s
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    rng = random.Random(spec.seed)
    sent_at, latency, flags = array("d"), array("f"), array("b")
    errors: dict[str, int] = {}
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(spec.in_flight)

    def done(idx: int, t0: float, ok: bool, err: str | None = None) -> None:
        lat = (time.monotonic() - t0) * 1000
        with lock:
            latency[idx] = lat
            if ok:
                flags[idx] |= OK
            elif err:
                errors[err] = errors.get(err, 0) + 1
        slots.release()

    start = time.monotonic()
    wall0 = time.time()
    i = 0
    while not stop.is_set():
        due = start + i / spec.rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        kind = rng.choices(kinds, weights)[0]
        quorum = rng.random() < 0.5
        cl = ConsistencyLevel.LOCAL_QUORUM if quorum else ConsistencyLevel.ONE
        params = _params(kind, rng, i)
        if not slots.acquire(timeout=30):
            continue
        t0 = time.monotonic()
        with lock:
            sent_at.append(wall0 + (t0 - start))
            latency.append(-1.0)
            flags.append(QUORUM if quorum else 0)
            idx = len(flags) - 1
        try:
            fut = session.execute_async(stmts[kind, cl], params)
        except Exception as e:
            done(idx, t0, False, type(e).__name__)
        else:
            fut.add_callbacks(
                lambda _r, idx=idx, t0=t0: done(idx, t0, True),
                lambda e, idx=idx, t0=t0: done(idx, t0, False, type(e).__name__),
            )
        i += 1
        progress.value = i
    for _ in range(spec.in_flight):  # wait for the last acks
        slots.acquire(timeout=15)
    cluster.shutdown()
    out = Path(spec.out_dir)
    with lock:
        for name, arr in (("sent_at", sent_at), ("latency", latency), ("flags", flags)):
            with open(out / f"load_{name}.bin", "wb") as f:
                arr.tofile(f)
        (out / "load_errors.txt").write_text(
            "\n".join(f"{k} {v}" for k, v in sorted(errors.items()))
        )


@dataclass
class LoadRecord:
    sent_at: array[float]
    latency: array[float]
    flags: array[int]
    errors: dict[str, int]

    @classmethod
    def read(cls, out_dir: str) -> LoadRecord:
        out = Path(out_dir)
        arrays: list[Any] = []
        for name, code in (("sent_at", "d"), ("latency", "f"), ("flags", "b")):
            arr = array(code)
            data = (out / f"load_{name}.bin").read_bytes()
            arr.frombytes(data)
            arrays.append(arr)
        errors = {}
        for line in (out / "load_errors.txt").read_text().splitlines():
            k, _, v = line.partition(" ")
            errors[k] = int(v)
        return cls(arrays[0], arrays[1], arrays[2], errors)
