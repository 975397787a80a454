"""A scan slice's result, added to the run's totals in Redis for the operator's status.

Each Pod of an Indexed Job scans one slice; the operator shows the run's totals
(`status.verify`/`status.backfill` of the TableReplication) by reading
`cdc:<pipeline>:scan:<keyspace.table>:<run>`. Redis is the live metadata plane, not a
record: the Job's success or failure decides `InSync`, these are the counts behind it.
"""

from __future__ import annotations

from cdc_worker.config import WorkerConfig
from cdc_worker.connect import redis_client
from cdc_worker.scan.run import ScanResult

TTL_SECONDS = 7 * 86_400


def report(cfg: WorkerConfig, env: dict[str, str], run: str, result: ScanResult) -> None:
    if cfg.redis is None:
        return
    client = redis_client(cfg, env, 5)
    key = f"cdc:{cfg.pipeline}:scan:{result.table}:{run}"
    pipe = client.pipeline()
    for field in ("rowsChecked", "rowsDiffering", "rowsRepaired", "rowsInFlight"):
        pipe.hincrby(key, field, int(getattr(result, field)))
    pipe.hincrby(key, "slicesDone", 1)
    pipe.hincrbyfloat(key, "seconds", result.duration)
    pipe.expire(key, TTL_SECONDS)
    pipe.execute()
