"""Lag reads on one shared AdminClient while topics come and go: run as a child process, so a
crash inside librdkafka is an exit status the test can assert on (see topics.consumer_lag).

    python -m tests.support.lag_churn BOOTSTRAP SECONDS
prints {"calls": n, "stable": lag} and exits 0 when it survived.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cdc_operator.appliers import kafka_clients, topics

READERS = 8


def main(bootstrap: str, seconds: float) -> None:
    settings = {"bootstrap.servers": bootstrap}
    run = f"churn-{uuid.uuid4().hex[:6]}"
    stable, group = f"{run}-stable", f"{run}-group"
    other = AdminClient(settings)
    for f in other.create_topics([NewTopic(stable, 2, 1)]).values():
        f.result(30)
    producer = Producer(settings)
    for i in range(3):
        producer.produce(stable, key=b"%d" % i, value=b"v")
    assert producer.flush(30) == 0
    names = [f"{run}-{i}" for i in range(100_000)]
    made = [0]
    stop = time.monotonic() + seconds
    calls, seen = [0], [None]

    def churn() -> None:
        shared = kafka_clients.admin(settings)
        while time.monotonic() < stop:
            i = made[0]
            for f in other.create_topics([NewTopic(names[i], 1, 1)]).values():
                f.result(30)
            made[0] = i + 1
            kafka_clients.metadata(shared, 5, max_age=0)
            if i >= 2:
                topics.delete_topics(settings, [names[i - 2]])

    def read() -> None:
        while time.monotonic() < stop:
            i = made[0]
            wanted = [stable, f"{run}-never", *names[max(0, i - 3) : i + 2]]
            lag = topics.consumer_lag(settings, group, wanted, 5)
            if stable in lag:
                seen[0] = lag[stable]
            calls[0] += 1

    threads = [threading.Thread(target=churn)] + [
        threading.Thread(target=read) for _ in range(READERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    topics.delete_topics(settings, [stable, *names[max(0, made[0] - 2) : made[0]]])
    print(json.dumps({"calls": calls[0], "stable": seen[0], "topics": made[0]}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
