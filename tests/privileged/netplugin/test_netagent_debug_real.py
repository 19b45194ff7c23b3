"""The network agent's /debug/network against a real node namespace (netplugin/debug.py).

Node namespace "node" holds bridge cni0 (10.244.1.1/24) and the host end of a veth whose other end
is eth0 (10.244.1.5/24) in the pod namespace "pod"; the node has eth1 (a veth with its peer beside
it) on 192.168.56.11/24 and a route 10.244.2.0/24 via 192.168.56.12. All in throwaway namespaces.
"""

from __future__ import annotations

from netplugin.debug import NodeNetwork, subprocess_runner
from tests.helpers.netns import NetnsFactory, sh


def test_the_pod_behind_its_veth_routes_and_lookups_from_a_real_namespace(netns: NetnsFactory) -> None:
    node, pod = netns("node"), netns("pod")
    sh("ip", "link", "add", "cni0", "type", "bridge", netns=node)
    sh("ip", "addr", "add", "10.244.1.1/24", "dev", "cni0", netns=node)
    sh("ip", "link", "set", "cni0", "up", netns=node)
    sh("ip", "link", "add", "vethtest01", "type", "veth", "peer", "name", "eth0", "netns", pod, netns=node)
    sh("ip", "link", "set", "vethtest01", "master", "cni0", "up", netns=node)
    sh("ip", "addr", "add", "10.244.1.5/24", "dev", "eth0", netns=pod)
    sh("ip", "link", "set", "eth0", "up", netns=pod)
    sh("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p", netns=node)  # no dummy module here
    sh("ip", "addr", "add", "192.168.56.11/24", "dev", "eth1", netns=node)
    sh("ip", "link", "set", "eth1", "up", netns=node)
    sh("ip", "link", "set", "eth1p", "up", netns=node)
    sh("ip", "route", "add", "10.244.2.0/24", "via", "192.168.56.12", netns=node)
    mac = sh("cat", "/sys/class/net/eth0/address", netns=pod).strip()

    net = NodeNetwork("kl-node1", lambda: ["10.244.1.0/24"], subprocess_runner(f"/var/run/netns/{node}"))
    state = net.state()
    assert state["addresses"]["cni0"] == "10.244.1.1" and state["addresses"]["eth1"] == "192.168.56.11"
    assert [b["ifname"] for b in state["bridges"]] == ["cni0"]
    assert state["pods"] == [
        {"netns": pod, "veth": "vethtest01", "vethMAC": state["pods"][0]["vethMAC"], "bridge": "cni0",
         "ifname": "eth0", "mac": mac, "ip": "10.244.1.5"}
    ]  # fmt: skip
    assert any(r.get("dst") == "10.244.2.0/24" and r.get("gateway") == "192.168.56.12" for r in state["routes"])
    got = net.route({"to": ["10.244.2.7"]})
    assert got["query"] == "ip route get 10.244.2.7"
    assert got["routes"][0]["gateway"] == "192.168.56.12" and got["routes"][0]["dev"] == "eth1"
    assert "error" in net.route({"to": ["10.250.0.1"]})  # no route there: the kernel's answer, not a crash
