"""Apache Kafka 4.x from Maven Central jars, single-node KRaft (combined broker + controller).

The jars are resolved by hack/kafka/pom.xml into a cache directory keyed by
version. Health is an ApiVersions round trip on the client port: the broker
only processes requests once it has finished starting, so an answer means the
broker is serving rather than merely listening; the SASL_SSL listener of the
secure profile (kafka_secure.py) gets the same check over TLS verified against
the stack CA (SASL brokers answer ApiVersions before authentication).
"""

from __future__ import annotations

import socket
import ssl
import struct
import uuid

from . import kafka_secure, tls
from .core import CACHE, PORT_OFFSET, REPO, Component, StackError, run

VERSION = "4.4.0"
PORT = 59092 + PORT_OFFSET
CONTROLLER_PORT = 59093 + PORT_OFFSET
HEAP = "768m"

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


class Kafka(Component):
    name = "kafka"
    ports = (PORT, CONTROLLER_PORT, kafka_secure.SASL_PORT)
    start_timeout = 90.0

    def __init__(self) -> None:
        super().__init__()
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

    def start(self) -> None:
        self.props.write_text(
            "process.roles=broker,controller\nnode.id=1\n"
            f"controller.quorum.voters=1@127.0.0.1:{CONTROLLER_PORT}\n"
            f"listeners=PLAINTEXT://127.0.0.1:{PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT},"
            f"SASL_SSL://127.0.0.1:{kafka_secure.SASL_PORT}\n"
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{PORT},"
            f"SASL_SSL://127.0.0.1:{kafka_secure.SASL_PORT}\n"
            "controller.listener.names=CONTROLLER\ninter.broker.listener.name=PLAINTEXT\n"
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
            "SASL_SSL:SASL_SSL\n"
            f"log.dirs={self.data}\nnum.partitions=1\nnum.network.threads=2\nnum.io.threads=4\n"
            "offsets.topic.replication.factor=1\ntransaction.state.log.replication.factor=1\n"
            "transaction.state.log.min.isr=1\nshare.coordinator.state.topic.replication.factor=1\n"
            "share.coordinator.state.topic.min.isr=1\ngroup.initial.rebalance.delay.ms=0\n"
            "auto.create.topics.enable=true\nlog.retention.hours=168\n"
            + kafka_secure.broker_properties()
        )
        self.log4j.write_text(LOG4J2.format(logdir=self.state_dir))
        if not (self.data / "meta.properties").exists():
            kafka_secure.setup_marker(self.state_dir).unlink(missing_ok=True)
            cluster_id = run(self._java("kafka.tools.StorageTool", "random-uuid")).stdout.strip()
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
        self.proc.start(self._java("kafka.Kafka", str(self.props), heap=HEAP))

    def healthy(self) -> bool:
        return api_versions_ok("127.0.0.1", PORT) and api_versions_ok(
            "127.0.0.1", kafka_secure.SASL_PORT, tls.client_context()
        )

    def after_start(self) -> None:
        kafka_secure.apply(self.libs, self.state_dir, f"127.0.0.1:{PORT}")

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{PORT}", **kafka_secure.env()}


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
