"""Real traffic through kubelab-bridge and the node agent's routes (no NAT).

Topology (all namespaces made by the test; nothing leaves them):
- one-bridge case: host namespace with cni0 = 10.244.1.1/24, pods 10.244.1.2 and 10.244.1.3;
- two-node case: "node" namespaces n1 (192.168.56.11) and n2 (192.168.56.12) joined by a veth
  pair (the node network), each running the plugin with its own pod CIDR (10.244.1.0/24,
  10.244.2.0/24) and the agent's RouteReconciler (pyroute2 driver) programming host-gw routes
  from Node objects. A tiny TCP server in the receiving pod answers with the peer address it
  sees, which must be the sender's pod IP.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.api.models import Node
from netplugin.agent import RTPROT_KUBELAB, PyrouteDriver, RouteReconciler, VxlanDriver
from tests.helpers.netns import sh
from tests.helpers.wait import wait_for
from tests.privileged.netplugin.conftest import CniEnv

SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(8)
while True:
    c, peer = s.accept()
    c.sendall((peer[0] + "\\n").encode())
    c.close()
"""
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], 8080), timeout=2)
print(s.recv(100).decode().strip())
"""


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait(timeout=5)


def start_server(servers: list[subprocess.Popen[bytes]], netns_path: str) -> None:
    servers.append(subprocess.Popen(["ip", "netns", "exec", Path(netns_path).name, sys.executable, "-c", SERVER]))


def peer_seen_by_server(client_ns_path: str, server_ip: str) -> str:
    """Connect from the client namespace; return the address the server saw (polls until up)."""

    def attempt() -> str:
        return sh(sys.executable, "-c", CLIENT, server_ip, netns=Path(client_ns_path).name, timeout=10).strip()

    return str(wait_for(attempt, timeout=10, message=f"TCP to {server_ip}:8080"))


def test_two_pods_on_one_bridge_reach_each_other(cni: CniEnv, servers: list[subprocess.Popen[bytes]]) -> None:
    a, b = cni.pod("a"), cni.pod("b")
    ra = cni.run("ADD", cni.conf(), netns=a, cid="a")
    rb = cni.run("ADD", cni.conf(), netns=b, cid="b")
    assert ra and rb
    ip_a = ra["ips"][0]["address"].split("/")[0]
    ip_b = rb["ips"][0]["address"].split("/")[0]
    sh("busybox", "ping", "-c", "1", "-W", "2", ip_b, netns=Path(a).name)  # ICMP too
    start_server(servers, b)
    assert peer_seen_by_server(a, ip_b) == ip_a


@pytest.mark.parametrize("hairpin", [True, False])
def test_pod_reaches_itself_through_a_service_vip_only_with_hairpin(
    cni: CniEnv, servers: list[subprocess.Popen[bytes]], hairpin: bool
) -> None:
    """kube-proxy's shape in miniature: VIP 10.96.0.5:80 DNAT to the pod, masquerade when the
    pod is its own client. The reply must leave the bridge port it came in by: hairpin."""
    a = cni.pod("a")
    ra = cni.run("ADD", cni.conf(hairpinMode=hairpin), netns=a, cid="a")
    assert ra
    ip_a = ra["ips"][0]["address"].split("/")[0]
    cni.sh(
        "iptables",
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-d",
        "10.96.0.5",
        "-p",
        "tcp",
        "--dport",
        "8080",
        "-j",
        "DNAT",
        "--to-destination",
        f"{ip_a}:8080",
    )
    cni.sh("iptables", "-t", "nat", "-A", "POSTROUTING", "-s", ip_a, "-d", ip_a, "-j", "MASQUERADE")
    start_server(servers, a)
    peer_seen_by_server(a, ip_a)  # the server is up
    if hairpin:
        assert peer_seen_by_server(a, "10.96.0.5") == "10.244.1.1"  # masqueraded to the bridge address
    else:
        with pytest.raises(AssertionError):
            sh(sys.executable, "-c", CLIENT, "10.96.0.5", netns=Path(a).name, timeout=10)


def node_obj(name: str, cidr: str, ip: str) -> Node:
    return Node.decode(
        {
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
        }
    )


@pytest.mark.parametrize("backend", ["host-gw", "vxlan"])
def test_pod_to_pod_across_nodes_without_nat(cni: CniEnv, servers: list[subprocess.Popen[bytes]], backend: str) -> None:
    driver_class = VxlanDriver if backend == "vxlan" else PyrouteDriver
    n1, n2 = cni.make_ns("n1"), cni.make_ns("n2")
    sh("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth2", netns=n1)
    sh("ip", "link", "set", "eth2", "netns", n2, netns=n1)
    for ns, dev, ip in ((n1, "eth1", "192.168.56.11"), (n2, "eth2", "192.168.56.12")):
        sh("ip", "addr", "add", f"{ip}/24", "dev", dev, netns=ns)
        sh("ip", "link", "set", dev, "up", netns=ns)
    nodes = [
        node_obj("kl-node1", "10.244.1.0/24", "192.168.56.11"),
        node_obj("kl-node2", "10.244.2.0/24", "192.168.56.12"),
    ]
    pods = {}
    for i, ns in ((1, n1), (2, n2)):
        pod = cni.pod(f"p{i}")
        conf = cni.conf(
            ipam={
                "type": "kubelab-ipam",
                "dataDir": str(cni.tmp / f"ipam{i}"),
                "ranges": [[{"subnet": f"10.244.{i}.0/24"}]],
            }
        )
        cni.wrapper = ["ip", "netns", "exec", ns]
        res = cni.run("ADD", conf, netns=pod, cid=f"p{i}")
        assert res is not None
        pods[i] = (pod, res["ips"][0]["address"].split("/")[0])
        drv = driver_class(f"/var/run/netns/{ns}")
        try:
            RouteReconciler(drv, f"kl-node{i}").sync(nodes)
        finally:
            drv.close()
    if backend == "vxlan":
        assert "10.244.2.0/24 via 10.244.2.0 dev klvxlan proto 145 onlink" in sh("ip", "route", netns=n1)
        assert "0a:58:0a:f4:02:00 dst 192.168.56.12" in sh("bridge", "fdb", "show", "dev", "klvxlan", netns=n1)
    else:
        assert "10.244.2.0/24 via 192.168.56.12 dev eth1 proto 145" in sh("ip", "route", netns=n1)
    assert sh("cat", "/proc/sys/net/ipv4/ip_forward", netns=n2).strip() == "1"
    assert sh("cat", "/proc/sys/net/bridge/bridge-nf-call-iptables", netns=n2).strip() == "1"
    (pod1, ip1), (pod2, ip2) = pods[1], pods[2]
    start_server(servers, pod2)
    assert peer_seen_by_server(pod1, ip2) == ip1  # the receiver sees the sender's pod IP: no NAT
    # node2 leaves: node1's agent removes exactly its own route
    drv = driver_class(f"/var/run/netns/{n1}")
    try:
        RouteReconciler(drv, "kl-node1").sync(nodes[:1])
        assert drv.owned() == {}
    finally:
        drv.close()
    routes = sh("ip", "route", netns=n1)
    assert f"proto {RTPROT_KUBELAB}" not in routes and "192.168.56.0/24 dev eth1" in routes
