"""proxy/trace.py: the chain walk over rules rendered by our own renderer (proxy/rules.py).

Addresses are the lab's (DESIGN.md §3): node kl-node1 192.168.56.11 with cni0 10.244.1.1, pods
10.244.N.x on worker N, service VIPs 10.96.0.x, the host 192.168.56.1.
"""

from __future__ import annotations

from typing import Any

import pytest

from proxy.rules import ProxyOptions, endpoint_chain, render, service_chain
from proxy.trace import Tracer, Walk, parse_save

NODE = "kl-node1"
NODE_IPS = ("192.168.56.11", "10.244.1.1")
OPTS = ProxyOptions(node_name=NODE, cluster_cidr="10.244.0.0/16", node_ips=("192.168.56.11",))
VIP = "10.96.0.2"
SPN = "default/hello:http"


def service(name: str = "hello", ip: str = VIP, node_port: int = 0, **spec: Any) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "http", "port": 80, "targetPort": 8080, "protocol": spec.pop("protocol", "TCP")}
    if node_port:
        port["nodePort"] = node_port
        spec["type"] = "NodePort"
    return {
        "kind": "Service",
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": ip, "ports": [port], **spec},
    }


def slice_of(name: str, ips: list[tuple[str, str]], proto: str = "TCP") -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": True}} for ip, node in ips],
        "ports": [{"name": "http", "port": 8080, "protocol": proto}],
    }


THREE = [("10.244.1.2", "kl-node1"), ("10.244.1.3", "kl-node1"), ("10.244.2.2", "kl-node2")]


def walk(
    src: str, dst: str = VIP, port: int = 80, proto: str = "tcp", eps: list[tuple[str, str]] = THREE, **kw: Any
) -> Walk:
    rs = render([service(**kw)], [slice_of("hello", eps, proto.upper())] if eps else [], options=OPTS)
    return Tracer.of(rs, NODE_IPS).walk(src, dst, port, proto)


def test_clusterip_from_a_pod_walks_prerouting_to_every_endpoint_with_its_chance() -> None:
    w = walk("10.244.1.5")
    assert w.hook == "PREROUTING"
    assert sorted(w.endpoints) == ["10.244.1.2:8080", "10.244.1.3:8080", "10.244.2.2:8080"]
    svc = service_chain("KUBE-SVC-", SPN, "tcp")
    for b in w.branches:
        assert b.verdict == "DNAT"
        chains = [h.chain for h in b.nat]
        # PREROUTING → KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-… (DNAT)
        assert chains[:3] == ["PREROUTING", "KUBE-SERVICES", svc]
        sep = endpoint_chain(SPN, "tcp", b.endpoint)
        assert b.nat[-1].chain == sep and b.nat[-1].target == "DNAT"
        assert b.nat[1].comment == f"{SPN} cluster IP"
        assert b.chance == pytest.approx(1 / 3)
        assert not b.masquerade and b.mark_reasons == ()  # from inside the cluster CIDR
    # the probabilities are the rules' own: 1/3 for the first, 1/2 for the second, none for the last
    probs = {b.endpoint: [h.probability for h in b.nat if h.chain == svc] for b in w.branches}
    assert probs["10.244.1.2:8080"] == [pytest.approx(1 / 3)]
    assert probs["10.244.1.3:8080"] == [pytest.approx(1 / 2)]
    assert probs["10.244.2.2:8080"] == [None]


def test_local_and_remote_endpoints_are_both_branches() -> None:
    w = walk("10.244.1.5", eps=[("10.244.1.2", "kl-node1"), ("10.244.2.2", "kl-node2")])
    assert {b.endpoint: b.chance for b in w.branches} == {"10.244.1.2:8080": 0.5, "10.244.2.2:8080": 0.5}
    assert all(not b.delivered_locally for b in w.branches)


def test_no_endpoints_is_rejected_by_the_filter_table() -> None:
    w = walk("10.244.1.5", eps=[])
    (b,) = w.branches
    assert b.verdict == "REJECT" and b.endpoint == "" and not b.masquerade
    assert b.filter[-1].chain == "KUBE-SERVICES" and b.filter[-1].table == "filter"
    assert b.filter[-1].comment == f"{SPN} has no endpoints"
    assert b.post == ()  # nothing reaches POSTROUTING


def test_hairpin_is_masqueraded_only_on_the_branch_back_to_the_source() -> None:
    w = walk("10.244.1.2")
    by = {b.endpoint: b for b in w.branches}
    hair = by["10.244.1.2:8080"]
    assert hair.masquerade
    (reason,) = hair.mark_reasons
    assert reason.chain == endpoint_chain(SPN, "tcp", "10.244.1.2:8080") and "-s" in reason.args()
    assert hair.snat_rule is not None and hair.snat_rule.chain == "KUBE-POSTROUTING"
    assert not by["10.244.1.3:8080"].masquerade and not by["10.244.2.2:8080"].masquerade


def test_from_the_host_is_masqueraded_because_it_is_off_cluster() -> None:
    w = walk("192.168.56.1")
    assert w.hook == "PREROUTING"
    for b in w.branches:
        assert b.masquerade
        (reason,) = b.mark_reasons
        assert reason.chain == service_chain("KUBE-SVC-", SPN, "tcp")
        assert "10.244.0.0/16" in reason.args() and "!" in reason.args()


def test_from_the_node_itself_starts_in_output() -> None:
    w = walk("192.168.56.11")
    assert w.hook == "OUTPUT"
    assert w.branches[0].nat[0].chain == "OUTPUT"
    assert all(b.masquerade for b in w.branches)  # the node's address is not a pod address


def test_nodeport_goes_through_kube_nodeports_and_the_ext_chain() -> None:
    w = walk("192.168.56.1", dst="192.168.56.11", port=30080, node_port=30080)
    ext = service_chain("KUBE-EXT-", SPN, "tcp")
    assert sorted(w.endpoints) == ["10.244.1.2:8080", "10.244.1.3:8080", "10.244.2.2:8080"]
    for b in w.branches:
        chains = [h.chain for h in b.nat]
        assert chains[:4] == ["PREROUTING", "KUBE-SERVICES", "KUBE-NODEPORTS", ext]
        assert b.masquerade and [h.chain for h in b.mark_reasons] == [ext]
    # another node's address is not this node's NodePort
    assert walk("192.168.56.1", dst="192.168.56.12", port=30080, node_port=30080).endpoints == ()


def test_client_ip_affinity_is_reported_with_its_timeout() -> None:
    w = walk(
        "10.244.1.5",
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}},
    )
    assert w.affinity == ((service_chain("KUBE-SVC-", SPN, "tcp"), 300),)
    assert len(w.endpoints) == 3  # a first connection: still the random choice
    assert walk("10.244.1.5").affinity == ()


def test_an_address_that_is_no_service_is_left_alone() -> None:
    w = walk("10.244.1.5", dst="10.96.5.5")
    (b,) = w.branches
    assert b.verdict == "ACCEPT" and b.endpoint == "" and b.packet.dst == "10.96.5.5"
    assert [h.chain for h in b.nat] == ["PREROUTING"]  # only the hook into KUBE-SERVICES matched
    # the right address with the wrong port or protocol is no service either
    assert walk("10.244.1.5", port=81).branches[0].verdict == "ACCEPT"
    assert walk("10.244.1.5", proto="udp", eps=THREE).branches[0].verdict == "ACCEPT"


def test_udp_service() -> None:
    w = walk("10.244.1.5", proto="udp", protocol="UDP")
    assert len(w.endpoints) == 3


IPTABLES_SAVE = """\
# Generated by iptables-nft-save v1.8.9 (nf_tables) on Mon Nov 23 23:40:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-BMS7TTZGRMITTABD - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KLCNI-1 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.244.1.5/32 -m comment --comment "name: kubelab id: abc" -j KLCNI-1
-A KLCNI-1 -d 10.244.1.0/24 -m comment --comment "name: kubelab id: abc" -j ACCEPT
-A KLCNI-1 -d 10.244.0.0/16 -m comment --comment "name: kubelab id: abc" -j ACCEPT
-A KLCNI-1 ! -d 224.0.0.0/4 -m comment --comment "name: kubelab id: abc" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.2/32 -p tcp -m comment --comment "default/hello:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-BMS7TTZGRMITTABD
-A KUBE-SVC-BMS7TTZGRMITTABD ! -s 10.244.0.0/16 -d 10.96.0.2/32 -p tcp -m comment --comment "default/hello:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-BMS7TTZGRMITTABD -m comment --comment "default/hello:http -> 10.244.1.2:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SVC-BMS7TTZGRMITTABD -m comment --comment "default/hello:http -> 192.168.56.10:6443" -j KUBE-SEP-B
-A KUBE-SEP-A -s 10.244.1.2/32 -m comment --comment default/hello:http -j KUBE-MARK-MASQ
-A KUBE-SEP-A -p tcp -m comment --comment default/hello:http -m tcp -j DNAT --to-destination 10.244.1.2:8080
-A KUBE-SEP-B -p tcp -m comment --comment default/hello:http -m tcp -j DNAT --to-destination 192.168.56.10:6443
COMMIT
"""  # noqa: E501


def test_real_iptables_save_text_and_the_cni_plugins_masquerade() -> None:
    tables = parse_save(IPTABLES_SAVE)
    assert tables["nat"]["PREROUTING"] == ['-m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    w = Tracer(tables, NODE_IPS).walk("10.244.1.5", VIP, 80)
    by = {b.endpoint: b for b in w.branches}
    assert set(by) == {"10.244.1.2:8080", "192.168.56.10:6443"}
    assert by["10.244.1.2:8080"].nat[2].probability == 0.5
    # pod → pod: the CNI plugin's chain exempts the cluster CIDR; no kube-proxy mark either
    assert not by["10.244.1.2:8080"].masquerade
    # pod → a node address outside the cluster CIDR: the CNI plugin's ipMasq SNATs it
    snat = by["192.168.56.10:6443"].snat_rule
    assert by["192.168.56.10:6443"].masquerade and snat is not None and snat.chain == "KLCNI-1"
    assert by["192.168.56.10:6443"].mark_reasons == ()


def test_parse_save_names_the_bad_line() -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_save("-A KUBE-SERVICES -j ACCEPT\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_save("*nat\nbogus\n")
