"""A local Kubernetes control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

The binaries are built from the Go module proxy by hack/k8s/build.sh (which also
pins the versions). Everything runs on loopback as four PID-managed processes;
the certificates (one CA, serving certs, client certs, the service-account key
pair) are generated once with the openssl CLI under <state>/k8s/pki, and the
kubeconfigs are rewritten at every start (they carry the port, which
CDC_STACK_PORT_OFFSET moves).

Health is checked with real round trips: etcd `GET /health`, the apiserver
`GET /readyz` with the admin client certificate, the controller-manager and the
scheduler `GET /healthz` on their secure ports (verified against the local CA).
`up` only reports success once the controller-manager has created the
`default` ServiceAccount, i.e. once controllers really act on the API.

No node agent runs here, so Pods stay Pending; that is a separate component.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .core import (
    PORT_OFFSET,
    REPO,
    Component,
    Proc,
    StackError,
    log,
    run,
    tcp_open,
    wait_until,
)

BUILD = REPO / "hack" / "k8s" / "build.sh"

ETCD_PORT = 52379 + PORT_OFFSET
ETCD_PEER_PORT = 52380 + PORT_OFFSET
APISERVER_PORT = 56443 + PORT_OFFSET
CONTROLLER_MANAGER_PORT = 50257 + PORT_OFFSET
SCHEDULER_PORT = 50259 + PORT_OFFSET

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: first address of the range
ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER = "cass-cdc-pg-local"
CERT_DAYS = 3650

# `*` is every controller that is on by default. None of them needs a cloud: the cloud loops
# (service load balancers, routes, cloud node lifecycle) left kube-controller-manager for the
# cloud-controller-manager, and node-ipam-controller only allocates Pod CIDRs with
# --allocate-node-cidrs, which stays off (there is no cluster network here). The ones off by
# default (bootstrap-signer-controller and token-cleaner-controller for kubeadm join tokens,
# selinux-warning-controller) serve nothing this stack uses.
CONTROLLERS = "*"


@dataclass(frozen=True)
class Pins:
    k8s: str
    etcd: str
    helm: str
    k8s_bin: Path
    etcd_bin: Path
    helm_bin: Path


def pins() -> Pins:
    """Versions and binary directories, from build.sh (the single source of truth)."""
    out = run(["bash", BUILD, "--print"]).stdout
    kv = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return Pins(
        kv["K8S_VERSION"],
        kv["ETCD_VERSION"],
        kv["HELM_VERSION"],
        Path(kv["K8S_BIN"]),
        Path(kv["ETCD_BIN"]),
        Path(kv["HELM_BIN"]),
    )


class K8s(Component):
    name = "k8s"
    start_timeout = 120.0
    ports = (ETCD_PORT, ETCD_PEER_PORT, APISERVER_PORT, CONTROLLER_MANAGER_PORT, SCHEDULER_PORT)

    def __init__(self) -> None:
        super().__init__()
        self.pki = self.state_dir / "pki"
        self.etcd_data = self.state_dir / "etcd-data"
        self.kubeconfig = self.state_dir / "admin.kubeconfig"
        self.procs = {
            n: Proc(n, self.state_dir)
            for n in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
        }
        # `hack/stack status` and `logs` look at .proc: the apiserver is the face of the cluster.
        self.proc = self.procs["kube-apiserver"]
        self._pins: Pins | None = None

    # ---- versions and binaries -------------------------------------------------------------

    @property
    def pins(self) -> Pins:
        if self._pins is None:
            self._pins = pins()
        return self._pins

    @staticmethod
    def needs_build() -> bool:
        p = pins()
        want = [p.k8s_bin / "kube-apiserver", p.k8s_bin / "kubectl", p.etcd_bin / "etcd",
                p.helm_bin / "helm"]  # fmt: skip
        return not all(w.exists() for w in want)

    def install(self) -> None:
        # Progress (a cold build takes ~10 minutes on 2 cores) goes straight to the terminal.
        res = subprocess.run(
            ["bash", str(BUILD), "--quiet"], stdout=subprocess.PIPE, text=True, check=False
        )
        if res.returncode != 0:
            raise StackError(f"{BUILD} failed (exit {res.returncode}); its output is above")

    def version(self) -> str:
        p = self.pins
        return f"Kubernetes {p.k8s}, etcd {p.etcd}, helm {p.helm}"

    def _bin(self, name: str) -> str:
        p = self.pins
        d = {"etcd": p.etcd_bin, "etcdctl": p.etcd_bin, "helm": p.helm_bin}.get(name, p.k8s_bin)
        return str(d / name)

    # ---- certificates and kubeconfigs ------------------------------------------------------

    def _openssl(self, *args: str | Path) -> None:
        run(["openssl", *args])

    def _key(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                      "-out", tmp)  # fmt: skip
        tmp.chmod(0o600)
        tmp.replace(path)

    def _ca(self, key: Path, crt: Path, subject: str) -> None:
        self._key(key)
        self._openssl(
            "req", "-x509", "-new", "-key", key, "-subj", subject,
            "-days", str(CERT_DAYS), "-sha256",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign",
            "-out", crt.with_suffix(".tmp"),
        )  # fmt: skip
        crt.with_suffix(".tmp").replace(crt)

    def _cert(
        self, name: str, subject: str, *, sans: list[str] | None = None, ca: str = "ca"
    ) -> None:
        """<name>.key/.crt signed by a local CA; with SANs it is also a serving certificate."""
        crt, key = self.pki / f"{name}.crt", self.pki / f"{name}.key"
        if crt.exists() and key.exists():
            return
        self._key(key)
        ext = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={'serverAuth,clientAuth' if sans else 'clientAuth'}",
        ]
        if sans:
            ext.append("subjectAltName=" + ",".join(sans))
        with tempfile.TemporaryDirectory() as tmp:
            csr, extfile = Path(tmp) / "req.csr", Path(tmp) / "ext.cnf"
            extfile.write_text("\n".join(ext) + "\n")
            self._openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
            self._openssl(
                "x509", "-req", "-in", csr, "-CA", self.pki / f"{ca}.crt",
                "-CAkey", self.pki / f"{ca}.key", "-set_serial", f"0x{secrets.token_hex(16)}",
                "-days", str(CERT_DAYS), "-sha256", "-extfile", extfile,
                "-out", crt.with_suffix(".tmp"),
            )  # fmt: skip
        crt.with_suffix(".tmp").replace(crt)

    def _ensure_pki(self) -> None:
        """Generate whatever is missing; existing material is kept (tokens stay valid)."""
        self.pki.mkdir(parents=True, exist_ok=True)
        self.pki.chmod(0o700)
        ca_crt, ca_key = self.pki / "ca.crt", self.pki / "ca.key"
        if not (ca_crt.exists() and ca_key.exists()):
            log("k8s: generating the cluster CA and certificates")
            self._ca(ca_key, ca_crt, f"/CN={CLUSTER}-ca")
            for stale in self.pki.glob("*.crt"):  # everything else was signed by the old CA
                if stale.name not in {"ca.crt", "front-proxy-ca.crt", "front-proxy-client.crt"}:
                    stale.unlink()
        fp_crt, fp_key = self.pki / "front-proxy-ca.crt", self.pki / "front-proxy-ca.key"
        if not (fp_crt.exists() and fp_key.exists()):
            # A CA of its own, as kubeadm does: only certificates it signs may assert users
            # through X-Remote-User headers (the aggregation layer's front proxy).
            self._ca(fp_key, fp_crt, f"/CN={CLUSTER}-front-proxy-ca")
            (self.pki / "front-proxy-client.crt").unlink(missing_ok=True)
        loopback = ["DNS:localhost", "IP:127.0.0.1"]
        self._cert(
            "apiserver",
            "/CN=kube-apiserver",
            sans=[
                *loopback,
                f"IP:{SERVICE_IP}",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ],
        )
        # For a node agent serving the kubelet API: the apiserver presents this to it.
        self._cert("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
        self._cert("controller-manager-serving", "/CN=kube-controller-manager", sans=loopback)
        self._cert("scheduler-serving", "/CN=kube-scheduler", sans=loopback)
        self._cert("front-proxy-client", "/CN=front-proxy-client", ca="front-proxy-ca")
        self._cert("admin", "/O=system:masters/CN=cass-cdc-pg-admin")
        self._cert("controller-manager", "/CN=system:kube-controller-manager")
        self._cert("scheduler", "/CN=system:kube-scheduler")
        sa_key, sa_pub = self.pki / "sa.key", self.pki / "sa.pub"
        if not (sa_key.exists() and sa_pub.exists()):
            self._key(sa_key)
            self._openssl("pkey", "-in", sa_key, "-pubout", "-out", sa_pub)

    def _kubeconfig(self, path: Path, user: str, cert: str) -> None:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {CLUSTER}\n  cluster:\n"
            f"    server: https://127.0.0.1:{APISERVER_PORT}\n"
            f"    certificate-authority-data: {b64('ca.crt')}\n"
            f"users:\n- name: {user}\n  user:\n"
            f"    client-certificate-data: {b64(cert + '.crt')}\n"
            f"    client-key-data: {b64(cert + '.key')}\n"
            f"contexts:\n- name: {CLUSTER}\n  context:\n    cluster: {CLUSTER}\n    user: {user}\n"
            f"current-context: {CLUSTER}\n"
        )
        path.chmod(0o600)

    def _write_config(self) -> None:
        self._ensure_pki()
        self._kubeconfig(self.kubeconfig, "admin", "admin")
        self._kubeconfig(
            self.state_dir / "controller-manager.kubeconfig",
            "system:kube-controller-manager",
            "controller-manager",
        )
        self._kubeconfig(
            self.state_dir / "scheduler.kubeconfig", "system:kube-scheduler", "scheduler"
        )

    # ---- the four processes ----------------------------------------------------------------

    def _cmd(self, name: str) -> list[str]:
        pki, sd = self.pki, self.state_dir
        if name == "etcd":
            peer = f"http://127.0.0.1:{ETCD_PEER_PORT}"
            client = f"http://127.0.0.1:{ETCD_PORT}"
            return [
                self._bin("etcd"),
                "--name=local",
                f"--data-dir={self.etcd_data}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--initial-cluster-state=new",
                "--auto-compaction-retention=1h",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ]
        if name == "kube-apiserver":
            return [
                self._bin(name),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # Endpoints may not name a loopback address, and nothing here routes the
                # `kubernetes` Service's ClusterIP anyway: in-cluster clients are pointed at
                # 127.0.0.1 directly (KUBERNETES_SERVICE_HOST/PORT) by whatever runs them.
                "--endpoint-reconciler-type=none",
                f"--secure-port={APISERVER_PORT}",
                f"--etcd-servers=http://127.0.0.1:{ETCD_PORT}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                # The aggregation layer's front proxy. It also fills the requestheader CA in
                # kube-system/extension-apiserver-authentication, which the controller-manager
                # and the scheduler read for their own (delegated) authentication.
                f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-uid-headers=X-Remote-Uid",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
                "--authorization-mode=Node,RBAC",
                # On top of the default set (NamespaceLifecycle, LimitRanger, ServiceAccount,
                # ResourceQuota, the admission webhooks, ValidatingAdmissionPolicy, ...).
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
            ]
        if name == "kube-controller-manager":
            kc = sd / "controller-manager.kubeconfig"
            return [
                self._bin(name),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={CONTROLLER_MANAGER_PORT}",
                f"--tls-cert-file={pki / 'controller-manager-serving.crt'}",
                f"--tls-private-key-file={pki / 'controller-manager-serving.key'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--use-service-account-credentials=true",
                f"--controllers={CONTROLLERS}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allocate-node-cidrs=false",
                # One instance: no lease to wait out when it is restarted.
                "--leader-elect=false",
                "--profiling=false",
            ]
        if name == "kube-scheduler":
            kc = sd / "scheduler.kubeconfig"
            return [
                self._bin(name),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={SCHEDULER_PORT}",
                f"--tls-cert-file={pki / 'scheduler-serving.crt'}",
                f"--tls-private-key-file={pki / 'scheduler-serving.key'}",
                "--leader-elect=false",
                "--profiling=false",
            ]
        raise KeyError(name)

    def _ports(self, name: str) -> tuple[int, ...]:
        return {
            "etcd": (ETCD_PORT, ETCD_PEER_PORT),
            "kube-apiserver": (APISERVER_PORT,),
            "kube-controller-manager": (CONTROLLER_MANAGER_PORT,),
            "kube-scheduler": (SCHEDULER_PORT,),
        }[name]

    # ---- health ----------------------------------------------------------------------------

    def _ssl(self, client: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        if client:
            ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _get(self, url: str, *, client: bool = False, timeout: float = 3.0) -> tuple[int, bytes]:
        ctx = self._ssl(client) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:  # noqa: S310
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (OSError, ssl.SSLError):
            return 0, b""

    def _healthy(self, name: str) -> bool:
        try:
            if name == "etcd":
                status, body = self._get(f"http://127.0.0.1:{ETCD_PORT}/health")
                return status == 200 and json.loads(body).get("health") == "true"
            url = {
                "kube-apiserver": f"https://127.0.0.1:{APISERVER_PORT}/readyz",
                "kube-controller-manager": f"https://127.0.0.1:{CONTROLLER_MANAGER_PORT}/healthz",
                "kube-scheduler": f"https://127.0.0.1:{SCHEDULER_PORT}/healthz",
            }[name]
            status, body = self._get(url, client=name == "kube-apiserver")
            return status == 200 and body.strip() == b"ok"
        except (ValueError, OSError):
            return False

    def healthy(self) -> bool:
        return all(p.alive() and self._healthy(n) for n, p in self.procs.items())

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._write_config()
        for name in self.procs:
            self._start_one(name)

    def _check_ports(self, name: str) -> None:
        busy = [p for p in self._ports(name) if tcp_open(p)]
        if busy:
            raise StackError(
                f"k8s: port(s) {busy} for {name} already in use by a process this stack did "
                f"not start (state {self.state_dir}); stop it or run `hack/stack down` from its "
                "checkout"
            )

    def _start_one(self, name: str) -> None:
        proc = self.procs[name]
        self._check_ports(name)
        proc.start(self._cmd(name), cwd=self.state_dir)
        ok = wait_until(lambda: self._healthy(name) or not proc.alive(), self.start_timeout, 0.5)
        if not ok or not self._healthy(name):
            why = "exited" if not proc.alive() else f"not healthy after {self.start_timeout:.0f}s"
            tail = proc.tail()
            proc.stop()
            raise StackError(f"k8s: {name} {why}; last lines of {proc.log_file}:\n{tail}")

    def up(self) -> str:
        self.install()
        if all(p.alive() for p in self.procs.values()) and wait_until(self.healthy, 5):
            self.after_start()
            return "running"
        for name, proc in self.procs.items():
            if not proc.alive():
                self._check_ports(name)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        started = []
        # In dependency order; a live and healthy process is kept, so restarting a dead scheduler
        # does not disturb the apiserver (or the operator talking to it).
        for name, proc in self.procs.items():
            if proc.alive():
                if wait_until(partial(self._healthy, name), 5):
                    continue
                log(f"k8s: {name} running but not healthy, restarting")
                proc.stop()
            self._start_one(name)
            started.append(name)
        self.after_start()
        return "started" if len(started) == len(self.procs) else f"started {', '.join(started)}"

    def after_start(self) -> None:
        # The controller-manager answers /healthz before its controllers have synced; the
        # `default` ServiceAccount appearing proves they act on the API (Pods need it too).
        url = (
            f"https://127.0.0.1:{APISERVER_PORT}/api/v1/namespaces/default/serviceaccounts/default"
        )
        if not wait_until(lambda: self._get(url, client=True)[0] == 200, 60, 0.5):
            raise StackError(
                "k8s: the controller-manager did not create the default ServiceAccount within 60s; "
                f"see {self.procs['kube-controller-manager'].log_file}"
            )

    def down(self) -> bool:
        stopped = False
        for proc in reversed(list(self.procs.values())):
            stopped = proc.stop() or stopped
        return stopped

    def status(self) -> str:
        alive = [p.alive() for p in self.procs.values()]
        if not any(alive):
            return "stopped"
        return "healthy" if all(alive) and self.healthy() else "unhealthy"

    def env(self) -> dict[str, str]:
        with contextlib.suppress(StackError, KeyError, OSError):
            p = self.pins
            return {
                "KUBECONFIG": str(self.kubeconfig),
                # cli.py prints PATH so that $PATH expands in the caller's shell.
                "PATH": f"{p.k8s_bin}{os.pathsep}{p.helm_bin}{os.pathsep}$PATH",
            }
        return {"KUBECONFIG": str(self.kubeconfig)}


__all__ = ["K8s", "pins"]
