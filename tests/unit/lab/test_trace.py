"""lab/trace.py's pure parts: the explanation over a walk, routes and the lab's objects; input checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.trace import (
    Arrival,
    Facts,
    Lab,
    Route,
    Spot,
    Target,
    TraceError,
    collect,
    explain,
    in_lab,
    parse_address,
    parse_conntrack,
    render,
)
from proxy.rules import ProxyOptions, service_chain
from proxy.rules import render as render_rules
from proxy.trace import Tracer

OPTS = ProxyOptions(node_name="kl-node1", cluster_cidr="10.244.0.0/16", node_ips=("192.168.56.11",))
ADDRS = {"eth0": "192.168.56.11", "cni0": "10.244.1.1", "lo": "127.0.0.1"}
VIP = "10.96.0.2"
SVC_CHAIN = service_chain("KUBE-SVC-", "default/hello:http", "tcp")
CLIENT = Spot("pod", "default/client", "10.244.1.5", "kl-node1", "default_client_1234abcd")
LOCAL = Spot("pod", "default/hello-a", "10.244.1.2", "kl-node1", "default_hello-a_aaaaaaaa")
REMOTE = Spot("pod", "default/hello-b", "10.244.2.2", "kl-node2", "default_hello-b_bbbbbbbb")


def objects(endpoints: list[Spot], node_port: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}
    if node_port:
        port["nodePort"] = node_port
    spec = {"clusterIP": VIP, "ports": [port], "type": "NodePort" if node_port else "ClusterIP"}
    svc = {"metadata": {"namespace": "default", "name": "hello"}, "spec": spec}
    sl = {
        "metadata": {"namespace": "default", "name": "hello-1", "labels": {"kubernetes.io/service-name": "hello"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [e.ip], "nodeName": e.node, "conditions": {"ready": True}} for e in endpoints],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    return [svc], [sl] if endpoints else []


def facts(src: Spot, endpoints: list[Spot], dst: str = VIP, port: int = 80, node_port: int = 0) -> Facts:
    """What the driver would collect on kl-node1 (routes as ``ip -j route get`` would answer)."""
    svcs, slices = objects(endpoints, node_port)
    tracer = Tracer.of(render_rules(svcs, slices, options=OPTS), tuple(ADDRS.values()))
    src_ip = "192.168.56.1" if src.kind == "host" else src.ip
    w = tracer.walk(src_ip, dst, port)
    label = f"service default/hello:80 (ClusterIP {VIP})" if dst == VIP else f"address {dst}"
    f = Facts(src, Target(dst, port, "tcp", label), "kl-node1", w, addrs=ADDRS)
    iif = "cni0" if src.kind == "pod" else "eth0"
    for b in w.branches:
        ep = b.packet.dst
        q = f"ip route get {ep} from {src_ip} iif {iif}"
        owner = next((e for e in [*endpoints, LOCAL, REMOTE] if e.ip == ep), None)
        if ep.startswith("10.244.1."):
            f.routes[ep] = Route.parse("kl-node1", q, json.dumps([{"dst": ep, "dev": "cni0"}]))
            f.arrivals[ep] = Arrival("kl-node1", owner, None, "veth1111")
        elif ep.startswith("10.244.2."):
            f.routes[ep] = Route.parse(
                "kl-node1", q, json.dumps([{"dst": ep, "gateway": "192.168.56.12", "dev": "eth0"}])
            )
            there = Route.parse("kl-node2", f"ip route get {ep} iif eth0", json.dumps([{"dst": ep, "dev": "cni0"}]))
            f.arrivals[ep] = Arrival("kl-node2", owner, there, "veth2222")
        else:
            f.routes[ep] = Route.parse("kl-node1", q, json.dumps([{"dst": ep, "dev": "eth0"}]))
            f.arrivals[ep] = Arrival("kl-node1", None)
    return f


def text(f: Facts) -> str:
    return render(explain(f))


def test_clusterip_to_a_local_and_a_remote_endpoint() -> None:
    out = text(facts(CLIENT, [LOCAL, REMOTE]))
    assert "1. Start" in out and "pod default/client, IP 10.244.1.5, netns default_client_1234abcd" in out
    assert "nat PREROUTING" in out and f"-j {SVC_CHAIN}" in out and '"default/hello:http cluster IP"' in out
    assert "picks one of 2 endpoints at random" in out
    assert "--probability 0.5000000000; chance 50.0%): DNAT to 10.244.1.2:8080 (pod default/hello-a on kl-node1)" in out
    assert "(the rest; chance 50.0%): DNAT to 10.244.2.2:8080 (pod default/hello-b on kl-node2)" in out
    # no masquerade from a pod to other pods
    assert "10.244.2.2:8080: not marked for masquerade" in out and "SNAT by" not in out
    # the local endpoint over cni0, the remote one via the other node, then its cni0 and veth
    assert "the same node's bridge cni0 → pod default/hello-a on kl-node1" in out
    assert "(netns default_hello-a_aaaaaaaa via veth1111)" in out
    assert "via 192.168.56.12 dev eth0" in out and "over the node network (eth0) to kl-node2" in out
    assert "then on kl-node2: `ip route get 10.244.2.2 iif eth0` → dev cni0" in out
    assert "routed back to kl-node1" in out and "un-DNAT (source back to 10.96.0.2:80)" in out


def test_no_endpoints_is_a_reject_and_nothing_leaves() -> None:
    out = text(facts(CLIENT, []))
    assert "filter KUBE-SERVICES" in out and "-j REJECT" in out and "has no endpoints" in out
    assert "connection refused" in out
    assert "no reply" in out and "DNAT to" not in out


def test_hairpin_is_explained_and_snat_goes_to_the_bridge_address() -> None:
    out = text(facts(LOCAL, [LOCAL, REMOTE]))
    assert "10.244.1.2:8080: SNAT by KUBE-POSTROUTING MASQUERADE" in out
    assert "source 10.244.1.2 → 10.244.1.1 (kl-node1's address on cni0)" in out
    assert "hairpin: the endpoint 10.244.1.2 is the source itself" in out
    assert "10.244.2.2:8080: not marked for masquerade" in out


def test_from_the_host_every_endpoint_is_masqueraded_to_the_egress_address() -> None:
    out = text(facts(Spot("host", "host", "192.168.56.1"), [LOCAL, REMOTE]))
    assert "the host (root namespace" in out
    assert "source 192.168.56.1 → 192.168.56.11 (kl-node1's address on eth0)" in out  # to the remote pod
    assert "source 192.168.56.1 → 10.244.1.1 (kl-node1's address on cni0)" in out  # to the local pod
    assert "is not in the cluster CIDR 10.244.0.0/16" in out
    assert "un-SNAT and un-DNAT" in out


def test_nodeport_names_the_nodeports_chain_and_why_it_is_masqueraded() -> None:
    out = text(facts(Spot("host", "host", "192.168.56.1"), [LOCAL, REMOTE], dst="192.168.56.11", port=30080,
                     node_port=30080))  # fmt: skip
    assert "nat KUBE-NODEPORTS" in out and "--dport 30080" in out
    assert "NodePort/external traffic" in out
    assert "source back to 192.168.56.11:30080" in out


def test_client_ip_affinity_is_noted() -> None:
    svcs, slices = objects([LOCAL, REMOTE])
    svcs[0]["spec"]["sessionAffinity"] = "ClientIP"
    tracer = Tracer.of(render_rules(svcs, slices, options=OPTS), tuple(ADDRS.values()))
    f = Facts(CLIENT, Target(VIP, 80, "tcp", "service"), "kl-node1", tracer.walk(CLIENT.ip, VIP, 80))
    out = text(f)
    assert f"sessionAffinity ClientIP on {SVC_CHAIN}" in out and "10800 s" in out


def test_not_a_service_address() -> None:
    out = text(facts(CLIENT, [LOCAL], dst="10.96.5.5"))
    assert "no KUBE-SERVICES rule matches 10.96.5.5:80/tcp" in out
    assert "nobody in the lab holds this address" in out


def test_probe_lines_are_shown_last() -> None:
    f = facts(CLIENT, [LOCAL])
    f.probe = ["probed endpoint: 10.244.1.2:8080"]
    steps = explain(f)
    assert steps[-1].title.startswith("Probe") and steps[-1].lines == ("probed endpoint: 10.244.1.2:8080",)


@pytest.mark.parametrize("bad", ["8.8.8.8:53", "127.0.0.1:80", "192.168.1.1:80", "10.245.0.1:80"])
def test_addresses_outside_the_lab_are_refused(bad: str) -> None:
    with pytest.raises(TraceError, match="not a lab address"):
        parse_address(bad)


@pytest.mark.parametrize("bad", ["10.96.0.2", "10.96.0.2:", "10.96.0.2:http", "10.96.0.2:70000", "host:80"])
def test_malformed_addresses_are_refused(bad: str) -> None:
    with pytest.raises(TraceError):
        parse_address(bad)


def test_lab_addresses_are_accepted() -> None:
    assert parse_address("10.96.0.2:80") == ("10.96.0.2", 80)
    assert parse_address("192.168.56.12:30080") == ("192.168.56.12", 30080)
    assert in_lab("10.244.2.3") and not in_lab("10.0.0.1") and not in_lab("nonsense")


def test_conntrack_entry_names_the_chosen_endpoint() -> None:
    out = (
        "tcp      6 119 TIME_WAIT src=10.244.1.5 dst=10.96.0.2 sport=41000 dport=80 src=10.244.2.2 "
        "dst=10.244.1.5 sport=8080 dport=41000 [ASSURED] mark=0 use=1\n"
        "tcp      6 119 TIME_WAIT src=10.244.1.5 dst=10.96.0.2 sport=42000 dport=80 src=10.244.1.2 "
        "dst=10.244.1.5 sport=8080 dport=42000 [ASSURED] mark=0 use=1\n"
    )
    found = parse_conntrack(out, 42000)
    assert found is not None and found[0] == "10.244.1.2:8080"
    assert parse_conntrack(out, 43000) is None


def test_route_parse_and_text() -> None:
    answer = [{"dst": "10.244.2.2", "gateway": "192.168.56.12", "dev": "eth0", "prefsrc": "192.168.56.11"}]
    r = Route.parse("kl-node1", "q", json.dumps(answer))
    assert r.text() == "via 192.168.56.12 dev eth0 src 192.168.56.11"
    assert Route.parse("kl-node1", "q", "RTNETLINK answers: Network is unreachable").text().startswith("error")


# --- the driver's collection, against a fake lab ---------------------------------------------------



def save_text() -> str:
    """The proxy's rules for LOCAL and REMOTE as ``iptables-save`` prints them (a node's tables)."""
    svcs, slices = objects([LOCAL, REMOTE])
    tables = Tracer.of(render_rules(svcs, slices, options=OPTS)).tables
    lines = []
    for table, chains in tables.items():
        lines += [f"*{table}", *(f":{c} - [0:0]" for c in chains)]
        lines += [f"-A {c} {r}" for c, rules in chains.items() for r in rules]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"

class FakeLab(Lab):
    """The running lab as data: kl-node1/kl-node2, the hello pods, routes answered from a table."""

    def __init__(self, routes: dict[tuple[str, str], dict[str, str]]) -> None:
        self._node_ips = {"192.168.56.10": "kl-cp", "192.168.56.11": "kl-node1", "192.168.56.12": "kl-node2"}
        self._host, self.sources = (("kl0",), "192.168.56.1"), []
        self.routes = routes  # (netns, destination) → ip -j route get's answer
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def get(self, path: str) -> dict[str, Any]:
        assert path == "/api/v1/pods"
        items = []
        for s in (CLIENT, LOCAL, REMOTE):
            ns, name = s.name.split("/")
            items.append({"metadata": {"namespace": ns, "name": name, "uid": s.netns[-8:]},
                          "spec": {"nodeName": s.node}, "status": {"podIP": s.ip}})  # fmt: skip
        return {"items": items}

    def route(self, netns: str, *args: str) -> Route:
        self.asked.append((netns, args))
        answer = self.routes.get((netns, args[0]))
        q = " ".join(["ip", "route", "get", *args])
        return Route.parse(netns, q, json.dumps([answer]) if answer else "RTNETLINK answers: No route to host")

    def addrs(self, netns: str) -> dict[str, str]:
        return dict(ADDRS) if netns == "kl-node1" else {"eth0": "192.168.56.12", "cni0": "10.244.2.1"}

    def save(self, node: str) -> str:
        return save_text()

    def veth_of(self, pod_netns: str, node: str) -> str:
        return "veth-" + pod_netns[-8:]


NODE1_ROUTES = {
    ("kl-node1", "10.244.1.2"): {"dev": "cni0"},
    ("kl-node1", "10.244.2.2"): {"gateway": "192.168.56.12", "dev": "eth0"},
    ("kl-node2", "10.244.2.2"): {"dev": "cni0"},
    ("kl-node1", VIP): {"dev": "eth0", "prefsrc": "192.168.56.11"},
    ("", VIP): {"gateway": "192.168.56.11", "dev": "kl0", "prefsrc": "192.168.56.1"},
}
HELLO = Target(VIP, 80, "tcp", "service default/hello:80")


def test_collect_from_a_pod_asks_its_node_with_iif_cni0_and_the_other_node_for_its_pod() -> None:
    lab = FakeLab(NODE1_ROUTES)
    f = collect(lab, CLIENT, HELLO)
    assert f.node == "kl-node1" and f.walk.hook == "PREROUTING" and sorted(f.routes) == ["10.244.1.2", "10.244.2.2"]
    assert ("kl-node1", ("10.244.2.2", "from", "10.244.1.5", "iif", "cni0")) in lab.asked
    # the remote pod's node is asked as the packet arrives there: from the pod, on eth0
    assert ("kl-node2", ("10.244.2.2", "from", "10.244.1.5", "iif", "eth0")) in lab.asked
    assert f.arrivals["10.244.2.2"].node == "kl-node2" and f.arrivals["10.244.2.2"].owner == REMOTE
    assert f.arrivals["10.244.2.2"].veth == "veth-bbbbbbbb"
    assert f.arrivals["10.244.1.2"].node == "kl-node1" and f.arrivals["10.244.1.2"].route is None


def test_collect_from_the_host_follows_the_hosts_route_and_sees_the_snat_address_on_the_far_node() -> None:
    lab = FakeLab(NODE1_ROUTES)
    f = collect(lab, Spot("host", "host", "192.168.56.1"), HELLO)
    assert f.node == "kl-node1" and f.host_route is not None and f.host_route.gateway == "192.168.56.11"
    assert ("kl-node1", ("10.244.2.2", "from", "192.168.56.1", "iif", "eth0")) in lab.asked
    # masqueraded on kl-node1: kl-node2 sees kl-node1's eth0 address as the source
    assert ("kl-node2", ("10.244.2.2", "from", "192.168.56.11", "iif", "eth0")) in lab.asked


def test_collect_from_a_node_uses_its_own_source_address_and_output() -> None:
    lab = FakeLab(NODE1_ROUTES)
    f = collect(lab, Spot("node", "kl-node1", "192.168.56.11", "kl-node1", "kl-node1"), HELLO)
    assert f.walk.hook == "OUTPUT" and f.walk.packet.src == "192.168.56.11"
    assert ("kl-node1", ("10.244.2.2",)) in lab.asked


def test_collect_refuses_a_host_route_that_does_not_enter_the_lab() -> None:
    routes = dict(NODE1_ROUTES)
    routes[("", VIP)] = {"dev": "wlan0", "gateway": "192.168.1.1"}
    with pytest.raises(TraceError, match="does not lead into the lab"):
        collect(FakeLab(routes), Spot("host", "host", "192.168.56.1"), HELLO)


def test_no_lab_up_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lab import cli, state, tracefetch

    monkeypatch.setattr(state, "read_plan", lambda: None)
    monkeypatch.setattr(tracefetch, "vagrant_lab_present", lambda: False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert cli.main(["trace", "--to", "svc/hello:80"]) == 1
    assert "no lab is up" in capsys.readouterr().err
    # a non-lab address is refused before even looking for a lab
    assert cli.main(["trace", "--to", "1.1.1.1:80"]) == 1
    assert "not a lab address" in capsys.readouterr().err
