"""Real traffic through the real proxy daemon, for each backend (restore on nf_tables,
python-iptables on legacy): the same suite runs against both (the ``lab`` fixture's params).

Addresses: see conftest.py (nodes 192.168.56.11/.12, pods 10.244.1.2, 10.244.1.3, 10.244.2.2;
service VIPs 10.96.0.x; servers listen on 8080, services expose port 80).
"""

from __future__ import annotations

import time

from tests.helpers.netns import sh
from tests.helpers.wait import wait_for
from tests.privileged.proxy.conftest import Lab, service, slice_

ALL3 = [("10.244.1.2", "node1", True), ("10.244.1.3", "node1", True), ("10.244.2.2", "node2", True)]


def start(
    lab: Lab, objs: list[dict[str, object]], nodes: tuple[str, ...] = ("node1",), expect: str = "KUBE-SVC-"
) -> None:
    lab.write_objects(objs)
    for node in nodes:
        lab.start_proxy(node)
    for node in nodes:
        wait_for(lambda n=node: expect in lab.save(n) + lab.save(n, "filter"), 15, message=f"proxy rules on {node}")


def test_cluster_ip_reaches_every_backend(lab: Lab) -> None:
    for pod in ("p1a", "p1b", "p2a"):
        lab.server(pod)
    start(lab, [service("web", "10.96.0.10"), slice_("web", ALL3)])
    answers = lab.tcp("p1b", "10.96.0.10", 80, 60)
    assert set(answers) == {"p1a", "p1b", "p2a"}, answers
    # The node itself (OUTPUT path) reaches the VIP too once it has a route for it.
    assert "Generated" in lab.save("node1") or "KUBE-SERVICES" in lab.save("node1")


def test_client_ip_affinity_sticks(lab: Lab) -> None:
    for pod in ("p1a", "p1b", "p2a"):
        lab.server(pod)
    start(lab, [service("sticky", "10.96.0.11", sessionAffinity="ClientIP"), slice_("sticky", ALL3)])
    answers = lab.tcp("p1b", "10.96.0.11", 80, 20)
    assert len(set(answers)) == 1 and answers[0] in {"p1a", "p1b", "p2a"}, answers


def test_service_without_endpoints_refuses_at_once(lab: Lab) -> None:
    start(lab, [service("empty", "10.96.0.12"), slice_("empty", [])], expect="has no endpoints")
    t0 = time.monotonic()
    assert lab.tcp("p1a", "10.96.0.12", 80, 3) == ["REFUSED"] * 3
    assert time.monotonic() - t0 < 1.5  # three refusals, not three 2 s timeouts


def test_nodeport_on_each_node_from_the_other(lab: Lab) -> None:
    lab.server("p1a")
    lab.server("p2a")
    eps = [("10.244.1.2", "node1", True), ("10.244.2.2", "node2", True)]
    start(
        lab,
        [service("np", "10.96.0.13", type="NodePort", node_port=30080), slice_("np", eps)],
        nodes=("node1", "node2"),
    )
    # From node2 to node1's address and back; masquerade makes replies return the way they came.
    assert set(lab.tcp("node2", "192.168.56.11", 30080, 30)) == {"p1a", "p2a"}
    assert set(lab.tcp("node1", "192.168.56.12", 30080, 30)) == {"p1a", "p2a"}
    # A pod on node2 reaching node1's NodePort.
    assert set(lab.tcp("p2a", "192.168.56.11", 30080, 30)) == {"p1a", "p2a"}
    # And 127.0.0.1 on the node itself (kube-proxy's localhost NodePorts; the proxy set
    # net.ipv4.conf.all.route_localnet=1 in the node's namespace for it).
    assert sh("sysctl", "-n", "net.ipv4.conf.all.route_localnet", netns=lab.nodes["node1"]).strip() == "1"
    assert set(lab.tcp("node1", "127.0.0.1", 30080, 30)) == {"p1a", "p2a"}


def test_pod_reaches_itself_through_its_service(lab: Lab) -> None:
    lab.server("p1a")
    start(lab, [service("self", "10.96.0.14"), slice_("self", [("10.244.1.2", "node1", True)])])
    assert lab.tcp("p1a", "10.96.0.14", 80, 5) == ["p1a"] * 5  # hairpin + masquerade


def test_not_ready_endpoint_stops_getting_connections(lab: Lab) -> None:
    # How fast is bench_proxy's ("one service": a sync after one service's endpoints changed, beside
    # iptables-restore --noflush); here only that it happens, with a deadline a loaded machine meets.
    lab.server("p1a")
    lab.server("p2a")
    eps = [("10.244.1.2", "node1", True), ("10.244.2.2", "node2", True)]
    start(lab, [service("rd", "10.96.0.15"), slice_("rd", eps)])
    assert set(lab.tcp("p1b", "10.96.0.15", 80, 20)) == {"p1a", "p2a"}
    lab.write_objects([service("rd", "10.96.0.15"), slice_("rd", [eps[0], ("10.244.2.2", "node2", False)])])
    wait_for(
        lambda: "10.244.2.2:8080" not in lab.save("node1"),
        10.0,
        interval=0.05,
        message="not-ready endpoint out of the rules",
    )
    assert set(lab.tcp("p1b", "10.96.0.15", 80, 20)) == {"p1a"}


def test_udp_service_moves_to_new_endpoint(lab: Lab) -> None:
    lab.server("p1a", 5353, "udp")
    lab.server("p2a", 5353, "udp")
    svc = service("dns", "10.96.0.16", 53, proto="UDP")
    start(lab, [svc, slice_("dns", [("10.244.1.2", "node1", True)], 5353, proto="UDP")])
    assert lab.udp("p1b", "10.96.0.16", 53) == "p1a"
    assert lab.udp("p1b", "10.96.0.16", 53) == "p1a"  # same flow, conntrack entry in place
    lab.write_objects([svc, slice_("dns", [("10.244.2.2", "node2", True)], 5353, proto="UDP")])
    wait_for(lambda: "10.244.1.2:5353" not in lab.save("node1"), 5, message="old endpoint out")
    # Same source port, same 5-tuple: only a cleared conntrack entry lets it reach the new pod
    # (the old server still runs and would answer). Cleanup runs right after the restore.
    assert wait_for(lambda: lab.udp("p1b", "10.96.0.16", 53) == "p2a", 3, message="udp flow moved")
