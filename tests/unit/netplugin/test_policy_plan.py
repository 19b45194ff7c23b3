"""The NetworkPolicy planner: rendered rules judged packet by packet (tests.helpers.iptables_verdict)."""

from __future__ import annotations

from typing import Any

import pytest

from netplugin.policy import plan
from tests.helpers.iptables_verdict import Packet, parse, verdict

Obj = dict[str, Any]


def pod(ns: str, name: str, ip: str, node: str, labels: dict[str, str] | None = None, **ports: int) -> Obj:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "ports": [{"name": n, "containerPort": p} for n, p in ports.items()]}],
        },
        "status": {"podIP": ip, "phase": "Running"},
    }


def ns(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def policy(name: str, spec: Obj, namespace: str = "default") -> Obj:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


HELLO = pod("default", "hello-1", "10.244.1.10", "kl-node1", {"app": "hello"}, http=8080)
CLIENT_OK = pod("default", "client-ok", "10.244.1.20", "kl-node1", {"access": "true"})
CLIENT_NO = pod("default", "client-no", "10.244.1.21", "kl-node1")
REMOTE_OK = pod("default", "remote-ok", "10.244.2.30", "kl-node2", {"access": "true"})
REMOTE_NO = pod("default", "remote-no", "10.244.2.31", "kl-node2")
OTHER_NS = pod("team-a", "other", "10.244.2.40", "kl-node2", {"app": "x"})
DB = pod("default", "db", "10.244.2.50", "kl-node2", {"app": "db"}, pg=5432)
PODS = [HELLO, CLIENT_OK, CLIENT_NO, REMOTE_OK, REMOTE_NO, OTHER_NS, DB]
NAMESPACES = [ns("default"), ns("team-a", team="a")]

DENY_INGRESS = policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})
ALLOW_ACCESS = policy(
    "hello-allow",
    {
        "podSelector": {"matchLabels": {"app": "hello"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"access": "true"}}}]}],
    },
)


def ip(p: Obj) -> str:
    return str(p["status"]["podIP"])


def rules(*policies: Obj, node: str = "kl-node1", pods: list[Obj] | None = None) -> str:
    return plan.render(list(policies), PODS if pods is None else pods, NAMESPACES, node).restore_text()


def judge(text: str, src: Obj | str, dst: Obj | str, dport: int = 8080, **kw: Any) -> str:
    s = src if isinstance(src, str) else ip(src)
    d = dst if isinstance(dst, str) else ip(dst)
    return verdict(text, Packet(s, d, dport, **kw))


def test_no_policy_allows_everything_and_renders_an_empty_firewall() -> None:
    text = rules()
    assert parse(text) == {plan.FIREWALL: []}
    for src in PODS:
        assert judge(text, src, HELLO) == "ACCEPT"


def test_default_deny_ingress_drops_new_connections_but_not_replies_or_egress() -> None:
    text = rules(DENY_INGRESS)
    for src in (CLIENT_OK, CLIENT_NO, REMOTE_OK, "192.168.56.12"):
        assert judge(text, src, HELLO) == "DROP"
    assert judge(text, REMOTE_OK, HELLO, state="ESTABLISHED") == "ACCEPT"
    assert judge(text, HELLO, REMOTE_OK) == "ACCEPT"  # not isolated for egress
    # a policy in another namespace isolates nothing here
    text = rules(policy("deny", {"podSelector": {}}, namespace="team-a"))
    assert judge(text, CLIENT_NO, HELLO) == "ACCEPT"


def test_allow_from_label_on_top_of_default_deny() -> None:
    text = rules(DENY_INGRESS, ALLOW_ACCESS)
    assert judge(text, CLIENT_OK, HELLO) == "ACCEPT"
    assert judge(text, REMOTE_OK, HELLO) == "ACCEPT"
    assert judge(text, CLIENT_NO, HELLO) == "DROP"
    assert judge(text, REMOTE_NO, HELLO) == "DROP"
    assert judge(text, OTHER_NS, HELLO) == "DROP"  # podSelector alone: the policy's namespace only
    assert judge(text, HELLO, CLIENT_NO) == "DROP"  # client-no is isolated by default-deny only


def test_namespace_selector_alone_and_with_pod_selector() -> None:
    from_team_a = policy(
        "from-a",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
        },
    )
    text = rules(from_team_a)
    assert judge(text, OTHER_NS, HELLO) == "ACCEPT"
    assert judge(text, CLIENT_OK, HELLO) == "DROP"
    both = policy(
        "from-a-y",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"team": "a"}},
                            "podSelector": {"matchLabels": {"app": "y"}},
                        }
                    ]
                }
            ],
        },
    )
    assert judge(rules(both), OTHER_NS, HELLO) == "DROP"
    by_name = policy(
        "from-default",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}}}]}],
        },
    )
    text = rules(by_name)
    assert judge(text, REMOTE_NO, HELLO) == "ACCEPT" and judge(text, OTHER_NS, HELLO) == "DROP"


def test_ip_block_with_except() -> None:
    block = policy(
        "cidr",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.2.0/24", "except": ["10.244.2.31/32"]}}]}],
        },
    )
    text = rules(block)
    assert judge(text, REMOTE_OK, HELLO) == "ACCEPT"
    assert judge(text, OTHER_NS, HELLO) == "ACCEPT"
    assert judge(text, REMOTE_NO, HELLO) == "DROP"  # the except
    assert judge(text, CLIENT_OK, HELLO) == "DROP"  # outside the cidr
    # an except must not end the policy: a later peer of the same rule still allows it
    block["spec"]["ingress"][0]["from"].append({"podSelector": {}})
    assert judge(rules(block), REMOTE_NO, HELLO) == "ACCEPT"


def test_named_port_resolves_on_the_selected_pod() -> None:
    named = policy("named", {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "protocol": "TCP"}]}]})
    text = rules(named)
    assert judge(text, CLIENT_NO, HELLO, dport=8080) == "ACCEPT"
    assert judge(text, CLIENT_NO, HELLO, dport=80) == "DROP"
    assert judge(text, CLIENT_NO, HELLO, dport=8080, proto="udp") == "DROP"
    assert judge(text, HELLO, CLIENT_OK, dport=8080) == "DROP"  # client-ok has no port named http


def test_end_port_range_and_protocol() -> None:
    ranged = policy(
        "range",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "ingress": [{"ports": [{"port": 8000, "endPort": 8090, "protocol": "TCP"}]}],
        },
    )
    text = rules(ranged)
    assert judge(text, CLIENT_NO, HELLO, dport=8000) == "ACCEPT"
    assert judge(text, CLIENT_NO, HELLO, dport=8090) == "ACCEPT"
    assert judge(text, CLIENT_NO, HELLO, dport=8091) == "DROP"
    assert judge(text, CLIENT_NO, HELLO, dport=7999) == "DROP"
    assert judge(text, CLIENT_NO, HELLO, dport=8080, proto="udp") == "DROP"


def test_egress_deny_with_dns_allowed() -> None:
    dns = [{"ipBlock": {"cidr": "10.96.0.10/32"}}, {"ipBlock": {"cidr": "192.168.56.10/32"}}]
    egress = policy(
        "egress-dns-only",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": dns, "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}],
        },
    )
    text = rules(egress)
    assert judge(text, HELLO, "192.168.56.10", dport=53, proto="udp") == "ACCEPT"
    assert judge(text, HELLO, "192.168.56.10", dport=53, proto="tcp") == "ACCEPT"
    assert judge(text, HELLO, "10.96.0.10", dport=53, proto="udp") == "ACCEPT"
    assert judge(text, HELLO, "192.168.56.10", dport=80) == "DROP"
    assert judge(text, HELLO, REMOTE_OK, dport=80) == "DROP"
    assert judge(text, HELLO, REMOTE_OK, state="ESTABLISHED") == "ACCEPT"
    assert judge(text, CLIENT_OK, HELLO) == "ACCEPT"  # Egress-only: ingress stays open
    assert judge(text, CLIENT_OK, REMOTE_OK) == "ACCEPT"  # other pods are not selected


def test_egress_named_port_resolves_on_each_peer_pod() -> None:
    to_db = policy(
        "to-db",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": "pg", "protocol": "TCP"}]}
            ],
        },
    )
    text = rules(to_db)
    assert judge(text, HELLO, DB, dport=5432) == "ACCEPT"
    assert judge(text, HELLO, DB, dport=80) == "DROP"
    assert judge(text, HELLO, REMOTE_OK, dport=5432) == "DROP"


def test_policies_are_a_union() -> None:
    by_label = policy(
        "by-label",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": {"access": "true"}}}],
                    "ports": [{"port": 8080, "protocol": "TCP"}],
                }
            ],
        },
    )
    by_ns = policy(
        "by-ns",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
        },
    )
    text = rules(by_label, by_ns)
    assert judge(text, CLIENT_OK, HELLO, dport=8080) == "ACCEPT"
    assert judge(text, CLIENT_OK, HELLO, dport=9090) == "DROP"
    assert judge(text, OTHER_NS, HELLO, dport=9090) == "ACCEPT"
    assert judge(text, CLIENT_NO, HELLO, dport=8080) == "DROP"
    # an ingress rule with no from and no ports allows everything
    assert judge(rules(by_label, policy("all", {"podSelector": {}, "ingress": [{}]})), CLIENT_NO, HELLO) == "ACCEPT"


def test_local_to_local_needs_both_egress_and_ingress() -> None:
    eg = policy(
        "client-out",
        {
            "podSelector": {"matchLabels": {"access": "true"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "hello"}}}]}],
        },
    )
    assert judge(rules(eg, DENY_INGRESS, ALLOW_ACCESS), CLIENT_OK, HELLO) == "ACCEPT"
    assert judge(rules(eg, DENY_INGRESS), CLIENT_OK, HELLO) == "DROP"  # egress allows, ingress does not
    assert judge(rules(eg), CLIENT_OK, CLIENT_NO) == "DROP"  # ingress open, egress does not allow


def test_only_pods_on_this_node_get_chains() -> None:
    text = rules(DENY_INGRESS, ALLOW_ACCESS, node="kl-node2")
    assert judge(text, CLIENT_NO, HELLO) == "ACCEPT"  # hello-1 is enforced on kl-node1, not here
    assert judge(text, CLIENT_NO, REMOTE_OK) == "DROP"
    pod_chains = [c for c in parse(text) if c.startswith("KUBELAB-POD-IN-")]
    # remote-ok, remote-no and db (default namespace); "other" is in team-a, which has no policy
    assert len(pod_chains) == 3
    assert judge(text, CLIENT_NO, OTHER_NS) == "ACCEPT"


def test_pods_without_ip_host_network_or_finished_are_ignored() -> None:
    pending = pod("default", "pending", "", "kl-node1", {"app": "hello"})
    hostnet = pod("default", "hostnet", "192.168.56.11", "kl-node1", {"app": "hello"})
    hostnet["spec"]["hostNetwork"] = True
    done = pod("default", "done", "10.244.1.99", "kl-node1", {"app": "hello"})
    done["status"]["phase"] = "Succeeded"
    text = rules(DENY_INGRESS, pods=[pending, hostnet, done])
    assert parse(text) == {plan.FIREWALL: []}


def test_rules_are_deterministic_commented_and_names_fit() -> None:
    a = rules(DENY_INGRESS, ALLOW_ACCESS)
    b = plan.render([ALLOW_ACCESS, DENY_INGRESS], list(reversed(PODS)), NAMESPACES, "kl-node1").restore_text()
    assert a == b
    chains = parse(a)
    assert all(len(c) <= 28 and plan.is_owned_chain(c) for c in chains)
    np_rules = [r for c, rs in chains.items() if c.startswith("KUBELAB-NP-IN-") for r in rs]
    assert np_rules and all("--comment" in r for r in np_rules)
    assert any("default/hello-allow ingress[0]" in r for r in np_rules)
    assert a.startswith("*filter\n") and a.endswith("COMMIT\n")


def test_stale_chains_are_flushed_and_deleted() -> None:
    rs = plan.render([DENY_INGRESS], PODS, NAMESPACES, "kl-node1")
    text = rs.restore_text(stale=["KUBELAB-POD-IN-OLDOLDOLDOLDO", plan.FIREWALL])
    assert ":KUBELAB-POD-IN-OLDOLDOLDOLDO - [0:0]" in text and "-X KUBELAB-POD-IN-OLDOLDOLDOLDO" in text
    assert f"-X {plan.FIREWALL}" not in text


@pytest.mark.parametrize("bad", [{"matchLabels": "nope"}, "x"])
def test_malformed_selectors_select_nothing(bad: Any) -> None:
    text = rules(policy("bad", {"podSelector": bad}))
    assert judge(text, CLIENT_NO, HELLO) == "ACCEPT"


def test_egress_to_the_node_itself_goes_through_input() -> None:
    only_kubelet = policy(
        "to-kubelet-only",
        {
            "podSelector": {"matchLabels": {"app": "hello"}},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": "192.168.56.11/32"}}], "ports": [{"port": 10250, "protocol": "TCP"}]}
            ],
        },
    )
    text = rules(only_kubelet)
    assert verdict(text, Packet(ip(HELLO), "10.244.1.1", 53, "udp"), hook="INPUT") == "DROP"
    assert verdict(text, Packet(ip(HELLO), "192.168.56.11", 10250), hook="INPUT") == "ACCEPT"
    assert verdict(text, Packet(ip(CLIENT_OK), "10.244.1.1", 53, "udp"), hook="INPUT") == "ACCEPT"
    assert verdict(text, Packet("192.168.56.10", "192.168.56.11", 10250), hook="INPUT") == "ACCEPT"


def test_ipv6_blocks_and_bad_pod_ips_never_reach_the_ipv4_rules() -> None:
    v6 = policy("v6", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "2001:db8::/64"}}]}]})
    odd = pod("default", "odd", "not-an-ip", "kl-node1", {"access": "true"})
    text = rules(v6, pods=[*PODS, odd])
    assert "2001:db8" not in text and "not-an-ip" not in text
    assert judge(text, CLIENT_OK, HELLO) == "DROP"  # isolated; the v6 block allows no IPv4 source
