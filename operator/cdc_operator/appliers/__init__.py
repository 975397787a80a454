"""I/O against the outside world (Kubernetes, Kafka, Vault, Cassandra, Redis).

Each applier is synchronous and small; handlers call them with
`asyncio.to_thread`, so the event loop never blocks.
"""
