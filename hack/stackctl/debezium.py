"""The Debezium Cassandra 5 connector, run as the agent beside the stack's Cassandra node.

`io.debezium:debezium-connector-cassandra-5:<version>:jar-with-dependencies` comes from Maven
Central into a cache directory keyed by version and runs as `java … -jar <jar> config.properties`
(its Main-Class is the standalone CassandraConnectorTask; the jar bundles its own cassandra-all,
Kafka client and DataStax driver, so nothing else goes on the classpath). It reads the node's
cassandra.yaml, schema and cdc_raw directory and produces JSON to the stack's Kafka.

config.properties is rendered from hack/debezium/config.properties.tmpl, unless
CDC_DEBEZIUM_CONFIG names a properties file (the one the operator renders from a CdcPipeline):
that file then runs exactly as given, with the working directory .stack/debezium, where
application.conf (the driver's contact points) is always rendered.

It runs under the product's supervisor, `.venv/bin/cdc-agent` (worker/cdc_worker/agent, see
docs/agent.md), exactly as in a Cassandra Pod's sidecar: cdc-agent starts `java … -jar <jar>
config.properties` as its child, copies the agent's log to its own output (.stack/debezium/
debezium.log holds both), restarts the agent when the properties file's content changes, when
a cdc = true table appears (the agent misses a table created together with its keyspace, or one
using a UDT created while it runs) and when it dies; its HTTP port (58001) serves /status,
/readyz and /metrics. So after DDL nothing needs restarting by hand, and writing another
properties file over the active one (`DEBEZIUM_CONFIG` in `hack/stack env`) switches the agent.

Health: the agent's /health answers 200 even when the agent sees no table at all, so it is not
enough. The component is healthy when cdc-agent runs, its /status shows the agent of the
current start "ready" (its log shows the schema holder initialised and no failed schema
refresh since that start) and the agent's /health answers 200. An agent that started "without
schema metadata" (the bundled driver 4.14 cannot parse a `vector<…>` column anywhere in the
cluster; the agent then captures nothing) fails `up` at once.

`Debezium(i)` is the agent of Cassandra node i (debezium_ring.py runs one per node of a ring):
its own state directory (offsets, relocation, config), cassandra.yaml, cdc_raw, contact point
127.0.0.i and ports 58000/58001 + 10 * (i - 1); it produces to every broker of the stack.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from string import Template

from . import cassandra_auth, tls
from .cassandra import CQL_PORT, LOCAL_DC, cassandra_yaml
from .core import CACHE, PORT_OFFSET, REPO, Component, StackError, log, run
from .kafka import bootstrap
from .topology import PORT_STEP, cassandra_nodes, loopback, member_dir

VERSION = "3.4.1.Final"
BUNDLED_CASSANDRA = "5.0.2"  # cassandra-all inside the jar-with-dependencies
ARTIFACT = "io.debezium:debezium-connector-cassandra-5"
HTTP_PORT = 58000 + PORT_OFFSET
AGENT_PORT = 58001 + PORT_OFFSET  # cdc-agent: /status, /readyz, /metrics
CDC_AGENT = REPO / ".venv" / "bin" / "cdc-agent"
JAVA_OPTS = "-Xms256m -Xmx512m -XX:ParallelGCThreads=1 -XX:ConcGCThreads=1"
TEMPLATES = REPO / "hack" / "debezium"
DEFAULTS = {"TOPIC_PREFIX": "casscdc", "SNAPSHOT_MODE": "never", "SCHEMAS_ENABLE": "true"}

# What cdc-agent's /status reports as the agent's phase (cdc_worker.agent.logscan), from these
# lines of the agent's log: "Initialized SchemaHolder." (ready), "proceeding without schema
# metadata" (blind: captures nothing), "Unexpected error while refreshing schema" (tables created
# from now on are not registered).
READY_PHASE, BLIND_PHASE = "ready", "blind"


class Debezium(Component):
    name = "debezium"
    requires = ("kafka", "cassandra")
    start_timeout = 90.0

    def __init__(self, index: int = 1) -> None:
        super().__init__()
        self.index = index
        self.state_dir = member_dir(self.name, index)
        self.proc = type(self.proc)(self.name, self.state_dir)
        self.http_port = HTTP_PORT + PORT_STEP * (index - 1)
        self.agent_port = AGENT_PORT + PORT_STEP * (index - 1)
        self.node = f"{loopback(index)}:{CQL_PORT}"
        self.dir = CACHE / f"debezium-cassandra-5-{VERSION}"
        self.jar = self.dir / f"debezium-connector-cassandra-5-{VERSION}-jar-with-dependencies.jar"
        self.offsets = self.state_dir / "offsets"
        self.relocation = self.state_dir / "relocation"
        self.properties = self.state_dir / "config.properties"
        self.driver_conf = self.state_dir / "application.conf"
        self.logback = self.state_dir / "logback.xml"
        # The properties file the running agent was started with (rendered or CDC_DEBEZIUM_CONFIG).
        self.active = self.state_dir / "active-config"
        override = os.environ.get("CDC_DEBEZIUM_CONFIG")
        if override and cassandra_nodes() > 1:
            raise StackError("CDC_DEBEZIUM_CONFIG names one node's properties: not with a ring")
        self.ports = (
            self._http_port(Path(override)) if override else self.http_port,
            self.agent_port,
        )

    def install(self) -> None:
        if not CDC_AGENT.exists():
            raise StackError(f"debezium: {CDC_AGENT} is missing; run `make install` first")
        if self.jar.exists():
            return
        tmp = self.dir.with_name(self.dir.name + ".partial")
        run(
            [
                "mvn",
                "-q",
                "-B",
                "dependency:copy",
                f"-Dartifact={ARTIFACT}:{VERSION}:jar:jar-with-dependencies",
                f"-DoutputDirectory={tmp}",
            ]
        )
        tmp.rename(self.dir)

    def version(self) -> str:
        return (
            f"Debezium Cassandra 5 connector {VERSION} (jar-with-dependencies, "
            f"bundles cassandra-all {BUNDLED_CASSANDRA})"
        )

    def render(self) -> Path:
        """Render application.conf and logback.xml; the properties file unless overridden."""
        for sub in (self.offsets, self.relocation):
            sub.mkdir(parents=True, exist_ok=True)
        self.driver_conf.write_text(
            Template((TEMPLATES / "application.conf.tmpl").read_text()).substitute(
                CONTACT_POINT=self.node, LOCAL_DC=LOCAL_DC
            )
        )
        self.logback.write_text((TEMPLATES / "logback.xml.tmpl").read_text())
        override = os.environ.get("CDC_DEBEZIUM_CONFIG")
        if override:
            path = Path(override).resolve()
            if not path.is_file():
                raise StackError(f"CDC_DEBEZIUM_CONFIG={override}: no such file")
            log(f"debezium: running {path} (CDC_DEBEZIUM_CONFIG) instead of the template")
            return path
        values = {
            key: os.environ.get(f"CDC_DEBEZIUM_{key}", default) for key, default in DEFAULTS.items()
        }
        values |= {
            "NODE_ID": f"node{self.index}",
            "CLUSTER_NAME": "cass-cdc-pg",
            "CASSANDRA_YAML": str(cassandra_yaml(self.index)),
            "DRIVER_CONFIG": str(self.driver_conf),
            "HTTP_PORT": str(self.http_port),
            "RELOCATION_DIR": str(self.relocation),
            "OFFSETS_DIR": str(self.offsets),
            "KAFKA_BOOTSTRAP": bootstrap(),
        }
        text = Template((TEMPLATES / "config.properties.tmpl").read_text()).substitute(values)
        self.properties.write_text(text)
        return self.properties

    def start(self) -> None:
        config = self.render()
        self.active.write_text(f"{config}\n")
        self.proc.start(
            [
                CDC_AGENT,
                "--config",
                config,
                "--jar",
                self.jar,
                "--java-opts",
                f"{JAVA_OPTS} -Dlogback.configurationFile=file://{self.logback}",
                "--workdir",
                self.state_dir,
                "--cassandra",
                self.node,
                # TLS to the node, verified against the stack CA (cdc-agent adds the driver's
                # ssl-engine-factory and the login from agent_env() to a runtime config).
                "--cassandra-ca",
                tls.CA_CRT,
                "--cdc-raw",
                member_dir("cassandra", self.index) / "cdc_raw",
                "--port",
                str(self.agent_port),
                "--table-poll",
                "1",
                "--health-interval",
                "2",
                "--stall-after",
                "30",
                "--backoff-max",
                "10",
            ],
            cwd=self.state_dir,
            env=self.agent_env(),
        )

    @staticmethod
    def agent_env() -> dict[str, str]:
        """The identities cdc-agent gives the agent, passwords as files, never in a property:
        the Kafka SCRAM user `agent` (when its properties ask for SASL, the secure profile) and
        the Cassandra role `cdc_agent` (always: the node requires a login)."""
        return {"KAFKA_USERNAME": "agent",
                "KAFKA_PASSWORD_FILE": str(tls.SECRETS_DIR / "kafka-agent.password"),
                "CASSANDRA_USERNAME": "cdc_agent",
                "CASSANDRA_PASSWORD_FILE": cassandra_auth.password_file("cdc_agent")}  # fmt: skip

    def up(self) -> str:
        try:
            return super().up()
        except StackError:
            self.proc.stop(self.stop_signal)
            raise

    def _active_config(self) -> Path:
        try:
            return Path(self.active.read_text().strip())
        except OSError:
            return self.properties

    @staticmethod
    def _http_port(config: Path) -> int:
        try:
            for line in config.read_text().splitlines():
                key, sep, value = line.partition("=")
                if sep and key.strip() == "http.port":
                    return int(value.strip())
        except (OSError, ValueError):
            pass
        return 8000  # the connector's default

    def agent_status(self) -> dict[str, object]:
        """cdc-agent's /status ({} when it does not answer)."""
        try:
            url = f"http://127.0.0.1:{self.agent_port}/status"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except (OSError, ValueError, urllib.error.URLError):
            return {}

    def healthy(self) -> bool:
        if not self.proc.alive():
            return False
        phase = self.agent_status().get("phase")
        if phase == BLIND_PHASE:
            raise StackError(
                f"debezium: the agent started without schema metadata and would capture nothing "
                f"(a vector<…> column anywhere in the cluster?); see {self.proc.log_file}"
            )
        if phase != READY_PHASE:
            return False
        port = self._http_port(self._active_config())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                return resp.status == 200  # type: ignore[no-any-return]
        except (OSError, urllib.error.URLError):
            return False

    def status(self) -> str:
        try:
            return super().status()
        except StackError:
            return "unhealthy"

    def env(self) -> dict[str, str]:
        text = ""
        if self.proc.alive():
            try:
                text = self._active_config().read_text()
            except OSError:
                text = ""
        props = {
            k.strip(): v.strip()
            for k, sep, v in (line.partition("=") for line in text.splitlines())
            if sep and not k.lstrip().startswith("#")
        }
        prefix = os.environ.get("CDC_DEBEZIUM_TOPIC_PREFIX", DEFAULTS["TOPIC_PREFIX"])
        return {
            "DEBEZIUM_TOPIC_PREFIX": props.get("topic.prefix", prefix),
            "DEBEZIUM_HTTP_PORT": props.get("http.port", str(self.ports[0])),
            # Node-local paths an operator-rendered config must use to run as this node's agent
            # (spec.debezium.config of a CdcPipeline; see docs/local-stack.md).
            "DEBEZIUM_CASSANDRA_YAML": str(cassandra_yaml(self.index)),
            "DEBEZIUM_DRIVER_CONFIG": str(self.driver_conf),
            "DEBEZIUM_STATE_DIR": str(self.state_dir),
            # The file cdc-agent watches: writing other properties into it restarts the agent.
            "DEBEZIUM_CONFIG": str(self._active_config()),
            "CDC_AGENT_URL": f"http://127.0.0.1:{self.agent_port}",
        }
