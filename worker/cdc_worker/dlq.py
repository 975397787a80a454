"""The dead-letter topic: events that cannot be applied, with headers saying why and whence.

The original key and value are kept byte for byte, so an event can be replayed
once the cause is fixed. Messages are flushed before the batch's offsets commit
in PostgreSQL, so nothing is skipped silently (a crash may duplicate a DLQ entry,
never lose one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Producer


@dataclass(slots=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    error_class: str
    message: str
    table: str


class DeadLetterSink:
    def __init__(self, producer: Producer, topic: str, pipeline: str) -> None:
        self.producer = producer
        self.topic = topic
        self.pipeline = pipeline

    def send(self, letters: list[DeadLetter], timeout: float = 30.0) -> None:
        if not letters:
            return
        errors: list[str] = []

        def done(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        now = str(int(time.time() * 1000)).encode()
        for d in letters:
            self.producer.produce(
                self.topic,
                key=d.key,
                value=d.value,
                headers=[
                    ("cdc.error.class", d.error_class.encode()),
                    ("cdc.error.message", d.message[:2000].encode()),
                    ("cdc.source.topic", d.topic.encode()),
                    ("cdc.source.partition", str(d.partition).encode()),
                    ("cdc.source.offset", str(d.offset).encode()),
                    ("cdc.pipeline", self.pipeline.encode()),
                    ("cdc.table", d.table.encode()),
                    ("cdc.failed.at.ms", now),
                ],
                on_delivery=done,
            )
        remaining = self.producer.flush(timeout)
        if remaining or errors:
            raise ConnectionError(
                f"dead-letter topic {self.topic}: {remaining} undelivered, errors {errors[:3]}"
            )
