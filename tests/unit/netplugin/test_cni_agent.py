"""The node network agent's planner and reconciler (FakeRouteDriver).

Addresses: nodes on 192.168.56.0/24 (.11, .12, .13), node N owning 10.244.N.0/24 (DESIGN.md §3).
"""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api.models import Node
from netplugin.agent import (
    RTPROT_KUBELAB,
    SYSCTLS,
    FakeRouteDriver,
    RouteReconciler,
    diff_routes,
    plan_routes,
)


def node_obj(name: str, cidr: str | None, ip: str | None, **extra: Any) -> dict[str, Any]:
    n: dict[str, Any] = {"metadata": {"name": name, **extra}, "spec": {}, "status": {"addresses": []}}
    if cidr:
        n["spec"]["podCIDR"] = cidr
    if ip:
        n["status"]["addresses"] = [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]
    return n


def node(name: str, cidr: str | None, ip: str | None, **extra: Any) -> Node:
    """The Node as the agent reads it: the typed read model of the wire object."""
    return Node.decode(node_obj(name, cidr, ip, **extra))


NODES = [
    node("kl-node1", "10.244.1.0/24", "192.168.56.11"),
    node("kl-node2", "10.244.2.0/24", "192.168.56.12"),
    node("kl-node3", "10.244.3.0/24", "192.168.56.13"),
]


def test_plan_one_route_per_other_node() -> None:
    assert plan_routes(NODES, "kl-node1") == {"10.244.2.0/24": "192.168.56.12", "10.244.3.0/24": "192.168.56.13"}


def test_plan_skips_nodes_without_cidr_or_ip_or_being_deleted() -> None:
    nodes = [
        node("a", None, "192.168.56.20"),
        node("b", "10.244.5.0/24", None),
        node("c", "10.244.6.0/24", "192.168.56.22", deletionTimestamp="2026-01-01T00:00:00Z"),
        node("d", "not-a-cidr", "192.168.56.23"),
        node("e", "10.244.7.0/24", "192.168.56.24"),
    ]
    assert plan_routes(nodes, "x") == {"10.244.7.0/24": "192.168.56.24"}


def test_plan_dual_stack_matches_families() -> None:
    n = node_obj("b", None, None)
    n["spec"]["podCIDRs"] = ["10.244.2.0/24", "fd00:10:244:2::/64"]
    n["status"]["addresses"] = [
        {"type": "InternalIP", "address": "192.168.56.12"},
        {"type": "InternalIP", "address": "fd00:56::12"},
    ]
    assert plan_routes([Node.decode(n)], "a") == {"10.244.2.0/24": "192.168.56.12", "fd00:10:244:2::/64": "fd00:56::12"}


def test_diff() -> None:
    ch = diff_routes({"a": "1", "b": "2"}, {"b": "9", "c": "3"})
    assert ch.replace == {"a": "1", "b": "2"} and ch.delete == ["c"]
    assert diff_routes({"a": "1"}, {"a": "1"}).empty


def test_reconciler_converges_and_keeps_foreign_routes() -> None:
    drv = FakeRouteDriver(foreign={"0.0.0.0/0": "192.168.56.1", "10.244.1.0/24": ""})
    rec = RouteReconciler(drv, "kl-node1")
    rec.sync(NODES)
    assert drv.owned() == {"10.244.2.0/24": "192.168.56.12", "10.244.3.0/24": "192.168.56.13"}
    assert drv.sysctls == SYSCTLS
    # node3 goes away, node2 changes address
    moved = [NODES[0], node("kl-node2", "10.244.2.0/24", "192.168.56.42")]
    ch = rec.sync(moved)
    assert ch.delete == ["10.244.3.0/24"]
    assert drv.owned() == {"10.244.2.0/24": "192.168.56.42"}
    assert drv.routes["0.0.0.0/0"] == ("192.168.56.1", 4)  # never touched
    assert rec.sync(moved).empty  # idempotent


def test_reconciler_continues_after_one_failure_and_reports() -> None:
    drv = FakeRouteDriver()
    drv.fail_replace = {"10.244.2.0/24"}
    with pytest.raises(RuntimeError, match=r"10\.244\.2\.0/24"):
        RouteReconciler(drv, "kl-node1").sync(NODES)
    assert drv.owned() == {"10.244.3.0/24": "192.168.56.13"}
    assert drv.routes["10.244.3.0/24"][1] == RTPROT_KUBELAB


def test_plan_vxlan_derives_vteps_from_node_objects() -> None:
    from netplugin.agent import VxlanPeer, plan_vxlan

    me, peers = plan_vxlan([*NODES, node("no-ip", "10.244.9.0/24", None)], "kl-node2")
    assert me == VxlanPeer("10.244.2.0/24", "10.244.2.0", "0a:58:0a:f4:02:00", "192.168.56.12")
    assert [(p.cidr, p.vtep_ip, p.vtep_mac, p.node_ip) for p in peers] == [
        ("10.244.1.0/24", "10.244.1.0", "0a:58:0a:f4:01:00", "192.168.56.11"),
        ("10.244.3.0/24", "10.244.3.0", "0a:58:0a:f4:03:00", "192.168.56.13"),
    ]
    assert plan_vxlan(NODES, "unknown")[0] is None


def test_agent_health_says_when_routes_are_not_programmed(caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    from netplugin.agent import NetAgent

    caplog.set_level(logging.INFO, logger="netplugin.agent")
    drv = FakeRouteDriver()
    agent = NetAgent(object(), "kl-node1", drv)

    class Nodes:
        def list(self) -> list[Node]:
            return NODES

    agent.nodes = Nodes()  # type: ignore[assignment]
    code, body = agent.health()
    assert code == 503 and "routes not programmed yet" in json.loads(body)["lastError"]
    drv.fail_replace = {"10.244.2.0/24"}
    delays = [agent.sync_once() for _ in range(5)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2]  # back-off
    code, body = agent.health()
    doc = json.loads(body)
    assert code == 503 and "10.244.2.0/24 via 192.168.56.12: injected failure" in doc["lastError"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None  # one line, no traceback
    drv.fail_replace = set()
    assert agent.sync_once() == agent.resync
    code, body = agent.health()
    assert code == 200 and json.loads(body)["routes"] == 2 and json.loads(body)["lastError"] == ""

    class Policies:
        last_error = 'exec: "iptables-restore": executable file not found in $PATH (install the iptables package)'

    agent.policies = Policies()
    code, body = agent.health()
    assert code == 503 and "network policy rules not programmed" in json.loads(body)["lastError"]
