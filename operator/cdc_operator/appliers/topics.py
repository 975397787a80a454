"""Kafka topics: create what is missing, grow partitions, set retention; never delete data.

Only topics the pipeline owns are altered (and, with `deletionPolicy: Delete`, deleted): those
it created, recorded in the pipeline's status (`ownedTopics`), or adopted when the pipeline
says `adoptExistingTopics`. A topic that already existed belongs to someone else: naming it in
a CR must not rewrite its retention or delete it (a confused deputy otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from cdc_operator.appliers import kafka_clients


class TopicsError(Exception):
    """Kafka refused or could not be reached; the message says what failed."""


class KafkaUnreachable(TopicsError):
    """Kafka did not answer at all (its circuit breaker counts these, not refusals)."""


@dataclass(frozen=True)
class TopicWant:
    name: str
    partitions: int
    replication_factor: int
    retention_ms: int


@dataclass
class TopicsResult:
    actions: list[str] = field(default_factory=list)
    owned: set[str] = field(default_factory=set)
    foreign: list[str] = field(default_factory=list)  # exist, not ours: left alone


def ensure_topics(
    settings: dict[str, Any], wants: list[TopicWant], owned: set[str], adopt: bool = False,
    timeout: float = 15, claim: Callable[[set[str]], None] | None = None,
) -> TopicsResult:  # fmt: skip
    """Make the owned topics match; create missing ones (and own them).

    `claim` records ownership durably *before* topics are created: a crash between creating a
    topic and recording it would otherwise leave the pipeline's own topic looking foreign.
    """
    admin = kafka_clients.admin(settings, timeout)
    try:
        meta = kafka_clients.metadata(admin, timeout, max_age=0)  # fresh, and shared after
    except KafkaException as e:
        kafka_clients.forget(settings)
        raise KafkaUnreachable(f"Kafka unreachable: {e.args[0].str()}") from None
    out = TopicsResult(owned={t for t in owned if t in meta.topics})
    for w in wants:
        if w.name in meta.topics and w.name not in out.owned:
            if adopt:
                out.owned.add(w.name)
                out.actions.append(f"adopted {w.name}")
            else:
                out.foreign.append(w.name)
    create = [w for w in wants if w.name not in meta.topics]
    if create and claim is not None:
        claim(out.owned | {w.name for w in create})
    if create:
        futures = admin.create_topics(
            [NewTopic(w.name, w.partitions, w.replication_factor,
                      config={"retention.ms": str(w.retention_ms)}) for w in create],
            request_timeout=timeout,
        )  # fmt: skip
        for name, f in futures.items():
            try:
                f.result(timeout)
                out.actions.append(f"created {name}")
                out.owned.add(name)
            except KafkaException as e:
                if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise TopicsError(f"create {name}: {e.args[0].str()}") from None
                out.foreign.append(name)  # created by someone else meanwhile
    mine = [w for w in wants if w.name in meta.topics and w.name in out.owned]
    grow = [w for w in mine if len(meta.topics[w.name].partitions) < w.partitions]
    if grow:
        futures = admin.create_partitions([NewPartitions(w.name, w.partitions) for w in grow])
        for name, f in futures.items():
            try:
                f.result(timeout)
                out.actions.append(f"grew {name}")
            except KafkaException as e:
                raise TopicsError(f"grow {name}: {e.args[0].str()}") from None
    _set_retention(admin, mine, out, timeout)
    return out


def _set_retention(
    admin: AdminClient, mine: list[TopicWant], out: TopicsResult, timeout: float
) -> None:
    """Alter retention.ms only where it differs (described first: no write when in line)."""
    if not mine:
        return
    described = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, w.name) for w in mine],
        request_timeout=timeout,
    )
    current: dict[str, str | None] = {}
    for res, f in described.items():
        try:
            entry = f.result(timeout).get("retention.ms")
            current[res.name] = entry.value if entry is not None else None
        except KafkaException as e:
            raise TopicsError(f"describe {res.name}: {e.args[0].str()}") from None
    differ = [w for w in mine if current.get(w.name) != str(w.retention_ms)]
    if not differ:
        return
    resources = [
        ConfigResource(ConfigResource.Type.TOPIC, w.name, incremental_configs=[
            ConfigEntry("retention.ms", str(w.retention_ms),
                        incremental_operation=AlterConfigOpType.SET)])
        for w in differ
    ]  # fmt: skip
    for res, f in admin.incremental_alter_configs(resources).items():
        try:
            f.result(timeout)
            out.actions.append(f"set retention of {res.name}")
        except KafkaException as e:
            raise TopicsError(f"configure {res.name}: {e.args[0].str()}") from None


def delete_topics(settings: dict[str, Any], names: list[str], timeout: float = 15) -> None:
    admin = kafka_clients.admin(settings, timeout)
    futures = admin.delete_topics(names, request_timeout=timeout)
    kafka_clients.stale(admin)
    for name, f in futures.items():
        try:
            f.result(timeout)
        except KafkaException as e:
            if e.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise TopicsError(f"delete {name}: {e.args[0].str()}") from None


def consumer_lag(
    settings: dict[str, Any], group: str, topics: list[str], timeout: float = 5,
    strict: bool = False,
) -> dict[str, int]:  # fmt: skip
    """Messages behind per topic for a consumer group (from the workers' mirror commits).

    Two batched admin requests on the shared client: the group's committed offsets, and the
    partitions' end offsets (which partitions: from metadata shared for a few seconds). Lag
    is unknown ({}) when Kafka cannot say; with `strict`, Kafka not answering at all raises
    `KafkaUnreachable` instead. A topic the shared metadata does not show yet (just created),
    or a partition without a leader, is left out: its lag is unknown until the next refresh.

    Leaving them out is what keeps the operator alive: librdkafka's ListOffsets looks up
    partition leaders on the calling thread, and when one is unknown it registers for metadata
    changes before it has finished with the request; a change arriving on librdkafka's main
    thread in that window runs the same request there and frees it under the caller (a
    segfault in `list_offsets`, seen in a 360-object burst and reproduced in
    tests/integration/test_operator_kafka.py). With every leader known the lookup completes
    at once and nothing is shared with the main thread.
    """
    admin = kafka_clients.admin(settings)
    try:
        meta = kafka_clients.metadata(admin, timeout)
    except KafkaException as e:
        if strict:
            kafka_clients.forget(settings)
            raise KafkaUnreachable(f"Kafka unreachable: {e.args[0].str()}") from None
        return {}
    try:
        parts = [TopicPartition(t, p) for t in topics if t in meta.topics
                 and meta.topics[t].error is None
                 for p, part in meta.topics[t].partitions.items() if part.leader >= 0]  # fmt: skip
        if not parts:
            return {}
        request = [ConsumerGroupTopicPartitions(group, parts)]
        committed = admin.list_consumer_group_offsets(request, request_timeout=timeout)[group]
        positions = {(tp.topic, tp.partition): tp.offset
                     for tp in committed.result(timeout).topic_partitions}  # fmt: skip
        latest, earliest = OffsetSpec.latest(), OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        ends = admin.list_offsets(dict.fromkeys(parts, latest), request_timeout=timeout)
        lows: dict[TopicPartition, Any] = {}
        if any(positions.get((tp.topic, tp.partition), -1) < 0 for tp in parts):
            lows = admin.list_offsets(dict.fromkeys(parts, earliest), request_timeout=timeout)
        out: dict[str, int] = {}
        unknown: set[str] = set()
        for tp, f in ends.items():
            try:
                high = f.result(timeout).offset
                pos = positions.get((tp.topic, tp.partition), -1)
                if pos < 0:
                    pos = lows[tp].result(timeout).offset
            except KafkaException:  # e.g. a topic that does not exist (yet): its lag is unknown
                unknown.add(tp.topic)
                continue
            out[tp.topic] = out.get(tp.topic, 0) + max(0, high - pos)
        return {t: n for t, n in out.items() if t not in unknown}
    except KafkaException:
        return {}
