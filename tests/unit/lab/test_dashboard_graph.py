"""The topology picture's model (lab/dashboard/graph.py): cluster objects → boxes and lines → DOT."""

from __future__ import annotations

import html
import shutil
from typing import Any

import pytest

from lab import topology
from lab.dashboard import graph, hub


def node(i: int, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": f"kl-node{i}"},
        "spec": {"podCIDR": f"10.244.{i}.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": f"192.168.56.{10 + i}"}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}],
        },
    }


def pod(name: str, i: int, ip: str = "", phase: str = "Running", **extra: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}", **extra}
    return {"metadata": md, "spec": {"nodeName": f"kl-node{i}", "containers": [{"name": "web"}]},
            "status": {"phase": phase, "podIP": ip}}  # fmt: skip


SVC = {"metadata": {"name": "hello", "namespace": "default"},
       "spec": {"type": "NodePort", "clusterIP": "10.96.0.2",
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}]}}  # fmt: skip
KUBERNETES = {"metadata": {"name": "kubernetes", "namespace": "default"},
              "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 443, "targetPort": 6443}]}}  # fmt: skip


def slice_of(svc: str, eps: list[tuple[str, str, bool | None]]) -> dict[str, Any]:
    items = []
    for addr, pod_name, ready in eps:
        ep: dict[str, Any] = {"addresses": [addr], "conditions": {} if ready is None else {"ready": ready}}
        if pod_name:
            ep["targetRef"] = {"kind": "Pod", "name": pod_name, "namespace": "default"}
        items.append(ep)
    return {"metadata": {"name": f"{svc}-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}}, "endpoints": items}  # fmt: skip


def demo() -> graph.Snapshot:
    pods = [pod("hello-a", 1, "10.244.1.2"), pod("hello-b", 2, "10.244.2.2"), pod("client", 1, "10.244.1.3"),
            pod("starting", 2, "", "Pending"), pod("unscheduled", 9, "")]  # fmt: skip
    slices = [
        slice_of("hello", [("10.244.1.2", "hello-a", True), ("10.244.2.2", "hello-b", None),
                           ("10.244.1.3", "client", False)]),
        slice_of("kubernetes", [("192.168.56.10", "", True)]),
    ]  # fmt: skip
    return graph.Snapshot([node(2), node(1)], pods, [SVC, KUBERNETES], slices, {"default/hello-a": "veth1a2b3c4d"},
                          topology.plan_lab(2))  # fmt: skip


def test_every_node_has_its_eth0_and_cni0_in_its_box_and_a_wire_to_kl0() -> None:
    g = graph.build(demo())
    for i in (1, 2):
        name = f"kl-node{i}"
        assert g.groups[name] == f"{name} (Ready)"
        eth0, cni0 = g.box(f"eth0:{name}"), g.box(f"cni0:{name}")
        assert eth0 is not None and eth0.group == name and f"192.168.56.{10 + i}" in eth0.label
        assert cni0 is not None and cni0.group == name and f"10.244.{i}.1/24" in cni0.label
        assert graph.Edge("kl0", f"eth0:{name}", "wire", f"klv-node{i}") in g.edges
    assert graph.Edge("host", "kl0", "wire") in g.edges
    host = g.box("host")
    assert host is not None and "10.244.1.0/24 via 192.168.56.11" in host.label
    assert g.box("eth0:kl-cp") is not None  # the control plane from the lab's plan


def test_pods_sit_on_their_nodes_bridge_with_ip_and_veth() -> None:
    g = graph.build(demo())
    a = g.box("pod:default/hello-a")
    assert a is not None and a.group == "kl-node1" and "10.244.1.2" in a.label and "veth1a2b3c4d" in a.label
    assert graph.Edge("cni0:kl-node1", "pod:default/hello-a", "veth", "veth1a2b3c4d") in g.edges
    pending = g.box("pod:default/starting")
    assert pending is not None and pending.state == "Pending" and "(no IP yet)" in pending.label
    assert g.box("pod:default/unscheduled") is None  # its node is not in the cluster: not drawn


def test_routes_between_pod_cidrs_one_line_per_pair_with_both_routes() -> None:
    routes = [e for e in graph.build(demo()).edges if e.kind == "route"]
    assert [(e.src, e.dst, e.label) for e in routes] == [
        ("cni0:kl-node1", "cni0:kl-node2",
         "kl-node1: 10.244.2.0/24 via 192.168.56.12\\nkl-node2: 10.244.1.0/24 via 192.168.56.11"),
    ]  # fmt: skip
    three = graph.build(graph.Snapshot([node(1), node(2), node(3)], [], [], [], {}, None))
    assert len([e for e in three.edges if e.kind == "route"]) == 3


def test_a_vip_has_lines_to_its_ready_endpoints_only() -> None:
    g = graph.build(demo())
    vip = g.box("svc:default/hello")
    assert vip is not None and "VIP 10.96.0.2" in vip.label and "NodePort 30080" in vip.label
    ends = sorted((e.dst, e.label) for e in g.edges if e.kind == "endpoint" and e.src == "svc:default/hello")
    # hello-b's `ready` is unset: EndpointSlice semantics say ready; client's is false: no line
    assert ends == [("pod:default/hello-a", "10.244.1.2"), ("pod:default/hello-b", "10.244.2.2")]
    # an endpoint that is no pod (the API server) leads to the node box holding its address
    assert graph.Edge("svc:default/kubernetes", "eth0:kl-cp", "endpoint", "192.168.56.10") in g.edges


def test_a_deleted_pod_changes_the_picture() -> None:
    snap = demo()
    before = graph.to_dot(graph.build(snap))
    gone = graph.Snapshot(snap.nodes, [p for p in snap.pods if p["metadata"]["name"] != "hello-b"], snap.services,
                          [slice_of("hello", [("10.244.1.2", "hello-a", True)])], snap.veths, snap.lab)  # fmt: skip
    after = graph.to_dot(graph.build(gone))
    assert 'id="pod:default/hello-b"' in before and "hello-b" not in after
    terminating = pod("hello-a", 1, "10.244.1.2", deletionTimestamp="2026-01-01T00:00:00Z")
    box = graph.build(graph.Snapshot(snap.nodes, [terminating], [], [], {}, None)).box("pod:default/hello-a")
    assert box is not None and box.state == "Terminating"


def test_not_ready_node_is_marked() -> None:
    g = graph.build(graph.Snapshot([node(1, ready=False)], [], [], [], {}, None))
    assert g.groups["kl-node1"] == "kl-node1 (NotReady)"
    assert 'class="eth0 notready"' in graph.to_dot(g)


def test_dot_is_deterministic_and_quotes_names() -> None:
    snap = demo()
    assert graph.to_dot(graph.build(snap)) == graph.to_dot(graph.build(snap))
    assert graph.q('a "b"') == '"a \\"b\\""'
    dot = graph.to_dot(graph.build(snap))
    assert 'id="svc:default/hello"' in dot and 'id="node:kl-node1"' in dot


def test_tables_match_the_picture() -> None:
    snap = demo()
    t = hub.tables(snap, {"kl-node1": {"cpu": "120m", "memory": "300Mi"}}, {}, [])
    assert [n["name"] for n in t["nodes"]] == ["kl-node1", "kl-node2"]
    assert t["nodes"][0]["usage"] == {"cpu": "120m", "memory": "300Mi"}
    hello = next(s for s in t["services"] if s["name"] == "hello")
    assert hello["clusterIP"] == "10.96.0.2" and hello["endpoints"] == ["10.244.1.2", "10.244.2.2"]
    a = next(p for p in t["pods"] if p["name"] == "hello-a")
    assert (a["node"], a["ip"], a["veth"], a["containers"]) == ("kl-node1", "10.244.1.2", "veth1a2b3c4d", ["web"])


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot is installed by `make deps`")
def test_dot_lays_it_out_as_svg_with_the_ids() -> None:
    # Graphviz escapes '-' as &#45; in attributes; a browser's DOM (and html.unescape) reads it back
    svg = html.unescape(graph.svg_element(graph.render(graph.to_dot(graph.build(demo())))))
    assert svg.startswith("<svg") and 'id="pod:default/hello-a"' in svg and 'id="svc:default/hello"' in svg
    png = graph.render(graph.to_dot(graph.build(demo())), "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(graph.GraphError, match="unknown picture format"):
        graph.render("digraph {}", "gif")
    with pytest.raises(graph.GraphError, match="failed"):
        graph.render("this is not dot")
