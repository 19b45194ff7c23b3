"""The network agent's /debug/network (netplugin/debug.py) over a fake command runner.

Addresses: node kl-node1 at 192.168.56.11, pod CIDR 10.244.1.0/24, bridge cni0 10.244.1.1, one pod
(netns default-client-abc, nsid 3) at 10.244.1.5 behind vethaaaa0001; a second veth whose peer is in
an unnamed namespace is not a pod we can name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from controlplane.api import errors
from netplugin import debug

LINKS = [
    {"ifindex": 1, "ifname": "lo", "address": "00:00:00:00:00:00"},
    {"ifindex": 2, "ifname": "eth0", "address": "52:54:00:00:00:11"},
    {"ifindex": 3, "ifname": "cni0", "address": "0a:58:0a:f4:01:01", "operstate": "UP",
     "linkinfo": {"info_kind": "bridge"}},
    {"ifindex": 7, "ifname": "vethaaaa0001", "address": "aa:aa:aa:00:00:01", "master": "cni0",
     "link_index": 2, "link_netnsid": 3, "linkinfo": {"info_kind": "veth"}},
    {"ifindex": 8, "ifname": "vethbbbb0002", "address": "bb:bb:bb:00:00:02", "master": "cni0",
     "link_index": 2, "link_netnsid": 9, "linkinfo": {"info_kind": "veth"}},
]  # fmt: skip
ADDRS = [
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.168.56.11"}]},
    {"ifname": "cni0", "addr_info": [{"family": "inet", "local": "10.244.1.1"}]},
]
POD_ADDRS = [
    {"ifindex": 1, "ifname": "lo", "address": "00:00:00:00:00:00"},
    {"ifindex": 2, "ifname": "eth0", "address": "0a:58:0a:f4:01:05",
     "addr_info": [{"family": "inet", "local": "10.244.1.5"}, {"family": "inet6", "local": "fe80::1"}]},
]  # fmt: skip
SAVE = """*nat
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
COMMIT
*filter
:KUBELAB-FIREWALL - [0:0]
:KUBELAB-POD-IN-ABC - [0:0]
-A FORWARD -j KUBELAB-FIREWALL
-A KUBELAB-FIREWALL -d 10.244.1.5/32 -j KUBELAB-POD-IN-ABC
COMMIT
"""


class FakeNode:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.save = SAVE

    def run(self, argv: Sequence[str]) -> tuple[int, str, str]:
        a = tuple(argv)
        self.calls.append(a)
        answers = {
            ("ip", "-d", "-j", "link", "show"): json.dumps(LINKS),
            ("ip", "-j", "-4", "addr", "show"): json.dumps(ADDRS),
            ("ip", "-j", "route", "show"): '[{"dst":"10.244.2.0/24","gateway":"192.168.56.12","dev":"eth0"}]',
            ("ip", "-j", "netns", "list"): '[{"name":"kl-node1"},{"name":"default-client-abc","id":3}]',
            ("ip", "-n", "default-client-abc", "-j", "addr", "show"): json.dumps(POD_ADDRS),
            ("iptables-save",): self.save,
            ("iptables-legacy-save",): "",
        }
        if a[:4] == ("ip", "-j", "route", "get"):
            if a[4] == "10.250.0.1":
                return 2, "", "RTNETLINK answers: Network is unreachable\n"
            return 0, f'[{{"dst":"{a[4]}","gateway":"192.168.56.12","dev":"eth0","prefsrc":"192.168.56.11"}}]', ""
        if a in answers:
            return 0, answers[a], ""
        return 1, "", f"unexpected command {a}"


def network(node: FakeNode) -> debug.NodeNetwork:
    return debug.NodeNetwork("kl-node1", lambda: ["10.244.1.0/24"], node.run)


def test_the_state_names_each_pods_veth_ip_and_mac_and_the_nodes_routes_and_tables() -> None:
    node = FakeNode()
    state = network(node).state()
    assert state["node"] == "kl-node1" and state["podCIDRs"] == ["10.244.1.0/24"]
    assert state["addresses"] == {"eth0": "192.168.56.11", "cni0": "10.244.1.1"}
    assert state["routes"] == [{"dst": "10.244.2.0/24", "gateway": "192.168.56.12", "dev": "eth0"}]
    assert state["bridges"] == [{"ifname": "cni0", "address": "0a:58:0a:f4:01:01", "operstate": "UP"}]
    assert state["pods"] == [
        {
            "netns": "default-client-abc",
            "veth": "vethaaaa0001",
            "vethMAC": "aa:aa:aa:00:00:01",
            "bridge": "cni0",
            "ifname": "eth0",
            "mac": "0a:58:0a:f4:01:05",
            "ip": "10.244.1.5",
        }
    ]
    assert state["iptables"] == {"command": "iptables-save", "text": SAVE}
    assert state["policyChains"] == {
        "KUBELAB-FIREWALL": ["-A KUBELAB-FIREWALL -d 10.244.1.5/32 -j KUBELAB-POD-IN-ABC"],
        "KUBELAB-POD-IN-ABC": [],
    }
    # Read-only: nothing but listings and lookups ran.
    assert all(c[0] in ("ip", "iptables-save", "iptables-legacy-save") for c in node.calls)
    assert not any(w in c for c in node.calls for w in ("add", "del", "replace", "-A", "-D", "-F"))


def test_the_legacy_tables_are_used_when_they_hold_the_proxys_chains() -> None:
    node = FakeNode()
    node.save = "*filter\nCOMMIT\n"
    original = node.run

    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        if tuple(argv) == ("iptables-legacy-save",):
            return 0, SAVE, ""
        return original(argv)

    state = debug.NodeNetwork("kl-node1", list, run).state()
    assert state["iptables"] == {"command": "iptables-legacy-save", "text": SAVE}


def test_a_route_lookup_is_the_kernels_answer_or_its_error() -> None:
    net = network(FakeNode())
    got = net.route({"to": ["10.244.2.7"], "from": ["10.244.1.5"], "iif": ["cni0"]})
    assert got["query"] == "ip route get 10.244.2.7 from 10.244.1.5 iif cni0"
    assert got["routes"][0]["gateway"] == "192.168.56.12"
    got = net.route({"to": ["10.250.0.1"]})
    assert got == {"query": "ip route get 10.250.0.1", "error": "RTNETLINK answers: Network is unreachable"}


@pytest.mark.parametrize(
    "query",
    [{}, {"to": ["example.com"]}, {"to": ["10.0.0.1"], "from": ["x; rm -rf /"]}, {"to": ["10.0.0.1"], "iif": ["a b"]},
     {"to": ["10.0.0.1"], "iif": ["averyveryverylongname"]}],
)  # fmt: skip
def test_bad_route_arguments_are_400_and_run_nothing(query: dict[str, list[str]]) -> None:
    node = FakeNode()
    with pytest.raises(errors.BadRequest):
        network(node).route(query)
    assert node.calls == []


def test_the_debug_routes_answer_json_and_404_elsewhere() -> None:
    route = debug.debug_route(network(FakeNode()))
    code, ctype, body = route("/debug/network", {})
    assert code == 200 and ctype == "application/json" and json.loads(body)["node"] == "kl-node1"
    code, _, body = route("/debug/network/route", {"to": ["10.244.2.7"]})
    assert json.loads(body)["query"] == "ip route get 10.244.2.7"
    with pytest.raises(errors.NotFound):
        route("/debug/other", {})
