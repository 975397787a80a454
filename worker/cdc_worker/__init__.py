"""cass-cdc-pg replication worker: Debezium Cassandra events into PostgreSQL.

The pipeline is split into one-stage modules (consume, decode, coalesce, write,
commit) that pass plain data to each other, so each stage can be measured alone.
"""

__version__ = "0.1.0"
