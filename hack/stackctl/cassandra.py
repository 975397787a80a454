"""Apache Cassandra 5.0 from Maven Central jars: one node (127.0.0.1 by default) with CDC enabled.

`cassandra-all` and its runtime dependencies are resolved by hack/cassandra/pom.xml into a cache
directory keyed by version and run on JDK 17 with CassandraDaemon as the main class and the JVM
options of Cassandra's conf/jvm-server.options + conf/jvm17-server.options (the bin/cassandra
wrapper is not used). cassandra.yaml and logback.xml are rendered from hack/cassandra/ into the
component's state directory. The native transport requires TLS (the stack CA's certificate)
and a login (PasswordAuthenticator, roles made by cassandra_auth.py once the node answers).
Health is a real CQL exchange over the native protocol: a TLS handshake verified against the
stack CA, then STARTUP answered with AUTHENTICATE, written against the socket because
hack/stack runs before the project's virtualenv (and cassandra-driver) exists.

`CassandraNode(i)` is node i of a ring (cassandra_ring.py): address 127.0.0.i, the same CQL and
storage ports as node 1 (like one host per node in production), its own JMX port and state
directory, node 1 as the seed. Node 1 of a one-node stack is exactly the historical single node.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from . import cassandra_auth
from .core import CACHE, PORT_OFFSET, REPO, Component, StackError, run, tcp_open
from .topology import cassandra_nodes, loopback, member_dir

VERSION = "5.0.9"
CQL_PORT = 59042 + PORT_OFFSET
STORAGE_PORT = 57000 + PORT_OFFSET
JMX_PORT = 57199 + PORT_OFFSET
HEAP = "1G"
RING_HEAP = "768M"  # per node of a ring: three nodes, three agents and three brokers on 2 cores
LOCAL_DC = "datacenter1"  # SimpleSnitch's datacenter name
TEMPLATES = REPO / "hack" / "cassandra"

# conf/jvm17-server.options of Cassandra 5.0 (G1 section sized for 2 cores, JPMS, netty).
JVM17_SERVER_OPTIONS = [
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]


class CassandraNode(Component):
    name = "cassandra"
    start_timeout = 120.0

    def __init__(self, index: int = 1) -> None:
        super().__init__()
        self.index = index
        self.ring = cassandra_nodes()
        self.address = loopback(index)
        self.jmx_port = JMX_PORT + index - 1
        self.ports = (CQL_PORT, STORAGE_PORT, self.jmx_port)
        self.state_dir = member_dir(self.name, index)
        self.proc = type(self.proc)(self.name, self.state_dir)
        self.lib = CACHE / f"cassandra-{VERSION}" / "lib"
        self.yaml = self.state_dir / "cassandra.yaml"
        self.logback = self.state_dir / "logback.xml"
        self.cdc_raw = self.state_dir / "cdc_raw"

    def install(self) -> None:
        if (self.lib / f"cassandra-all-{VERSION}.jar").exists():
            return
        tmp = self.lib.with_name("lib.partial")
        run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                TEMPLATES / "pom.xml",
                "dependency:copy-dependencies",
                f"-Dcassandra.version={VERSION}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ]
        )
        tmp.rename(self.lib)

    def version(self) -> str:
        return f"Apache Cassandra {VERSION} (cassandra-all, JDK 17, cdc_enabled)"

    def render(self) -> None:
        """Write cassandra.yaml and logback.xml into the state directory."""
        values = {
            "DIR": str(self.state_dir),
            "CQL_PORT": CQL_PORT,
            "STORAGE_PORT": STORAGE_PORT,
            "ADDRESS": self.address,
            "SEEDS": f"{loopback(1)}:{STORAGE_PORT}",
            # Token allocation optimised for the keyspaces' replication factor (RF=3 on a ring).
            "ALLOC_RF": min(self.ring, 3),
            "KEYSTORE": cassandra_auth.keystore(),
        }
        text = Template((TEMPLATES / "cassandra.yaml.tmpl").read_text()).substitute(values)
        self.yaml.write_text(text)
        self.logback.write_text((TEMPLATES / "logback.xml.tmpl").read_text())
        for sub in ("data", "commitlog", "cdc_raw", "saved_caches", "hints"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        jamm = sorted(self.lib.glob("jamm-*.jar"))
        if not jamm:
            raise StackError(f"no jamm jar in {self.lib}; remove it and retry `hack/stack up`")
        return [
            "java",
            # conf/jvm-server.options (general section) and what cassandra-env.sh adds
            "-ea",
            "-da:net.openhft...",
            "-XX:+UseThreadPriorities",
            "-XX:+HeapDumpOnOutOfMemoryError",
            "-XX:+ExitOnOutOfMemoryError",
            f"-XX:HeapDumpPath={self.state_dir}",
            "-Xss256k",
            "-XX:+AlwaysPreTouch",
            "-XX:+UseTLAB",
            "-XX:+ResizeTLAB",
            "-XX:+UseNUMA",
            "-XX:+PerfDisableSharedMem",
            "-Djava.net.preferIPv4Stack=true",
            f"-Xms{self.heap()}",
            f"-Xmx{self.heap()}",
            *JVM17_SERVER_OPTIONS,
            f"-javaagent:{jamm[-1]}",
            f"-Dcassandra.jmx.local.port={self.jmx_port}",
            # A fresh single node otherwise waits ~30 s (RING_DELAY) before allocating tokens.
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.ring_delay_ms=1000",
            # The default superuser (used once, to create cdc_admin) without the 10 s delay.
            "-Dcassandra.superuser_setup_delay_ms=0",
            f"-Dcassandra.config=file://{self.yaml}",
            f"-Dcassandra.storagedir={self.state_dir}",
            f"-Dcassandra.logdir={self.state_dir}",
            "-Dcassandra-foreground=yes",
            f"-Dlogback.configurationFile=file://{self.logback}",
            "-cp",
            f"{self.lib}/*",  # expanded by the JVM, not a shell
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def heap(self) -> str:
        return HEAP if self.ring == 1 else RING_HEAP

    def busy_ports(self) -> list[int]:
        """Ports of this node's address (and JMX on 127.0.0.1) already served by someone."""
        return [p for p in (CQL_PORT, STORAGE_PORT) if tcp_open(p, self.address)] + (
            [self.jmx_port] if tcp_open(self.jmx_port) else []
        )

    def start(self) -> None:
        self.render()
        self.proc.start(self.command(), cwd=self.state_dir)

    def healthy(self) -> bool:
        return cassandra_auth.asks_for_login(self.address, CQL_PORT)

    def after_start(self) -> None:
        if self.index == 1:  # roles live in system_auth: one node sets them up for the ring
            cassandra_auth.ensure_roles(self.address, CQL_PORT)

    def contact_point(self) -> str:
        return f"{self.address}:{CQL_PORT}"


def cassandra_yaml(index: int = 1) -> Path:
    """Node i's cassandra.yaml, which the Debezium agent beside it reads."""
    return CassandraNode(index).yaml
