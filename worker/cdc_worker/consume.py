"""The Kafka side: a cooperative-sticky consumer whose positions come from PostgreSQL.

On assignment each partition is positioned at the offset stored in PostgreSQL
(the start of the topic if none), after checking it against what Kafka still holds: a gap is
recorded and reported before consumption moves past it (gaps.py); the consumer never resets
an out-of-range position by itself. Kafka commits are made after each batch only
as a mirror for lag tooling. A revoke or loss during a batch abandons that batch;
the partitions kept are re-positioned from PostgreSQL, so nothing is skipped and
replays are harmless (merges are idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from cdc_worker.gaps import Gap, check

log = structlog.get_logger("cdc_worker.consume")

# Kafka refusing this worker (credentials, certificate, ACLs): librdkafka retries by itself and
# reports these only to the error callback, so without one the worker looked ready while it
# consumed nothing. They make readiness false, naming Kafka, until a partition is assigned or
# no refusal came for REFUSAL_TTL seconds (librdkafka retries a refused connection within its
# reconnect backoff, at most 10 s, so a lasting refusal keeps repeating; a passing one, say a
# broker restarting mid-handshake, must not keep the worker unready for ever).
REFUSAL_TTL = 30.0
JOIN_GRACE = 15.0
PAUSED_WATERMARK_EVERY = 5.0  # s between broker queries of a paused partition's high watermark
REFUSED = {
    KafkaError._AUTHENTICATION: "authentication failed",
    KafkaError.SASL_AUTHENTICATION_FAILED: "authentication failed",
    KafkaError._SSL: "TLS handshake failed",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "not authorized for a topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "not authorized for the consumer group",
}


class Source:
    def __init__(
        self,
        settings: dict[str, Any],
        group: str,
        topics: list[str],
        load_offsets: Callable[[list[tuple[str, int]]], dict[tuple[str, int], int]],
        on_gaps: Callable[[list[Gap]], None] | None = None,
    ) -> None:
        self.consumer = Consumer(
            {
                **settings,
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # Out of range is reported (_AUTO_OFFSET_RESET) and handled as a gap, never
                # silently reset.
                "auto.offset.reset": "error",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.partition.eof": False,
                "max.poll.interval.ms": 600_000,
                # A worker that dies without leaving (SIGKILL, OOM, node loss) keeps its
                # partitions until the group coordinator gives up on its heartbeats: with 30 s
                # the chaos run (issue #15.5) measured ~38 s without replication for them
                # (target 15 s). Heartbeats come from librdkafka's own thread, not the batch loop.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
                "fetch.max.bytes": 64 * 1024 * 1024,
                # librdkafka's prefetch queue (64 MiB by default) was a quarter of the worker's
                # peak RSS; 16 MiB still holds over a batch of 10,000 ~1 KB messages
                # (docs/benchmarks.md: 50 columns 320 -> 258 MiB, 10 columns 228 -> 166 MiB).
                "queued.max.messages.kbytes": 16 * 1024,
                "error_cb": self._on_error,
            }
        )
        self.load_offsets = load_offsets
        self.on_gaps = on_gaps
        self.assigned: set[tuple[str, int]] = set()
        self.generation = 0  # bumps on every revoke/loss: a batch from an older one is abandoned
        self.paused: set[tuple[str, int]] = set()
        self._paused_high: dict[tuple[str, int], int] = {}  # asked of the broker (lag())
        self._paused_high_at = 0.0
        self._refused: tuple[str, float] | None = None  # why Kafka refuses us, and when
        self._started = time.monotonic()
        self._joined = False  # the group coordinator answered once (an assignment, even empty)
        self._accepted = False  # Kafka answered this worker's login (confirm_access)
        if topics:  # every table quarantined: nothing to consume, the worker idles not ready
            self.consumer.subscribe(
                topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )  # fmt: skip

    def _on_error(self, err: KafkaError) -> None:
        why = REFUSED.get(err.code())
        if why is None:
            log.warning("kafka_error", error=str(err.str()))
            return
        refused = f"Kafka {why}: {err.str()}"
        if refused != self.refused:  # once per distinct refusal, not on every retry
            log.error("kafka_refused", hop="kafka", reason=why, error=str(err.str()))
        self._refused = (refused, time.monotonic())

    @property
    def refused(self) -> str | None:
        """Why Kafka refuses this worker, while it keeps doing so (for readiness)."""
        if self._refused is None or time.monotonic() - self._refused[1] > REFUSAL_TTL:
            return None
        return self._refused[0]

    @property
    def waiting(self) -> str | None:
        """Not ready before Kafka has accepted this worker once: a refused login is only
        reported a moment after start, and a probe in that moment saw a ready worker. Accepted
        means an answer on the worker's own authenticated connection (confirm_access) or an
        assignment; a worker the group leaves without partitions is accepted after JOIN_GRACE s
        without refusal."""
        if self._accepted or self._joined or time.monotonic() - self._started > JOIN_GRACE:
            return None
        return "KafkaJoining: the consumer group has not answered this worker yet"

    def confirm_access(self, topics: list[str], timeout: float) -> bool:
        """Whether Kafka answers this worker: a topic's metadata and the group's committed
        offset, asked on the consumer's own connections (so with its login and TLS), mean the
        login, the topic's Describe and the group's access were all accepted. The worker can
        then be ready without waiting for its first assignment: the broker holds a new group's
        first rebalance for group.initial.rebalance.delay.ms (3 s by default), which held
        apply → Ready back by as much. A refusal or no answer within `timeout` leaves the
        first assignment (or JOIN_GRACE) as the sign; the refusal itself reaches the error
        callback at the next poll and makes readiness name Kafka."""
        if not topics:
            return False
        deadline = time.monotonic() + timeout
        try:
            md = self.consumer.list_topics(topics[0], timeout=timeout)
            meta = md.topics.get(topics[0])
            if meta is None or meta.error is not None:
                why = meta.error if meta is not None else "no metadata"
                log.info("kafka_access_unconfirmed", topic=topics[0], error=str(why))
                return False
            left = max(0.1, deadline - time.monotonic())
            offsets = self.consumer.committed([TopicPartition(topics[0], 0)], timeout=left)
            errors = [str(tp.error) for tp in offsets if tp.error is not None]
            if errors:
                log.info("kafka_access_unconfirmed", topic=topics[0], error=errors[0])
                return False
        except KafkaException as e:
            log.info("kafka_access_unconfirmed", error=str(e))
            return False
        self._accepted = True
        return True

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self._refused = None  # the group coordinator accepted this worker
        self._joined = True
        keys = [(p.topic, p.partition) for p in parts]
        stored = self.load_offsets(keys)
        start = self._checked(consumer, stored)
        positioned = [TopicPartition(t, p, start.get((t, p), OFFSET_BEGINNING)) for t, p in keys]
        consumer.incremental_assign(positioned)
        self.assigned.update(keys)
        log.info(
            "partitions_assigned",
            partitions=[f"{t}[{p}]@{o.offset}" for (t, p), o in zip(keys, positioned, strict=True)],
        )

    def _checked(
        self, consumer: Consumer, stored: dict[tuple[str, int], int]
    ) -> dict[tuple[str, int], int]:
        """Stored offsets, moved past what Kafka no longer holds once that gap is recorded."""
        start, found = dict(stored), []
        for (t, p), offset in stored.items():
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            except Exception as e:  # unknown watermarks: keep the position, Kafka will say
                log.warning("watermarks_unavailable", topic=t, partition=p, error=str(e))
                continue
            resume, gap = check(offset, low, high, t, p)
            if gap is not None:
                found.append(gap)
                start[(t, p)] = resume
        if found:
            try:
                if self.on_gaps is not None:
                    self.on_gaps(found)
            except Exception as e:
                # Not recorded: do not move past it; Kafka reports it again when consumed.
                log.error("data_gap_not_recorded", error=str(e))
                return dict(stored)
        return start

    def _out_of_range(self, topic: str, partition: int) -> None:
        stored = self.load_offsets([(topic, partition)])
        if (topic, partition) not in stored:
            stored = {(topic, partition): 0}
        start = self._checked(self.consumer, stored)
        self.consumer.seek(TopicPartition(topic, partition, start[(topic, partition)]))

    def _on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        keys = {(p.topic, p.partition) for p in parts}
        self.assigned -= keys
        self.paused -= keys
        self.generation += 1
        consumer.incremental_unassign(parts)
        log.info("partitions_revoked", partitions=sorted(f"{t}[{p}]" for t, p in keys))

    def poll_batch(self, max_events: int, max_wait_s: float) -> list[Message]:
        out: list[Message] = []
        deadline = time.monotonic() + max_wait_s
        while len(out) < max_events:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msgs = self.consumer.consume(min(max_events - len(out), 10_000), timeout=left)
            for m in msgs:
                err = m.error()
                if err is None:
                    out.append(m)
                elif err.code() == KafkaError._AUTO_OFFSET_RESET:
                    self._out_of_range(m.topic() or "", m.partition() or 0)
                elif err.code() != KafkaError._PARTITION_EOF:
                    if err.fatal():
                        raise RuntimeError(f"fatal Kafka error: {err}")
                    log.warning("kafka_error", error=str(err))
        return out

    def keep_alive(self) -> None:
        """Serve group protocol and callbacks without taking new messages (during retries)."""
        parts = [TopicPartition(t, p) for t, p in self.assigned - self.paused]
        if parts:
            self.consumer.pause(parts)
        m = self.consumer.poll(0.1)
        if m is not None and m.error() is None:
            # A partition assigned during this poll delivered a message: put it back.
            self.consumer.seek(TopicPartition(m.topic() or "", m.partition() or 0, m.offset() or 0))
        if parts:
            self.consumer.resume(parts)

    def rewind(self) -> None:
        """Re-position every assigned partition at its PostgreSQL offset (after an abandon)."""
        stored = self.load_offsets(sorted(self.assigned))
        for t, p in sorted(self.assigned):
            self.consumer.seek(TopicPartition(t, p, stored.get((t, p), OFFSET_BEGINNING)))

    def set_paused(self, keys: set[tuple[str, int]]) -> None:
        keys &= self.assigned
        to_pause, to_resume = keys - self.paused, self.paused - keys
        if to_pause:
            self.consumer.pause([TopicPartition(t, p) for t, p in to_pause])
        if to_resume:
            self.consumer.resume([TopicPartition(t, p) for t, p in to_resume])
        self.paused = keys

    def mirror_commit(self, next_offsets: dict[tuple[str, int], int]) -> None:
        owned = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()
                 if (t, p) in self.assigned]  # fmt: skip
        if owned:
            try:
                self.consumer.commit(offsets=owned, asynchronous=True)
            except Exception as e:
                log.debug("mirror_commit_failed", error=str(e))

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind each assigned partition's high watermark. librdkafka caches the
        watermark from fetch responses, and a paused partition is not fetched: its cached value
        stops moving (librdkafka#4996), and a paused pipeline's backlog never showed as lag.
        For paused partitions the broker is asked, at most every PAUSED_WATERMARK_EVERY s."""
        out: dict[tuple[str, int], int] = {}
        now = time.monotonic()
        refresh = now - self._paused_high_at >= PAUSED_WATERMARK_EVERY
        if refresh:
            self._paused_high_at = now
        self._paused_high = {k: v for k, v in self._paused_high.items() if k in self.paused}
        for t, p in self.assigned:
            try:
                tp = TopicPartition(t, p)
                if (t, p) not in self.paused:
                    _, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
                elif refresh or (t, p) not in self._paused_high:
                    _, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
                    self._paused_high[(t, p)] = high
                else:
                    high = self._paused_high[(t, p)]
                pos = self.consumer.position([tp])[0].offset
            except Exception:  # noqa: S112 - lag is best effort
                continue
            if high >= 0 and pos >= 0:
                out[(t, p)] = max(0, high - pos)
        return out

    def close(self) -> None:
        self.consumer.close()
