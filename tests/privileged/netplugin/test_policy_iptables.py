"""NetworkPolicy rules on a real kernel: pods-as-namespaces on a bridge in a node namespace.

Layout (all namespaces throwaway; nothing in the root namespace but the held safety routes)::

    node ns: cni0 10.244.1.1/24, bridge-nf-call-iptables=1, the KUBELAB-* chains
      ├─ hello  10.244.1.10  app=hello     TCP server on :8080 and :9090
      ├─ ok     10.244.1.20  access=true
      └─ other  10.244.1.21

The planner renders, ``IptablesDriver`` applies (``iptables-restore --noflush`` + the FORWARD
jump), and real TCP connects over the bridge are allowed or dropped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from netplugin.policy import plan
from netplugin.policy.driver import IptablesDriver, cleanup
from tests.helpers.netns import NetnsFactory, sh
from tests.helpers.wait import wait_for

SERVER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"hello"); c.close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
"""
CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(s.recv(16).decode())
except OSError as e:
    print("FAIL", e)
"""


class PolicyLab:
    def __init__(self, netns: NetnsFactory) -> None:
        self.node = netns("node")
        sh("ip", "link", "add", "cni0", "type", "bridge", netns=self.node)
        sh("ip", "addr", "add", "10.244.1.1/24", "dev", "cni0", netns=self.node)
        sh("ip", "link", "set", "cni0", "up", netns=self.node)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=self.node)
        sh("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", netns=self.node)
        self.pods: dict[str, str] = {}
        self.objs: list[dict[str, Any]] = []
        for i, (name, ip, labels) in enumerate(
            [
                ("hello", "10.244.1.10", {"app": "hello"}),
                ("ok", "10.244.1.20", {"access": "true"}),
                ("other", "10.244.1.21", {}),
            ]
        ):
            ns = netns(name)
            self.pods[name] = ns
            sh("ip", "link", "add", f"vp{i}", "type", "veth", "peer", "name", "eth0", "netns", ns, netns=self.node)
            sh("ip", "link", "set", f"vp{i}", "master", "cni0", "up", netns=self.node)
            sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", netns=ns)
            sh("ip", "link", "set", "eth0", "up", netns=ns)
            sh("ip", "route", "add", "default", "via", "10.244.1.1", netns=ns)
            self.objs.append(
                {
                    "metadata": {"namespace": "default", "name": name, "labels": labels},
                    "spec": {
                        "nodeName": "kl-node1",
                        "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}],
                    },
                    "status": {"podIP": ip, "phase": "Running"},
                }
            )
        self.driver = IptablesDriver(f"/run/netns/{self.node}")
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", self.pods["hello"], sys.executable, "-c", SERVER, "8080", "9090"]
        )

    def connect(self, src: str, port: int = 8080, timeout: float = 0.7, dst: str = "10.244.1.10") -> bool:
        ns = self.node if src == "node" else self.pods[src]
        out = sh(sys.executable, "-c", CLIENT, dst, str(port), str(timeout), netns=ns)
        return out.strip() == "hello"

    def apply(self, *policies: dict[str, Any]) -> None:
        ruleset = plan.render(list(policies), self.objs, [{"metadata": {"name": "default"}}], "kl-node1")
        self.driver.restore(ruleset.restore_text(stale=self.driver.owned_chains() - set(ruleset.chains)))
        self.driver.ensure_jumps()

    def close(self) -> None:
        self.server.kill()
        self.server.wait(timeout=5)


@pytest.fixture
def lab(netns: NetnsFactory) -> Iterator[PolicyLab]:
    lab = PolicyLab(netns)
    try:
        wait_for(lambda: lab.connect("ok", timeout=0.3), timeout=10, message="the test server to listen")
        yield lab
    finally:
        lab.close()  # the namespaces (and their tables) go with the netns fixture


DENY = {"metadata": {"namespace": "default", "name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
ALLOW = {
    "metadata": {"namespace": "default", "name": "allow-access"},
    "spec": {
        "podSelector": {"matchLabels": {"app": "hello"}},
        "ingress": [
            {
                "from": [{"podSelector": {"matchLabels": {"access": "true"}}}],
                "ports": [{"port": "http", "protocol": "TCP"}],
            }
        ],
    },
}


def test_policies_allow_and_drop_real_connections(lab: PolicyLab) -> None:
    assert lab.connect("other") and lab.connect("ok", 9090)  # no policy: open
    lab.apply(DENY, ALLOW)
    assert lab.connect("ok", 8080)  # allowed: label + named port
    assert not lab.connect("ok", 9090)  # port not allowed
    assert not lab.connect("other", 8080)  # no label
    assert lab.connect("node", 9090)  # the node itself (kubelet probes) always reaches its pods
    saved = sh("iptables-save", "-t", "filter", netns=lab.node)
    assert '-A FORWARD -m comment --comment "kubelab network policies" -j KUBELAB-FIREWALL' in saved
    assert "default/allow-access ingress[0]" in saved

    lab.apply(DENY)  # the allow policy deleted: its chain goes too
    assert not lab.connect("ok", 8080)
    assert not any("allow-access" in line for line in sh("iptables-save", "-t", "filter", netns=lab.node).splitlines())

    lab.apply()  # every policy deleted
    assert lab.connect("other", 8080)
    lab.apply(DENY)
    assert cleanup(lab.driver)  # what the agent does at stop
    assert lab.connect("other", 8080)
    saved = sh("iptables-save", "-t", "filter", netns=lab.node)
    assert "KUBELAB" not in saved


def test_reapply_is_idempotent_and_keeps_one_jump(lab: PolicyLab) -> None:
    for _ in range(3):
        lab.apply(DENY, ALLOW)
    rules = sh("iptables", "-S", "FORWARD", netns=lab.node).splitlines()
    assert sum("KUBELAB-FIREWALL" in r for r in rules) == 1
    assert lab.connect("ok") and not lab.connect("other")


def test_egress_policy_covers_the_node_itself_through_input(lab: PolicyLab) -> None:
    node_server = subprocess.Popen(["ip", "netns", "exec", lab.node, sys.executable, "-c", SERVER, "9091"])
    try:
        wait_for(lambda: lab.connect("other", 9091, 0.3, dst="10.244.1.1"), timeout=10, message="the node's server")
        deny_egress = {
            "metadata": {"namespace": "default", "name": "no-egress"},
            "spec": {
                "podSelector": {"matchExpressions": [{"key": "access", "operator": "DoesNotExist"}]},
                "policyTypes": ["Egress"],
            },
        }
        lab.apply(deny_egress)
        assert not lab.connect("other", 9091, dst="10.244.1.1")  # INPUT: a pod to its own node
        assert not lab.connect("other", 8080, dst="10.244.1.10")  # FORWARD: a pod to a pod
        assert lab.connect("ok", 9091, dst="10.244.1.1")  # not selected
        assert "-j KUBELAB-FIREWALL" in sh("iptables", "-S", "INPUT", netns=lab.node)
    finally:
        node_server.kill()
        node_server.wait(timeout=5)
