"""Verify, repair and backfill: one token-range scanner over Cassandra, compared with PostgreSQL.

Why a scanner at all: the stream can only prove that the events it saw were
applied. Proof that PostgreSQL *equals* Cassandra (and the means to make it so,
or to load a table that existed before the pipeline) needs to read Cassandra
itself. The modules, each small:

- `ring`    - the Murmur3 ring split per replica ownership, sub-ranges, `--slice i/n`.
- `values`  - driver values → the worker's PostgreSQL text, the digest's canonical
              form, and a partition key's token (murmur3) from PostgreSQL values.
- `reader`  - paged, rate-limited `SELECT token(..), .., WRITETIME(c), TTL(c)` per range.
- `digest`  - the order-independent row digest, the same definition in Python and SQL.
- `pgside`  - the PostgreSQL side: `_cdc_token`, digests in SQL, leaf rows, checkpoints.
- `compare` - Merkle-style drill-down and the in-flight rule.
- `repair`  - Cassandra rows → `Change`s with per-cell write times → coalesce → the writer.
- `run`     - one slice of verify / repair / backfill, resumable, with a JSON result.
"""
