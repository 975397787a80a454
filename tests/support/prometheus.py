"""A real Prometheus server evaluating the chart's alerts against real targets, for tests.

Why: promtool's unit tests (tests/integration/alerts/rules_test.yaml) prove the expressions on
series we write by hand; only a server scraping the real worker/operator/agent shows that the
metrics they really export, with the labels a scrape really adds, make each alert fire during
a fault and resolve after it. The server is Prometheus itself (`hack/stack tool prometheus`,
built from the Go module proxy on first use, a few minutes cold), nothing is faked.

API (also used by bench/chaos_bench.py; keep it small):

    from tests.support.prometheus import Prometheus, chart_rules

    with Prometheus({"cdc-worker": ["127.0.0.1:8081", ("127.0.0.1:8082", {"pod": "w-2"})]},
                    labels={"namespace": "shop"}, time_scale=1 / 60) as prom:
        prom.wait_firing("CdcWorkerWriteFailing", {"pipeline": "orders"}, timeout=60)
        prom.wait_resolved("CdcWorkerWriteFailing", {"pipeline": "orders"}, timeout=60)
        prom.alerts()            # /api/v1/alerts: active alerts, pending and firing
        prom.query("up")         # /api/v1/query: the result vector
        prom.set_targets({...})  # replace the targets (file-based discovery, no restart)

- targets: job name -> list of "host:port" or ("host:port", {extra target labels}). Every
  target gets what a ServiceMonitor/PodMonitor scrape adds: `job`, `instance`, `labels` (give
  `namespace`, the pipeline's), and `pod` (default "<job>-<index>" unless given per target).
  Jobs named in `honor_labels` (default: "cdc-operator") keep the target's own labels on a
  clash, as the chart's operator ServiceMonitor (honorLabels: true) does.
- Scrape and rule evaluation every `interval` seconds (default 1).
- rules: the rule groups (default `chart_rules()`: the chart's PrometheusRule rendered by helm,
  as tests/integration/test_alert_rules.py does). Every rule is kept, with its expression,
  labels and annotations as shipped, except for the time scaling below.
- time_scale (default 1, nothing scaled): multiplies every duration of the rules so a test
  sees in seconds what production sees in minutes. Exactly these are scaled:
    * each alert's `for:` and `keep_firing_for:`;
    * each range selector `[d]` and subquery `[d:s]` (both parts), floored at four evaluation
      intervals so rate()/increase() always see at least two samples;
    * each `offset d`;
    * the number compared with an age computed from `time()` (`time() - x > N`, N seconds:
      CdcConnectorOffline's 1800), floored at one second.
  Thresholds on counts, ratios and latencies are never scaled (e.g. CdcReplicationLagHigh
  still needs 100000 events of lag, CdcEndToEndLatencyHigh a p95 over 30 s).
  `Prometheus.scaled_rules` holds the groups as loaded, so a failure can show what ran.

Fields: `url`, `port`, `workdir` (config, rules, targets, data and `prometheus.log`).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

import yaml

from tests.support.worker_proc import free_port

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "hack" / "stack"
CHART = REPO / "charts" / "cass-cdc-pg"

Target = str | tuple[str, Mapping[str, str]]
Targets = Mapping[str, Sequence[Target]]


def tool(name: str) -> Path:
    """A binary `hack/stack tool` builds (prometheus, promtool, helm), built first if needed."""
    res = subprocess.run(
        [str(STACK), "tool", name], capture_output=True, text=True, check=False, timeout=1700
    )
    if res.returncode != 0:
        raise RuntimeError(f"hack/stack tool {name} failed:\n{res.stderr}")
    return Path(res.stdout.strip())


def chart_rules() -> list[dict[str, Any]]:
    """The rule groups of the chart's PrometheusRule, as helm renders them."""
    res = subprocess.run(
        [str(tool("helm")), "template", "rel", str(CHART), "-n", "cdc-system",
         "--set", "prometheusRule.enabled=true",
         "--show-only", "templates/prometheusrule.yaml"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"helm template failed:\n{res.stderr}")
    (doc,) = [d for d in yaml.safe_load_all(res.stdout) if d]
    return list(doc["spec"]["groups"])


# ---- time scaling ----------------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = r"(?:\d+(?:ms|s|m|h|d|w|y))+"
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def seconds(duration: str) -> float:
    """A Prometheus duration ("1h30m", "15m", "500ms") in seconds."""
    parts = _PART.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def _fmt(secs: float) -> str:
    return f"{max(1, round(secs * 1000))}ms"


def scale_expr(expr: str, factor: float, min_range: float) -> str:
    """`expr` with its range windows, offsets and time()-ages scaled (see the module doc)."""

    def window(m: re.Match[str]) -> str:
        rng = _fmt(max(min_range, seconds(m.group(1)) * factor))
        step = f":{_fmt(seconds(m.group(2)) * factor)}" if m.group(2) else (
            ":" if m.group(0).endswith(":]") else "")  # fmt: skip
        return f"[{rng}{step}]"

    out = re.sub(rf"\[({_DURATION})(?::({_DURATION})?)?\]", window, expr)
    out = re.sub(rf"\boffset\s+({_DURATION})\b",
                 lambda m: f"offset {_fmt(seconds(m.group(1)) * factor)}", out)  # fmt: skip
    # An age: `time() - <selector or aggregation>) > N` (N seconds).
    return re.sub(
        r"(time\(\)\s*-[^><]*?>\s*)(\d+(?:\.\d+)?)\b",
        lambda m: m.group(1) + f"{max(1.0, float(m.group(2)) * factor):g}",
        out,
    )


def scale_rules(groups: Sequence[Mapping[str, Any]], factor: float, interval: float) -> list[Any]:
    out: list[dict[str, Any]] = []
    for g in groups:
        rules = []
        for r in g["rules"]:
            r = dict(r)
            if factor != 1:
                r["expr"] = scale_expr(str(r["expr"]), factor, 4 * interval)
                for key in ("for", "keep_firing_for"):
                    if key in r:
                        r[key] = _fmt(seconds(str(r[key])) * factor)
            rules.append(r)
        out.append({**g, "rules": rules})
    return out


# ---- the server ------------------------------------------------------------------------------


class Prometheus:
    """One Prometheus process: free port, its own data dir, lifecycle API on (see module doc)."""

    def __init__(
        self,
        targets: Targets,
        *,
        labels: Mapping[str, str] | None = None,
        honor_labels: Collection[str] = ("cdc-operator",),
        rules: Sequence[Mapping[str, Any]] | None = None,
        time_scale: float = 1.0,
        interval: float = 1.0,
        workdir: Path | None = None,
    ) -> None:
        self.labels = dict(labels or {})
        self.honor_labels = set(honor_labels)
        self.interval = interval
        self.time_scale = time_scale
        self.workdir = workdir or Path(mkdtemp(prefix="prometheus-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scaled_rules = scale_rules(chart_rules() if rules is None else rules,
                                        time_scale, interval)  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._jobs = sorted(targets)
        self._write_config()
        self.set_targets(targets)

    # -- configuration --

    def _write_config(self) -> None:
        every = _fmt(self.interval)
        (self.workdir / "rules.yaml").write_text(
            yaml.safe_dump({"groups": self.scaled_rules}, sort_keys=False, allow_unicode=True)
        )
        config = {
            "global": {"scrape_interval": every, "scrape_timeout": every,
                       "evaluation_interval": every},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {"job_name": job, "honor_labels": job in self.honor_labels,
                 "file_sd_configs": [{"files": [f"targets-{job}.json"],
                                      "refresh_interval": every}]}
                for job in self._jobs
            ],
        }  # fmt: skip
        (self.workdir / "prometheus.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def set_targets(self, targets: Targets) -> None:
        """Replace the scrape targets of the jobs given (the set of jobs is fixed at start)."""
        unknown = set(targets) - set(self._jobs)
        if unknown:
            raise ValueError(f"jobs {sorted(unknown)} were not given at start: {self._jobs}")
        for job, entries in targets.items():
            groups = []
            for i, entry in enumerate(entries):
                addr, extra = (entry, {}) if isinstance(entry, str) else entry
                groups.append(
                    {"targets": [addr], "labels": {"pod": f"{job}-{i}", **self.labels, **extra}}
                )
            path = self.workdir / f"targets-{job}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(groups))
            tmp.replace(path)  # atomic: Prometheus never reads half a file

    # -- lifecycle --

    def start(self, timeout: float = 60) -> Prometheus:
        binary = tool("prometheus")
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [str(binary), "--config.file=prometheus.yaml",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=1d", "--log.level=warn"],
            cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:  # noqa: S310
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout}s:\n{self.logs()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    # -- API --

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - our own http URL
            doc = json.loads(r.read())
        if doc.get("status") != "success":
            raise RuntimeError(f"{path}: {doc}")
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar/string, as Prometheus returns it) of `expr` now."""
        data = self._get("/api/v1/query", query=expr)
        return list(data["result"]) if data["resultType"] == "vector" else [data]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (state `pending` or `firing`), as /api/v1/alerts returns them."""
        return list(self._get("/api/v1/alerts")["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with their health and last error (/api/v1/targets)."""
        return list(self._get("/api/v1/targets", state="active")["activeTargets"])

    def matching(
        self, name: str, labels: Mapping[str, str] | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Active alerts called `name` whose labels include `labels` (and in `state`)."""
        want = {"alertname": name, **(labels or {})}
        return [
            a for a in self.alerts()
            if want.items() <= a["labels"].items() and (state is None or a["state"] == state)
        ]  # fmt: skip

    def wait_firing(
        self, name: str, labels: Mapping[str, str] | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        """The first firing alert `name` with `labels`; AssertionError after `timeout`."""
        found: list[dict[str, Any]] = []

        def firing() -> bool:
            found[:] = self.matching(name, labels, "firing")
            return bool(found)

        self._wait(firing, timeout, f"{name}{labels or ''} firing")
        return found[0]

    def wait_resolved(
        self, name: str, labels: Mapping[str, str] | None = None, timeout: float = 60
    ) -> None:
        """Until no alert `name` with `labels` is active (neither firing nor pending)."""
        self._wait(lambda: not self.matching(name, labels), timeout,
                   f"{name}{labels or ''} resolved")  # fmt: skip

    def _wait(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if check():
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.describe()}")

    def describe(self) -> str:
        """Active alerts and targets' health, for an assertion message."""
        try:
            alerts = [(a["labels"].get("alertname"), a["state"],
                       {k: v for k, v in a["labels"].items() if k != "alertname"})
                      for a in self.alerts()]  # fmt: skip
            targets = [(t["labels"].get("job"), t["scrapeUrl"], t["health"], t["lastError"])
                       for t in self.targets()]  # fmt: skip
        except (OSError, urllib.error.URLError, RuntimeError) as e:
            return f"prometheus unreachable ({e}); log:\n{self.logs()}"
        return f"active alerts: {alerts}\ntargets: {targets}"
