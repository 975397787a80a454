"""cdc-agent's pure parts: change detection, table-set diff, log phases, health rule, backoff."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cdc_worker.agent import props
from cdc_worker.agent.child import JVM17_OPTIONS, command
from cdc_worker.agent.config import Settings, cdc_raw_dir, kafka_conf, parse_args
from cdc_worker.agent.health import CaptureHealth, TableHealth
from cdc_worker.agent.logscan import (
    BLIND_LINE,
    READY_LINE,
    REFRESH_FAILED_LINE,
    Phase,
    error_kind,
    phase_after,
)
from cdc_worker.agent.probe import cdc_raw
from cdc_worker.agent.supervisor import backoff
from cdc_worker.agent.tables import cdc_tables, diff, topic, vector_columns

T = ("shop", "orders")


def test_file_watch_sees_content_changes_not_rewrites(tmp_path: Path) -> None:
    cfg = tmp_path / "agent.properties"
    cfg.write_text("topic.prefix=a\n")
    watch = props.FileWatch(cfg)
    assert not watch.changed()  # nothing accepted yet: the child has not started
    watch.accept()
    cfg.write_text("topic.prefix=a\n")  # same bytes written again (a re-rendered ConfigMap)
    assert not watch.changed()
    cfg.write_text("topic.prefix=b\n")
    assert watch.changed()
    watch.accept()
    assert not watch.changed()


def test_file_watch_ignores_a_missing_file(tmp_path: Path) -> None:
    """The kubelet swaps a ConfigMap's symlink; a moment without the file is no change."""
    cfg = tmp_path / "agent.properties"
    cfg.write_text("x=1\n")
    watch = props.FileWatch(cfg)
    watch.accept()
    cfg.unlink()
    assert not watch.changed()
    cfg.write_text("x=2\n")
    assert watch.changed()


def test_properties_parse_like_the_renderers_write() -> None:
    text = "# header\n! other\n\nkey.a=1\nkafka.producer.bootstrap.servers = h:9092\nb: two\n"
    text += "esc=a\\\\b\\nc\nflag\n"
    assert props.parse(text) == {
        "key.a": "1",
        "kafka.producer.bootstrap.servers": "h:9092",
        "b": "two",
        "esc": "a\\b\nc",
        "flag": "",
    }


def _row(**kw: object) -> SimpleNamespace:
    return SimpleNamespace(**kw)


def test_cdc_tables_and_diff() -> None:
    rows = [
        _row(keyspace_name="shop", table_name="orders", cdc=True),
        _row(keyspace_name="shop", table_name="audit", cdc=False),
        _row(keyspace_name="shop", table_name="users", cdc=None),
        _row(keyspace_name="crm", table_name="leads", cdc=True),
    ]
    now = cdc_tables(rows)
    assert now == {("shop", "orders"), ("crm", "leads")}
    change = diff(frozenset({("shop", "orders"), ("old", "gone")}), now)
    assert change.added == {("crm", "leads")}
    assert change.removed == {("old", "gone")}
    assert change.needs_restart
    assert change.describe() == "+crm.leads -old.gone"
    assert not diff(now, now - {("crm", "leads")}).needs_restart  # a dropped table: no restart
    assert topic("casscdc", T) == "casscdc.shop.orders"


def test_vector_columns_are_found_anywhere() -> None:
    rows = [
        _row(keyspace_name="ml", table_name="emb", column_name="v", type="vector<float, 3>"),
        _row(keyspace_name="shop", table_name="orders", column_name="id", type="int"),
        _row(keyspace_name="ml", table_name="f", column_name="l", type="list<vector<int, 2>>"),
    ]  # fmt: skip
    assert vector_columns(rows) == ["ml.emb.v", "ml.f.l"]


def test_log_phases() -> None:
    p = Phase.STARTING
    p = phase_after(p, "INFO [main] 2026 SchemaHolder.java:12 - Initialized SchemaHolder.")
    assert p is Phase.READY
    assert phase_after(p, "INFO something else") is Phase.READY
    assert phase_after(p, f"ERROR [x] - {REFRESH_FAILED_LINE}") is Phase.REFRESH_FAILED
    assert phase_after(Phase.STARTING, f"WARN [x] - {BLIND_LINE}") is Phase.BLIND
    # Once blind, a later "ready" or refresh failure does not hide it.
    assert phase_after(Phase.BLIND, READY_LINE) is Phase.BLIND
    assert phase_after(Phase.BLIND, REFRESH_FAILED_LINE) is Phase.BLIND
    assert phase_after(Phase.REFRESH_FAILED, READY_LINE) is Phase.REFRESH_FAILED


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        (f"ERROR [pool-1] 2026-01-01 S.java:80 - {REFRESH_FAILED_LINE}", "schema_refresh"),
        ("ERROR [x] 2026 C.java:1 - Moving CommitLog-7-1.log to relocation/error", "relocation"),
        ("2026-01-01 10:00:00 ERROR Processor group stopped unexpectedly", "processor_stopped"),
        ("ERROR [kafka-producer] - Failed to send record to Kafka", "kafka"),
        ("ERROR [x] - ClassCastException: ComplexColumnData cannot be cast", "processing"),
        ("INFO [x] - all fine, no ERROR here at the start", None),
        ("\tat org.apache.cassandra.Foo(Foo.java:1)", None),
        ("WARN [x] - retrying", None),
    ],
)  # fmt: skip
def test_error_kinds(line: str, kind: str | None) -> None:
    assert error_kind(line) == kind


def test_health_rule_writes_without_events_stall() -> None:
    h = TableHealth()
    h.observe(0, writes=10, emitted=100)  # baseline: nothing pending
    h.observe(5, writes=10, emitted=100)
    assert not h.stalled(5, 30)
    h.observe(10, writes=12, emitted=100)  # new local writes, topic unchanged
    assert h.pending_since == 10
    h.observe(20, writes=13, emitted=100)  # more writes keep the oldest pending time
    assert h.pending_since == 10
    assert not h.stalled(40, 30)
    assert h.stalled(41, 30)
    h.observe(45, writes=13, emitted=101)  # the topic moved: emitted after the writes
    assert h.pending_since is None
    assert not h.stalled(100, 30)
    assert h.last_event == 45
    assert h.new_events == 1
    assert h.events_per_second == pytest.approx(1 / 25)


def test_health_rule_unreadable_signals_and_restarted_nodes() -> None:
    h = TableHealth()
    h.observe(0, writes=5, emitted=None)  # no topic yet
    h.observe(1, writes=6, emitted=None)
    assert h.pending_since == 1
    h.observe(2, writes=None, emitted=3)  # the topic appeared: 3 events since we watched
    assert h.new_events == 3
    assert h.pending_since is None
    assert h.last_event == 2
    h.observe(3, writes=1, emitted=3)  # the node restarted: its count starts again
    assert h.pending_since is None
    assert h.writes == 1
    h.observe(4, writes=2, emitted=None)  # Kafka unreadable: the write is pending, not lost
    assert h.pending_since == 4


def test_health_rule_first_sight_is_a_baseline() -> None:
    h = TableHealth()
    h.observe(0, writes=50, emitted=None)
    assert h.pending_since is None
    assert h.new_writes == 0


def test_capture_health_tracks_the_table_set() -> None:
    ch = CaptureHealth(stall_after=10)
    other = ("shop", "users")
    ch.observe(0, frozenset({T, other}), {T: 1, other: 1}, {T: 5, other: 5})
    ch.observe(1, frozenset({T, other}), {T: 2, other: 2}, {T: 5, other: 6})
    assert ch.stalled(20) == [T]
    ch.observe(21, frozenset({other}), {other: 2}, None)
    assert ch.stalled(30) == []
    assert set(ch.tables) == {other}


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff(n, 1, 10) for n in range(7)] == [0, 1, 2, 4, 8, 10, 10]


def test_command_line_and_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_AGENT_CONFIG", "/etc/debezium/agent.properties")
    monkeypatch.setenv("CDC_AGENT_JAVA_OPTS", "-Xmx1g -Dx='a b'")
    s = parse_args(["--port", "9100", "--table-poll", "2"])
    assert s.config == Path("/etc/debezium/agent.properties")
    assert s.java_opts == ("-Xmx1g", "-Dx=a b")
    assert (s.port, s.table_poll) == (9100, 2.0)
    cmd = command(s.java, s.java_opts, Path("/a.jar"), s.config)
    assert cmd[0] == "java"
    assert cmd[-3:] == ["-jar", "/a.jar", "/etc/debezium/agent.properties"]
    assert set(JVM17_OPTIONS) <= set(cmd)
    assert cmd.index("-Xmx1g") > cmd.index(JVM17_OPTIONS[-1])  # the user's options come last
    monkeypatch.delenv("CDC_AGENT_CONFIG")
    with pytest.raises(SystemExit):
        parse_args([])


def test_derived_settings(tmp_path: Path) -> None:
    yaml_file = tmp_path / "cassandra.yaml"
    yaml_file.write_text("cdc_enabled: true\ncdc_raw_directory: /data/cdc_raw\n")
    p = {
        "cassandra.config": str(yaml_file),
        "kafka.producer.bootstrap.servers": "k:9092",
        "kafka.producer.security.protocol": "SSL",
    }
    s = Settings(config=tmp_path / "x", jar=tmp_path / "j")
    assert cdc_raw_dir(s, p) == Path("/data/cdc_raw")
    assert cdc_raw_dir(Settings(config=s.config, jar=s.jar, cdc_raw=tmp_path), p) == tmp_path
    assert cdc_raw_dir(s, {}) == Path("/var/lib/cassandra/cdc_raw")
    assert kafka_conf(p) == {"bootstrap.servers": "k:9092", "security.protocol": "SSL"}


def test_cdc_raw_counts_segments_only(tmp_path: Path) -> None:
    (tmp_path / "CommitLog-8-1.log").write_bytes(b"x" * 10)
    (tmp_path / "CommitLog-8-1_cdc.idx").write_text("10\nCOMPLETED\n")
    (tmp_path / "CommitLog-8-2.log").write_bytes(b"x" * 5)
    raw = cdc_raw(tmp_path)
    assert (raw.segments, raw.bytes) == (2, 15)
    assert cdc_raw(tmp_path / "missing").segments == 0
