"""Apache Kafka 4.x from Maven Central jars, KRaft with combined broker + controller nodes.

The jars are resolved by hack/kafka/pom.xml into a cache directory keyed by
version. Health is an ApiVersions round trip on the client port: the broker
only processes requests once it has finished starting, so an answer means the
broker is serving rather than merely listening; the SASL_SSL listener of the
secure profile (kafka_secure.py) gets the same check over TLS verified against
the stack CA (SASL brokers answer ApiVersions before authentication).

`KafkaBroker(i)` is broker i of CDC_STACK_KAFKA_BROKERS (kafka_cluster.py runs them): node id i,
its ports the defaults + 10 * (i - 1) on 127.0.0.1, its own state directory, and with several
brokers the replication settings of production (RF 3 and min.insync.replicas 2 by default,
also for the internal topics). Broker 1 of a one-broker stack is the historical single node.
"""

from __future__ import annotations

import socket
import ssl
import struct
import uuid

from . import kafka_secure, tls
from .core import CACHE, PORT_OFFSET, REPO, Component, StackError, run
from .topology import PORT_STEP, kafka_brokers, member_dir

VERSION = "4.4.0"
PORT = 59092 + PORT_OFFSET
CONTROLLER_PORT = 59093 + PORT_OFFSET
HEAP = "768m"
CLUSTER_HEAP = "512m"  # per broker of a 3-broker cluster


def broker_ports(index: int) -> tuple[int, int, int]:
    """(client, controller, SASL_SSL) ports of broker i."""
    step = PORT_STEP * (index - 1)
    return PORT + step, CONTROLLER_PORT + step, kafka_secure.SASL_PORT + step


def bootstrap(count: int | None = None) -> str:
    n = kafka_brokers() if count is None else count
    return ",".join(f"127.0.0.1:{broker_ports(i)[0]}" for i in range(1, n + 1))


def _replication(n: int) -> str:
    """Settings of the internal and default topics: all 1 alone, RF min(n, 3) / ISR 2 else."""
    rf, isr = (1, 1) if n == 1 else (min(n, 3), 2)
    out = (
        f"offsets.topic.replication.factor={rf}\ntransaction.state.log.replication.factor={rf}\n"
        f"transaction.state.log.min.isr={isr}\nshare.coordinator.state.topic.replication.factor="
        f"{rf}\nshare.coordinator.state.topic.min.isr={isr}\n"
    )
    if n > 1:
        out += f"default.replication.factor={rf}\nmin.insync.replicas={isr}\n"
    return out


LOG4J2 = """\
name = cass-cdc-pg-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {logdir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = file, console
rootLogger.appenderRef.file.ref = FILE
rootLogger.appenderRef.console.ref = STDOUT
rootLogger.appenderRef.console.level = WARN
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
"""


class KafkaBroker(Component):
    name = "kafka"
    start_timeout = 90.0

    def __init__(self, index: int = 1) -> None:
        super().__init__()
        self.index = index
        self.count = kafka_brokers()
        self.port, self.controller_port, self.sasl_port = broker_ports(index)
        self.ports = broker_ports(index)
        self.state_dir = member_dir(self.name, index)
        self.proc = type(self.proc)(self.name, self.state_dir)
        self.libs = CACHE / f"kafka-{VERSION}" / "libs"
        self.data = self.state_dir / "data"
        self.props = self.state_dir / "server.properties"
        self.log4j = self.state_dir / "log4j2.properties"

    def install(self) -> None:
        if (self.libs / f"kafka_2.13-{VERSION}.jar").exists():
            return
        tmp = self.libs.with_name("libs.partial")
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                REPO / "hack/kafka/pom.xml",
                "dependency:copy-dependencies",
                f"-Dkafka.version={VERSION}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ]
        )
        tmp.rename(self.libs)

    def version(self) -> str:
        return f"Apache Kafka {VERSION} (KRaft)"

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j}",
            f"-Dkafka.logs.dir={self.state_dir}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def properties(self) -> str:
        voters = ",".join(f"{i}@127.0.0.1:{broker_ports(i)[1]}" for i in range(1, self.count + 1))
        port, ctl, sasl = self.port, self.controller_port, self.sasl_port
        return (
            f"process.roles=broker,controller\nnode.id={self.index}\n"
            f"controller.quorum.voters={voters}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctl},"
            f"SASL_SSL://127.0.0.1:{sasl}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{port},"
            f"SASL_SSL://127.0.0.1:{sasl}\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_SSL:SASL_SSL\n"
            f"log.dirs={self.data}\nnum.partitions=1\nnum.network.threads=2\nnum.io.threads=4\n"
            + _replication(self.count)
            + "group.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=true\nlog.retention.hours=168\n"
            + kafka_secure.broker_properties()
        )

    def cluster_id(self) -> str:
        """One id for every broker's storage, kept by broker 1 (a fresh one when alone)."""
        if self.count == 1:
            return run(self._java("kafka.tools.StorageTool", "random-uuid")).stdout.strip()
        path = member_dir(self.name, 1) / "cluster-id"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            new = run(self._java("kafka.tools.StorageTool", "random-uuid")).stdout.strip()
            path.write_text(new + "\n")
        return path.read_text().strip()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.props.write_text(self.properties())
        self.log4j.write_text(LOG4J2.format(logdir=self.state_dir))
        if not (self.data / "meta.properties").exists():
            kafka_secure.setup_marker(self.state_dir).unlink(missing_ok=True)
            cluster_id = self.cluster_id()
            run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id or str(uuid.uuid4()),
                    "-c",
                    str(self.props),
                    "--ignore-formatted",
                )
            )
        heap = HEAP if self.count == 1 else CLUSTER_HEAP
        self.proc.start(self._java("kafka.Kafka", str(self.props), heap=heap))

    def healthy(self) -> bool:
        return api_versions_ok("127.0.0.1", self.port) and api_versions_ok(
            "127.0.0.1", self.sasl_port, tls.client_context()
        )

    def after_start(self) -> None:
        kafka_secure.apply(self.libs, member_dir(self.name, 1), bootstrap(self.count))

    def env(self) -> dict[str, str]:
        sasl = ",".join(f"127.0.0.1:{broker_ports(i)[2]}" for i in range(1, self.count + 1))
        return {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap(self.count),
            **kafka_secure.env(),
            "KAFKA_SASL_SSL_BOOTSTRAP": sasl,
        }


def api_versions_ok(host: str, port: int, context: ssl.SSLContext | None = None) -> bool:
    """Send ApiVersions v0 and check for error code 0 in the reply; over TLS with a context
    (verified against its CA, host name `localhost`)."""
    client = b"stack"
    body = struct.pack(">hhih", 18, 0, 1, len(client)) + client
    try:
        raw = socket.create_connection((host, port), timeout=2)
        with context.wrap_socket(raw, server_hostname="localhost") if context else raw as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = _recv(s, 4)
            (size,) = struct.unpack(">i", head)
            resp = _recv(s, size)
    except (OSError, StackError):  # ssl.SSLError is an OSError
        return False
    corr, err = struct.unpack(">ih", resp[:6])
    return corr == 1 and err == 0


def _recv(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise StackError("connection closed")
        buf += chunk
    return buf
