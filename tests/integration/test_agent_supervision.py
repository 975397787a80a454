"""cdc-agent on the real stack: the restarts it owns and the capture health it reports.

`hack/stack up debezium` runs the Debezium agent under `.venv/bin/cdc-agent` (table poll 1 s,
stall limit 30 s). Every test talks to the real Cassandra, Kafka and agent: a keyspace and a
cdc = true table created while the agent runs are captured without any restart by hand; a
changed properties file and a killed agent are restarted by cdc-agent. (The stall rule — local
writes without events fail /readyz — is tested in tests/unit/test_agent_supervisor.py: on the
stack, the connector sometimes does emit the static-only writes that test relied on.)
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cassandra.cluster import Session
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from tests.support import cassandra as stack_cassandra

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900), pytest.mark.exclusive]

RUN = uuid.uuid4().hex[:6]
KS = f"cdcagent_{RUN}"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http only
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Agent:
    def __init__(self, env: dict[str, str]) -> None:
        self.url = env["CDC_AGENT_URL"]
        self.config = Path(env["DEBEZIUM_CONFIG"])

    def status(self) -> dict[str, Any]:
        return json.loads(_get(f"{self.url}/status")[1])  # type: ignore[no-any-return]

    def metric(self, name: str, **labels: str) -> float:
        text = _get(f"{self.url}/metrics")[1]
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    def wait(self, what: str, check: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if check(st):
                return
            time.sleep(0.5)
        raise AssertionError(f"{what} not within {timeout}s; /status: {st}")

    def ready_after(self, starts: int, timeout: float = 90) -> None:
        self.wait(
            f"agent start #{starts + 1} ready",
            lambda st: st["starts"] > starts and st["phase"] == "ready",
            timeout,
        )


@pytest.fixture(scope="module")
def env(stack: Callable[..., dict[str, str]]) -> dict[str, str]:
    return stack("kafka", "cassandra", "debezium")


@pytest.fixture(scope="module")
def agent(env: dict[str, str]) -> Agent:
    a = Agent(env)
    a.wait("agent ready", lambda st: st["phase"] == "ready", 90)
    return a


@pytest.fixture(scope="module")
def session(env: dict[str, str]) -> Iterator[Session]:
    cluster = stack_cassandra.cluster(env)
    s = cluster.connect()
    yield s
    s.execute(f"DROP KEYSPACE IF EXISTS {KS}")
    cluster.shutdown()


def _consume(bootstrap: str, topic: str, match: Callable[[Any], bool], timeout: float) -> Any:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"agent-{RUN}"})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            value = json.loads(msg.value())
            value = value.get("payload", value)
            if match(value):
                return value
    finally:
        consumer.close()
    raise AssertionError(f"no matching event on {topic} within {timeout}s")


def test_new_keyspace_and_table_captured_without_manual_restart(
    env: dict[str, str], agent: Agent, session: Session
) -> None:
    starts = agent.status()["starts"]
    by_tables = agent.metric("cdc_agent_restarts_total", reason="tables")
    # A table created together with its keyspace: the running agent alone never captures it.
    session.execute(
        f"CREATE KEYSPACE {KS} WITH replication = {{'class': 'SimpleStrategy', "
        "'replication_factor': 1}"
    )
    session.execute(f"CREATE TABLE {KS}.fresh (id int PRIMARY KEY, v text) WITH cdc = true")
    session.execute(f"INSERT INTO {KS}.fresh (id, v) VALUES (1, 'written right away')")
    topic = f"{env['DEBEZIUM_TOPIC_PREFIX']}.{KS}.fresh"
    event = _consume(
        env["KAFKA_BOOTSTRAP_SERVERS"],
        topic,
        lambda v: v["after"]["v"] is not None and v["after"]["v"]["value"] == "written right away",
        120,
    )
    assert event["op"] == "i"
    assert agent.status()["starts"] > starts
    assert agent.metric("cdc_agent_restarts_total", reason="tables") > by_tables
    agent.wait(
        "the table's capture health",
        lambda st: (st["tables"].get(f"{KS}.fresh") or {}).get("last_event") is not None,
        30,
    )
    assert agent.metric("cdc_agent_table_events_total", keyspace=KS, table="fresh") >= 1
    assert agent.metric("cdc_agent_table_local_writes_total", keyspace=KS, table="fresh") >= 0
    assert _get(f"{agent.url}/healthz")[0] == 200


def test_changed_properties_restart_the_agent(agent: Agent) -> None:
    starts, sha = agent.status()["starts"], agent.status()["config_sha256"]
    with agent.config.open("a") as f:  # what a ConfigMap update does to the mounted file
        f.write(f"# touched by {__name__} {RUN}\n")
    agent.ready_after(starts)
    st = agent.status()
    assert st["config_sha256"] != sha
    assert agent.metric("cdc_agent_restarts_total", reason="config") >= 1


def test_a_dead_agent_is_restarted(agent: Agent) -> None:
    st = agent.status()
    exited = agent.metric("cdc_agent_restarts_total", reason="exited")
    os.kill(st["pid"], signal.SIGKILL)  # the JVM cdc-agent started for this stack, by its PID
    agent.ready_after(st["starts"])
    assert agent.status()["pid"] != st["pid"]
    assert agent.metric("cdc_agent_restarts_total", reason="exited") == exited + 1
