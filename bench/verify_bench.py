"""Benchmark: the token-range scanner against a plain full-table SELECT.

Writes a 10-column Cassandra table (bigint key, 3 text, 3 int, 2 double, 1
boolean) with N rows, then measures, each in its own process so peak RSS is
per phase:
1. a plain `SELECT *` of the whole table with the same driver and page size
   (the ceiling for anything that reads Cassandra);
2. the scanner's own SELECT (token, every column with WRITETIME and TTL) over the
   whole table, rows only decoded by the driver: the driver's raw decoding rate
   for what the scanner reads;
3. `cdc-worker backfill` into an empty PostgreSQL table (exact write times);
4. `cdc-worker verify` of the table in sync (digests only, no rows move);
5. both again as two slices in two processes at once (`parallelism: 2`: an Indexed Job's
   two Pods on one node), for the speed-up (timings summed over the slices).
Prints a table (rates, ratio to the plain SELECT, peak RSS, and where the scan's
time went) and writes bench-results/verify_bench.json.

    make bench-verify                  # N=1000000
    BENCH_ROWS=50000 make bench-verify # a quick run
    BENCH_KEYSPACE=vbkeep BENCH_ROWS=200000 make bench-verify
                                       # keep (and reuse) a loaded keyspace between runs
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import yaml
from cassandra.cluster import Cluster
from cassandra.concurrent import execute_concurrent_with_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import _stack_env  # noqa: E402

COLUMNS = {"id": "bigint", "t1": "text", "t2": "text", "t3": "text", "i1": "int", "i2": "int",
           "i3": "int", "d1": "double", "d2": "double", "flag": "boolean"}  # fmt: skip
FETCH = 1000


def _text(rng: random.Random) -> str:
    return "".join(rng.choices("abcdefghijklmnopqrstuvwxyz ", k=rng.randint(20, 60)))


def load(session: object, ks: str, n: int) -> float:
    s = session
    cols = ", ".join(COLUMNS)
    ins = s.prepare(f"INSERT INTO {ks}.items ({cols}) VALUES ({', '.join('?' * len(COLUMNS))})")  # type: ignore[attr-defined]
    rng = random.Random(7)
    s.default_timeout = 120  # type: ignore[attr-defined]  # a loaded machine: slow, not failed
    t = time.perf_counter()
    chunk = 20_000
    for start in range(0, n, chunk):
        rows = [
            (i, _text(rng), _text(rng), _text(rng), rng.randint(-(2**31), 2**31 - 1),
             rng.randint(0, 1000), rng.randint(0, 10), rng.random() * 1e6, rng.random(),
             rng.random() < 0.5)
            for i in range(start, min(n, start + chunk))
        ]  # fmt: skip
        execute_concurrent_with_args(s, ins, rows, concurrency=32, raise_on_first_error=True)
    return time.perf_counter() - t


def child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a phase in a process; returns (seconds, that process's peak RSS in MiB, stdout)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, text=True)
        hwm = 0  # VmHWM: this process's own peak (ru_maxrss would include the forked parent)
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                hwm = max(hwm, int(status.split("VmHWM:")[1].split()[0]))
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.1)
        secs = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{args[:4]} failed:\n{err.read()[-3000:]}")
        return secs, hwm / 1024, out.read()


def children(argvs: list[list[str]], env: dict[str, str]) -> tuple[float, float, list[str]]:
    """`child` for several processes at once (the slices of one scan, as an Indexed Job's Pods
    run them): wall-clock seconds until the last ends, the largest peak RSS, their outputs."""
    import concurrent.futures

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(argvs)) as pool:
        got = list(pool.map(lambda a: child(a, env), argvs))
    return time.perf_counter() - t, max(r for _, r, _ in got), [o for _, _, o in got]


def cluster(host: str, port: int) -> Cluster:
    """The stack's Cassandra as its clients reach it: TLS with the stack's CA, logged in."""
    return Cluster([host], port=port, protocol_version=5, **_secure(dict(os.environ)))


def _secure(env: dict[str, str]) -> dict[str, object]:
    import ssl

    from cassandra.auth import PlainTextAuthProvider

    from cdc_worker.config import secret

    kw: dict[str, object] = {}
    if env.get("CASSANDRA_CA_FILE"):
        kw["ssl_context"] = ssl.create_default_context(cafile=env["CASSANDRA_CA_FILE"])
    user, password = secret(env, "CASSANDRA_USERNAME"), secret(env, "CASSANDRA_PASSWORD")
    if user and password:
        kw["auth_provider"] = PlainTextAuthProvider(user, password)
    return kw


# argv: host port keyspace fetch mode; mode "plain": SELECT * with the driver's defaults (named
# tuples); "scan": the scanner's column list with plain tuples, whole table, rows only decoded.
PLAIN = """
import os, sys
sys.path.insert(0, sys.argv[6])
from verify_bench import COLUMNS, cluster
from cassandra.query import tuple_factory
host, port, ks, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[5]
fetch = int(sys.argv[4])
c = cluster(host, port)
s = c.connect()
s.default_fetch_size = fetch
if mode == "plain":
    n = sum(1 for _ in s.execute(f"SELECT * FROM {ks}.items"))
else:
    s.row_factory = tuple_factory
    cols = [c for c in COLUMNS if c != "id"]
    sel = ["token(id)", "id", *(x for c in cols for x in (c, f"WRITETIME({c})", f"TTL({c})"))]
    n = sum(1 for _ in s.execute(f"SELECT {', '.join(sel)} FROM {ks}.items"))
print(n)
c.shutdown()
"""


def main() -> int:
    n = int(os.environ.get("BENCH_ROWS", "1000000"))
    subprocess.run([str(REPO / "hack/stack"), "up", "postgres", "cassandra"], check=True)
    env = _stack_env()
    host, _, port = env["CASSANDRA_CONTACT_POINTS"].partition(":")
    os.environ.update({k: v for k, v in env.items() if k.startswith("CASSANDRA_")})
    keep = os.environ.get("BENCH_KEYSPACE")
    name = keep or f"vb{uuid.uuid4().hex[:6]}"
    cl = cluster(host, int(port))
    session = cl.connect()
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {name} WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")  # fmt: skip
    defs = ", ".join(f"{c} {t}" for c, t in COLUMNS.items())
    session.execute(f"CREATE TABLE IF NOT EXISTS {name}.items ({defs}, PRIMARY KEY (id))")
    # How many rows a completed load left (a `count(*)` of 1M rows exceeds Cassandra's range
    # read timeout here).
    session.execute(f"CREATE TABLE IF NOT EXISTS {name}.loaded (k int PRIMARY KEY, n int)")
    row = session.execute(f"SELECT n FROM {name}.loaded WHERE k = 0").one() if keep else None
    have = row[0] if row else 0
    load_s = 0.0
    if have != n:
        session.execute(f"TRUNCATE {name}.items")
        load_s = load(session, name, n)
        session.execute(f"INSERT INTO {name}.loaded (k, n) VALUES (0, {n})")
        print(f"loaded {n} rows into Cassandra in {load_s:.1f}s")
    else:
        print(f"reusing {n} rows in Cassandra keyspace {name}")

    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    cfg = {
        "pipeline": name,
        "kafka": {"bootstrapServers": "127.0.0.1:1", "groupId": name, "deadLetterTopic": "dlq"},
        "postgres": {"dsn": env["PG_DSN"].replace(":cdc@", "@", 1), "schema": name},
        "cassandra": {
            "contactPoints": [env["CASSANDRA_CONTACT_POINTS"]],
            **(
                {"tls": {"caFile": env["CASSANDRA_CA_FILE"]}}
                if env.get("CASSANDRA_CA_FILE")
                else {}
            ),
        },
        "tables": [{"topic": f"b.{name}.items", "source": {"keyspace": name, "table": "items"}}],
    }
    cfg_path = out_dir / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    penv = {**os.environ, "POSTGRES_PASSWORD": "cdc"}
    py = sys.executable
    results: dict[str, dict[str, object]] = {}
    here = str(Path(__file__).resolve().parent)
    for label, mode in (("plain SELECT *", "plain"), ("scanner SELECT", "scan")):
        secs, rss, out = child([py, "-c", PLAIN, host, port, name, str(FETCH), mode, here], penv)
        assert int(out.strip()) == n, out
        results[label] = {"seconds": secs, "rows_per_s": n / secs, "peak_rss_mib": rss}
    with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")  # backfill into an empty table
    scan = [py, "-m", "cdc_worker"]
    common = ["--config", str(cfg_path), "--no-resume", "--fetch-size", str(FETCH)]
    for phase, slices in (("backfill", 1), ("verify", 1), ("backfill", 2), ("verify", 2)):
        if phase == "backfill" and slices > 1:
            with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
                pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        argvs = [[*scan, phase, *common, "--lag-seconds", "0", "--slice", f"{i}/{slices}"]
                 for i in range(slices)]  # fmt: skip
        secs, rss, outs = children(argvs, penv)
        lines = [json.loads(out.strip().splitlines()[-1]) for out in outs]
        assert sum(x["rowsChecked"] for x in lines) == n, lines
        if phase == "verify":
            assert all(x["rowsDiffering"] == 0 for x in lines), lines
        timings: dict[str, float] = {}
        for x in lines:
            for k, v in x.get("timings", {}).items():
                timings[k] = timings.get(k, 0.0) + v
        label = phase if slices == 1 else f"{phase} x{slices} Pods"
        results[label] = {"seconds": secs, "rows_per_s": n / secs, "peak_rss_mib": rss,
                          "scan_seconds": max(x["duration"] for x in lines), "slices": slices,
                          "timings": timings}  # fmt: skip

    base = float(results["plain SELECT *"]["rows_per_s"])  # type: ignore[arg-type]
    print(f"\n{'phase':<16} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'x SELECT':>9} "
          f"{'peak RSS':>9}  where the scan's time went (s)")  # fmt: skip
    for phase, r in results.items():
        rate = float(r["rows_per_s"])  # type: ignore[arg-type]
        r["ratio_to_select"] = round(rate / base, 3)
        tm = " ".join(f"{k}={v:.1f}" for k, v in r.get("timings", {}).items())  # type: ignore[union-attr]
        print(f"{phase:<16} {n:>9} {r['seconds']:>8.1f} {rate:>9.0f} {rate / base:>9.2f} "
              f"{r['peak_rss_mib']:>7.0f}Mi  {tm}")  # fmt: skip
    doc = {"rows": n, "fetch_size": FETCH, "cores": os.cpu_count(), "load_seconds": load_s,
           "loadavg_at_end": os.getloadavg(), "phases": results}  # fmt: skip
    (out_dir / "verify_bench.json").write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out_dir / 'verify_bench.json'}")
    if not keep:
        session.execute(f"DROP KEYSPACE {name}")
        with psycopg.connect(env["PG_DSN"], autocommit=True) as pg:
            pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    cl.shutdown()
    cfg_path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
