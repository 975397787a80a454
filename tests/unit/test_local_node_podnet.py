"""The local node's Pod IPs (hack/stackctl/nodeagent/podnet.py): one loopback address per Pod,
and a probe counts only when the Pod itself listens on its address and port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))

from stackctl.nodeagent.podnet import PodIPs, served_by_pod


def test_each_pod_gets_its_own_address_and_keeps_it() -> None:
    ips = PodIPs("127.10.0.0/16")
    a, b = ips.assign("uid-a"), ips.assign("uid-b")
    assert a != b
    assert ips.assign("uid-a") == a
    assert ips.assign("uid-c", previous="127.10.3.7") == "127.10.3.7"  # after an agent restart
    assert ips.assign("uid-d", previous=a) not in (a, "127.10.3.7")  # taken: not handed out twice
    assert ips.assign("uid-e", previous="127.0.0.1") != "127.0.0.1"  # outside the CIDR
    ips.release("uid-b")
    assert ips.assign("uid-f") != b  # a released address is not reused at once
    assert all(not ip.endswith((".0", ".1", ".255")) for ip in ips.by_uid.values())
    with pytest.raises(ValueError, match="loopback"):
        PodIPs("10.0.0.0/24")


def test_a_probe_counts_only_when_the_pod_itself_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.10.200.7", 0))
        s.listen()
        port = s.getsockname()[1]
        mine = [os.getpid()]
        assert served_by_pod("127.10.200.7", port, mine) == (True, "")
        assert served_by_pod("127.10.200.8", port, mine) == (True, "")  # nobody there: refused
    # Another process bound the wildcard address: it answers on every Pod IP, but is not the Pod.
    other = subprocess.Popen(
        [sys.executable, "-c",
         "import socket,sys,time\ns=socket.socket()\ns.bind(('0.0.0.0',0))\ns.listen()\n"
         "print(s.getsockname()[1], flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert other.stdout is not None
        port = int(other.stdout.readline())
        pod = subprocess.Popen(["sleep", "30"])  # a Pod's process, not an ancestor of `other`
        try:
            ok, why = served_by_pod("127.10.200.9", port, [pod.pid])
        finally:
            pod.kill()
            pod.wait()
        assert not ok
        assert "bind their Pod IP" in why
        assert served_by_pod("127.10.200.9", port, [other.pid]) == (True, "")
    finally:
        other.kill()
        other.wait()
