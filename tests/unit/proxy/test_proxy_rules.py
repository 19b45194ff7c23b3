# ruff: noqa: E501  (golden iptables lines are long by nature)
"""The renderer: kube-proxy's chains, names, rule shapes and order, checked three ways.

Address conventions (kube-proxy's proxier_test.go): cluster IPs 172.30.0.4x, pod (endpoint) IPs
10.180.0.x, cluster CIDR 10.0.0.0/8, this node "test-hostname" with IP 192.168.0.2, another node
192.168.0.3, an external client 203.0.113.2, external IPs 192.168.99.x, LB IPs 1.2.3.4/5.6.7.8.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.rules import (
    ProxyOptions,
    endpoint_chain,
    owned_chain,
    probability,
    render,
    service_chain,
)
from tests.unit.proxy.tracer import Tracer

NODE = "test-hostname"
NODE_IP = "192.168.0.2"
OPTS = ProxyOptions(node_name=NODE, cluster_cidr="10.0.0.0/8", node_ips=(NODE_IP,))
EXTERNAL = "203.0.113.2"


def svc(ns: str, name: str, ip: str, port: int = 80, **spec: Any) -> dict[str, Any]:
    ports = spec.pop("ports", None) or [
        {"name": "p80", "port": port, "protocol": spec.pop("protocol", "TCP"), **spec.pop("port_extra", {})}
    ]
    status = spec.pop("status", {})
    return {
        "kind": "Service",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"clusterIP": ip, "ports": ports, **spec},
        "status": status,
    }


def ep(ip: str, node: str = "", **cond: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip], "conditions": dict(cond)}
    if node:
        out["nodeName"] = node
    return out


def eps(ns: str, name: str, endpoints: list[dict[str, Any]], port: int = 80, proto: str = "TCP") -> dict[str, Any]:
    return {
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": ns,
            "name": f"{name}-1",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "p80", "port": port, "protocol": proto}],
    }


def parse_restore(text: str) -> dict[str, dict[str, list[str]]]:
    """iptables-restore text → table → chain → rules, keeping rule order within each chain."""
    out: dict[str, dict[str, list[str]]] = {}
    table: dict[str, list[str]] = {}
    for raw in text.strip().splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = out.setdefault(line[1:], {})
        elif line.startswith(":"):
            table.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            _, chain, rest = line.split(" ", 2)
            table.setdefault(chain, []).append(rest)
    return out


def assert_same_rules(expected: str, ruleset_text: str, ignore: tuple[str, ...] = ("KUBE-PROXY-CANARY",)) -> None:
    """Semantic comparison (kube-proxy's assertIPTablesRulesEqual): chain by chain, order kept."""
    want, got = parse_restore(expected), parse_restore(ruleset_text)
    for table in want:
        w = {c: r for c, r in want[table].items() if c not in ignore}
        g = {c: r for c, r in got.get(table, {}).items() if c not in ignore}
        assert sorted(w) == sorted(g), f"{table}: chains differ"
        for chain in w:
            assert w[chain] == g[chain], f"{table} {chain}:\nwant {w[chain]}\ngot  {g[chain]}"


# --- names -----------------------------------------------------------------------------------


def test_chain_names_are_kube_proxys_hashes() -> None:
    assert service_chain("KUBE-SVC-", "ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    # base32(sha256(...))[:16], so the same recipe for every prefix; 25 chars fit the 28 limit.
    h = base64.b32encode(hashlib.sha256(b"ns2/svc2:p80udp").digest()).decode()[:16]
    assert service_chain("KUBE-EXT-", "ns2/svc2:p80", "udp") == f"KUBE-EXT-{h}"
    assert len(service_chain("KUBE-SVL-", "a" * 300, "sctp")) == 25


@given(st.text(max_size=200))
def test_chain_hash_is_base32_of_sha256_for_any_name(text: str) -> None:
    # The pair-table encoder must agree with the library's base32 everywhere.
    want = base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]
    assert endpoint_chain(text, "", "") == f"KUBE-SEP-{want}"


def test_unnamed_port_name_has_no_colon() -> None:
    rs = render([svc("ns", "web", "172.30.0.9", ports=[{"port": 80}])], [eps("ns", "web", [ep("10.180.0.9")])])
    # ServicePortName.String() of an unnamed port is "ns/web" (the slice port is named p80, so
    # its endpoints do not belong to the unnamed port: no endpoints, REJECT).
    assert any('"ns/web has no endpoints"' in r for r in rs.tables["filter"]["KUBE-SERVICES"])


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "1.0000000000"), (2, "0.5000000000"), (3, "0.3333333333"), (4, "0.2500000000"), (7, "0.1428571429")],
)
def test_probabilities_are_printed_like_kube_proxy(n: int, expected: str) -> None:
    assert probability(n) == expected


def test_probabilities_in_dispatch_chain_are_one_over_n_minus_i() -> None:
    endpoints = [ep(f"10.180.0.{i}") for i in range(1, 5)]
    rs = render([svc("ns", "s", "172.30.0.41")], [eps("ns", "s", endpoints)], options=OPTS)
    chain = rs.tables["nat"][service_chain("KUBE-SVC-", "ns/s:p80", "tcp")]
    probs = [r.split("--probability ")[1].split()[0] for r in chain if "--probability" in r]
    assert probs == ["0.2500000000", "0.3333333333", "0.5000000000"]
    assert chain[-1] == f'-m comment --comment "ns/s:p80 -> 10.180.0.4:80" -j {endpoint_chain("ns/s:p80", "tcp", "10.180.0.4:80")}'


# --- golden rulesets per kind of service ------------------------------------------------------

OVERALL_SERVICES = [
    svc("ns1", "svc1", "172.30.0.41"),
    svc(
        "ns2",
        "svc2",
        "172.30.0.42",
        type="LoadBalancer",
        externalTrafficPolicy="Local",
        healthCheckNodePort=30000,
        externalIPs=["192.168.99.22"],
        port_extra={"nodePort": 3001},
        status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
    ),
    svc("ns3", "svc3", "172.30.0.43", type="NodePort", port_extra={"nodePort": 3003}),
    svc("ns4", "svc4", "172.30.0.44", externalIPs=["192.168.99.33"]),
    svc(
        "ns5",
        "svc5",
        "172.30.0.45",
        type="LoadBalancer",
        externalTrafficPolicy="Cluster",
        healthCheckNodePort=30000,
        loadBalancerSourceRanges=[" 203.0.113.0/25"],
        port_extra={"nodePort": 3002},
        status={"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}},
    ),
    svc("ns6", "svc6", "172.30.0.46"),
]
OVERALL_SLICES = [
    eps("ns1", "svc1", [ep("10.180.0.1")]),
    eps("ns2", "svc2", [ep("10.180.0.2")]),  # not on this node: no local endpoints
    eps("ns3", "svc3", [ep("10.180.0.3")]),
    eps("ns4", "svc4", [ep("10.180.0.4"), ep("10.180.0.5", node=NODE)]),
    eps("ns5", "svc5", [ep("10.180.0.3")]),
]

# The ruleset kube-proxy's TestOverallIPTablesRules expects for the same objects.
OVERALL_EXPECTED = """
*filter
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
COMMIT
*nat
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
:KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
:KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
:KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
:KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
:KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
:KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
:KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
:KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
:KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
-A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
-A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
-A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
-A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
-A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
-A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
COMMIT
"""


def test_overall_ruleset_matches_kube_proxys_golden() -> None:
    rs = render(OVERALL_SERVICES, OVERALL_SLICES, options=OPTS)
    assert rs.errors == []
    assert_same_rules(OVERALL_EXPECTED, rs.text())
    # Every jump lands on a chain that exists (kube-proxy's checkIPTablesRuleJumps).
    for table, chains in rs.tables.items():
        for chain, rules in chains.items():
            for r in rules:
                target = r.split(" -j ")[-1].split()[0] if " -j " in f" {r}" else None
                if target and target.startswith("KUBE-"):
                    assert target in chains, f"{table} {chain} jumps to missing {target}"


def test_session_affinity_clientip_uses_recent() -> None:
    s = svc("ns", "aff", "172.30.0.41", sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}})
    rs = render([s], [eps("ns", "aff", [ep("10.180.0.1"), ep("10.180.0.2")])], options=OPTS)
    spn = "ns/aff:p80"
    sep1, sep2 = (endpoint_chain(spn, "tcp", f"10.180.0.{i}:80") for i in (1, 2))
    expected = f"""
*nat
:KUBE-SVC-X - [0:0]
-A {service_chain("KUBE-SVC-", spn, "tcp")} -m comment --comment "{spn} cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A {service_chain("KUBE-SVC-", spn, "tcp")} -m comment --comment "{spn} -> 10.180.0.1:80" -m recent --name {sep1} --rcheck --seconds 300 --reap -j {sep1}
-A {service_chain("KUBE-SVC-", spn, "tcp")} -m comment --comment "{spn} -> 10.180.0.2:80" -m recent --name {sep2} --rcheck --seconds 300 --reap -j {sep2}
-A {service_chain("KUBE-SVC-", spn, "tcp")} -m comment --comment "{spn} -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j {sep1}
-A {service_chain("KUBE-SVC-", spn, "tcp")} -m comment --comment "{spn} -> 10.180.0.2:80" -j {sep2}
-A {sep1} -m comment --comment {spn} -s 10.180.0.1 -j KUBE-MARK-MASQ
-A {sep1} -m comment --comment {spn} -m recent --name {sep1} --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
COMMIT
"""
    want = parse_restore(expected)["nat"]
    got = rs.tables["nat"]
    for chain, rules in want.items():
        if chain != "KUBE-SVC-X":
            assert got[chain] == rules


def test_default_affinity_timeout_is_10800() -> None:
    rs = render([svc("ns", "a", "172.30.0.41", sessionAffinity="ClientIP")], [eps("ns", "a", [ep("10.180.0.1")])])
    assert any("--seconds 10800 --reap" in r for r in rs.tables["nat"][service_chain("KUBE-SVC-", "ns/a:p80", "tcp")])


def test_internal_traffic_policy_local() -> None:
    s = svc("ns", "itp", "172.30.0.41", internalTrafficPolicy="Local")
    local_ep, remote_ep = ep("10.180.0.1", node=NODE), ep("10.180.0.2", node="other")
    rs = render([s], [eps("ns", "itp", [local_ep, remote_ep])], options=OPTS)
    spn = "ns/itp:p80"
    svl = service_chain("KUBE-SVL-", spn, "tcp")
    assert rs.tables["nat"]["KUBE-SERVICES"][0].endswith(f"-j {svl}")
    assert service_chain("KUBE-SVC-", spn, "tcp") not in rs.tables["nat"]
    assert rs.tables["nat"][svl][-1] == f'-m comment --comment "{spn} -> 10.180.0.1:80" -j {endpoint_chain(spn, "tcp", "10.180.0.1:80")}'
    # No local endpoint at all: DROP with "has no local endpoints" (not REJECT).
    rs2 = render([s], [eps("ns", "itp", [remote_ep])], options=OPTS)
    assert rs2.tables["filter"]["KUBE-SERVICES"] == [
        f'-m comment --comment "{spn} has no local endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j DROP'
    ]


def test_only_ready_endpoints_and_terminating_fallback() -> None:
    s = svc("ns", "r", "172.30.0.41")
    not_ready = ep("10.180.0.1", ready=False, serving=False)
    ready = ep("10.180.0.2")
    term = ep("10.180.0.3", ready=False, serving=True, terminating=True)
    rs = render([s], [eps("ns", "r", [not_ready, ready, term])], options=OPTS)
    t = Tracer.of(rs, (NODE_IP,))
    assert t.trace("10.0.0.2", "172.30.0.41", 80).output == "10.180.0.2:80"
    # Only a serving-and-terminating endpoint left: it is used rather than dropping traffic.
    rs = render([s], [eps("ns", "r", [not_ready, term])], options=OPTS)
    assert Tracer.of(rs, (NODE_IP,)).trace("10.0.0.2", "172.30.0.41", 80).output == "10.180.0.3:80"
    # Nothing usable: REJECT at once.
    rs = render([s], [eps("ns", "r", [not_ready])], options=OPTS)
    assert Tracer.of(rs, (NODE_IP,)).trace("10.0.0.2", "172.30.0.41", 80).output == "REJECT"


def test_protocols_udp_and_sctp() -> None:
    services = [svc("ns", "u", "172.30.0.41", protocol="UDP"), svc("ns", "s", "172.30.0.42", protocol="SCTP")]
    slices = [eps("ns", "u", [ep("10.180.0.1")], proto="UDP"), eps("ns", "s", [ep("10.180.0.2")], proto="SCTP")]
    rs = render(services, slices, options=OPTS)
    t = Tracer.of(rs, (NODE_IP,))
    assert t.trace("10.0.0.2", "172.30.0.41", 80, "udp").output == "10.180.0.1:80"
    assert t.trace("10.0.0.2", "172.30.0.42", 80, "sctp").output == "10.180.0.2:80"
    assert t.trace("10.0.0.2", "172.30.0.41", 80, "tcp").output == "ACCEPT"  # wrong protocol: untouched
    assert any("-m sctp -p sctp" in r for r in rs.tables["nat"]["KUBE-SERVICES"])


# --- packet flows (kube-proxy's runPacketFlowTests) -------------------------------------------


@pytest.mark.parametrize(
    ("name", "src", "dst", "port", "output", "masq"),
    [
        ("pod to cluster IP", "10.0.0.2", "172.30.0.41", 80, "10.180.0.1:80", False),
        ("external to cluster IP is masqueraded", EXTERNAL, "172.30.0.41", 80, "10.180.0.1:80", True),
        ("node to cluster IP is masqueraded", NODE_IP, "172.30.0.41", 80, "10.180.0.1:80", True),
        ("hairpin: endpoint reaching itself", "10.180.0.1", "172.30.0.41", 80, "10.180.0.1:80", True),
        ("no endpoints rejects", "10.0.0.2", "172.30.0.46", 80, "REJECT", None),
        ("external to NodePort", EXTERNAL, NODE_IP, 3003, "10.180.0.3:80", True),
        ("pod to NodePort on this node", "10.0.0.2", NODE_IP, 3003, "10.180.0.3:80", True),
        ("localhost NodePort", "127.0.0.1", "127.0.0.1", 3003, "10.180.0.3:80", True),
        ("external to external IP", EXTERNAL, "192.168.99.33", 80, "10.180.0.4:80, 10.180.0.5:80", True),
        ("ETP Local, no local endpoints: external IP dropped", EXTERNAL, "192.168.99.22", 80, "DROP", None),
        ("ETP Local: pod to external IP short-circuits", "10.0.0.2", "192.168.99.22", 80, "10.180.0.2:80", False),
        ("ETP Local: NodePort from outside dropped", EXTERNAL, NODE_IP, 3001, "DROP", None),
        ("LB source range allowed", "203.0.113.2", "5.6.7.8", 80, "10.180.0.3:80", True),
        ("LB source range denied", "203.0.113.200", "5.6.7.8", 80, "DROP", None),
        ("other port untouched", "10.0.0.2", "172.30.0.41", 81, "ACCEPT", False),
    ],
)
def test_packet_flows(name: str, src: str, dst: str, port: int, output: str, masq: bool | None) -> None:
    rs = render(OVERALL_SERVICES, OVERALL_SLICES, options=OPTS)
    result = Tracer.of(rs, (NODE_IP,)).trace(src, dst, port)
    assert result.output == output, name
    if masq is not None:
        assert result.masq is masq, name


def test_nodeport_serves_every_node_address_through_addrtype_local() -> None:
    # No per-address rules: whichever address of this node a client uses, KUBE-NODEPORTS is reached.
    rs = render(OVERALL_SERVICES, OVERALL_SLICES, options=OPTS)
    t = Tracer.of(rs, (NODE_IP, "192.168.56.11"))
    assert t.trace(EXTERNAL, "192.168.56.11", 3003).output == "10.180.0.3:80"
    assert t.trace(EXTERNAL, "192.168.0.3", 3003).output == "ACCEPT"  # another node's address


def test_without_localhost_nodeports_127_is_excluded() -> None:
    from dataclasses import replace

    rs = render(OVERALL_SERVICES, OVERALL_SLICES, options=replace(OPTS, localhost_nodeports=False))
    assert rs.tables["nat"]["KUBE-SERVICES"][-1].endswith("--dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS")
    assert "KUBE-FIREWALL" not in rs.tables["filter"]
    assert Tracer.of(rs, (NODE_IP,)).trace("127.0.0.1", "127.0.0.1", 3003).output == "ACCEPT"


# --- bad input --------------------------------------------------------------------------------


def test_unprogrammable_objects_are_skipped_and_others_kept() -> None:
    good = svc("ns", "good", "172.30.0.41")
    bad_port = svc("ns", "badport", "172.30.0.42", port=70000)
    bad_proto = svc("ns", "badproto", "172.30.0.43", protocol="ICMP")
    bad_ip = svc("ns", "badip", "not-an-ip")
    bad_slice = eps("ns", "good", [ep("10.180.0.9")], port=0)
    slices = [eps("ns", "good", [ep("10.180.0.1")]), {**bad_slice, "metadata": {**bad_slice["metadata"], "name": "x"}}]
    rs = render([bad_port, good, bad_proto, bad_ip], slices, options=OPTS)
    assert len(rs.errors) == 4
    assert any("badport" in e and "70000" in e for e in rs.errors)
    assert any("badproto" in e and "ICMP" in e for e in rs.errors)
    assert any("badip" in e for e in rs.errors)
    assert any("EndpointSlice ns/x" in e for e in rs.errors)
    t = Tracer.of(rs, (NODE_IP,))
    assert t.trace("10.0.0.2", "172.30.0.41", 80).output == "10.180.0.1:80"
    assert t.trace("10.0.0.2", "172.30.0.42", 80).output == "ACCEPT"


def test_headless_and_externalname_services_get_no_rules() -> None:
    rs = render(
        [svc("ns", "h", "None"), {"metadata": {"namespace": "ns", "name": "e"}, "spec": {"type": "ExternalName"}}],
        [],
    )
    assert rs.errors == []
    assert rs.tables["nat"]["KUBE-SERVICES"] == [rs.tables["nat"]["KUBE-SERVICES"][-1]]


def test_owned_chains() -> None:
    assert owned_chain("nat", "KUBE-SVC-XPGD46QRK7WJZT7O")
    assert owned_chain("mangle", "KUBE-PROXY-CANARY")
    assert not owned_chain("nat", "CNI-abc")
    assert not owned_chain("filter", "KUBE-SVC-XPGD46QRK7WJZT7O")
    assert not owned_chain("mangle", "KUBE-KUBELET-CANARY")


def test_masquerade_all_and_random_fully() -> None:
    from dataclasses import replace

    opts = replace(OPTS, masquerade_all=True, random_fully=True)
    rs = render([svc("ns", "m", "172.30.0.41")], [eps("ns", "m", [ep("10.180.0.1")])], options=opts)
    svc_rules = rs.tables["nat"][service_chain("KUBE-SVC-", "ns/m:p80", "tcp")]
    assert svc_rules[0].endswith("--dport 80 -j KUBE-MARK-MASQ")  # no "! -s cluster CIDR"
    assert rs.tables["nat"]["KUBE-POSTROUTING"][-1].endswith("-j MASQUERADE --random-fully")
    assert Tracer.of(rs, (NODE_IP,)).trace("10.0.0.2", "172.30.0.41", 80).masq is True


def test_endpoints_come_out_sorted_by_address_and_once_however_the_slices_list_them() -> None:
    s = svc("ns", "web", "172.30.0.9")
    want = render([s], [eps("ns", "web", [ep("10.180.0.2"), ep("10.180.0.10")])], options=OPTS)
    one_slice = eps("ns", "web", [ep("10.180.0.10"), ep("10.180.0.2"), ep("10.180.0.10", ready=False)])
    assert render([s], [one_slice], options=OPTS).tables == want.tables
    first = eps("ns", "web", [ep("10.180.0.10", ready=False)])
    second = eps("ns", "web", [ep("10.180.0.10"), ep("10.180.0.2")])
    second["metadata"]["name"] = "web-2"
    assert render([s], [first, second], options=OPTS).tables == want.tables  # the ready copy wins
