"""The local node's agent: a small kubelet that runs Pods from the local image store with buildah.

Started by `hack/stack up node` (hack/stackctl/node.py) as one PID-managed process:

    python3 -m stackctl.nodeagent --state <dir> --node local-node --api-port … --ca … --cert …

It registers the Node (Ready, allocatable cpu/memory/pods, InternalIP 127.0.0.1), renews its
Lease in kube-node-lease every 10 s, and every second lists the Pods the scheduler bound to it.
For each Pod a thread materialises its volumes (ConfigMap, Secret, projected service-account
token from a TokenRequest bound to the Pod, downward API, emptyDir, hostPath), resolves the
env (value, valueFrom secretKeyRef/configMapKeyRef/fieldRef, envFrom), and runs every container
as `buildah run --isolation chroot` in a fresh working container made from the image
(`buildah from --pull-never`): host network, the volumes bind-mounted at their paths. It
probes readiness/liveness/startup (httpGet, tcpSocket, exec), restarts per restartPolicy with
the kubelet's back-off, and writes the Pod's status. A deleted Pod's processes get SIGTERM, then
SIGKILL after the grace period, and the Pod object is then removed. Every process is recorded by
PID and start time (<state>/pods/<uid>/<container>.pid), so a restarted agent stops what an
earlier one left behind, by PID only.

It authenticates as the node itself (client certificate CN=system:node:<name>, O=system:nodes),
so the Node authorizer and NodeRestriction apply to it as to a real kubelet. Standard library
only, like the rest of hack/stack. See docs/local-node.md.

Modules, one concern each: `base` (tunables, log, errors), `api` (the API client), `runtime`
(buildah, a container's processes), `envs` (env/argv/user), `volumes`, `lifecycle` (start,
exit, restart), `probes`, `podnet` (Pod IPs and who listens on them), `status` (Pod status and
Events), `pod` (one Pod's thread), `agent` (the node), `kubeletapi` (`kubectl logs`),
`__main__` (the command line).
"""

from __future__ import annotations

from .agent import cleanup_orphans

__all__ = ["cleanup_orphans"]
