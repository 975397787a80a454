"""`cdc-agent`: supervises the Debezium Cassandra agent beside one Cassandra node.

The connector's agent is a standalone JVM that must run next to every node (it reads the node's
cdc_raw directory). Left alone it misses tables created together with their keyspace and tables
using a UDT created while it runs, keeps running with a stale configuration, stays dead after a
crash, and answers `/health` 200 while capturing nothing (docs/debezium-wire-format.md). This
subpackage runs it as a child process and owns those restarts, and reports per-table capture
health from signals outside the JVM: the node's local write counts and the table topics' high
watermarks. It lives in the worker package because it is the first hop of the same data path and
shares its logging and metrics conventions; it imports nothing from the write path.
"""
