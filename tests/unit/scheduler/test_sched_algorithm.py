"""Table-driven tests of the pure scheduling algorithm (filters, scores, messages, quantities)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from controlplane.scheduler import algorithm as alg
from controlplane.scheduler.algorithm import Snapshot, pod_info, schedule


def node(
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    ready: str = "True",
    unschedulable: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"taints": taints or []}
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def pod(
    name: str = "p",
    cpu: str | None = None,
    memory: str | None = None,
    ns: str = "default",
    labels: dict[str, str] | None = None,
    owner: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": req}}], **spec},
    }


def snap_of(*nodes: dict[str, Any], bound: list[tuple[dict[str, Any], str]] | None = None) -> Snapshot:
    s = Snapshot()
    for n in nodes:
        s.set_node(n)
    for p, n in bound or []:
        s.add_pod(pod_info(p), n)
    return s


def reasons(p: dict[str, Any], n: dict[str, Any], bound: list[dict[str, Any]] | None = None) -> list[str]:
    s = snap_of(n, bound=[(b, n["metadata"]["name"]) for b in bound or []])
    info = pod_info(p)
    return alg.filter_node(info, s.nodes[n["metadata"]["name"]], alg.prepare_inter_pod(info, s))


# -- quantities -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("q", "milli", "integer"),
    [
        ("100m", 100, 1),
        ("1.5", 1500, 2),
        ("2", 2000, 2),
        (2, 2000, 2),
        (0.25, 250, 1),
        ("128Mi", 128 * 2**20 * 1000, 128 * 2**20),
        ("1G", 10**12, 10**9),
        ("1Gi", 2**30 * 1000, 2**30),
        ("1e3", 10**6, 1000),
        ("1E3", 10**6, 1000),
        ("1k", 10**6, 1000),
        ("1Ki", 1024000, 1024),
        ("500u", 1, 1),
        ("10n", 1, 1),
        (".5", 500, 1),
        ("0", 0, 0),
    ],
)
def test_quantities(q: Any, milli: int, integer: int) -> None:
    assert alg.milli_value(q) == milli
    assert alg.int_value(q) == integer


def test_quantity_exact_decimal() -> None:
    assert alg.parse_quantity("1.5Gi") == Decimal(3 * 2**29)


@pytest.mark.parametrize("bad", ["", "abc", "1.2.3", "10Mb", "1KI", "--1", "1e", True])
def test_bad_quantities_are_refused_with_the_value_named(bad: Any) -> None:
    with pytest.raises(alg.QuantityError, match="quantit"):
        alg.parse_quantity(bad)


# -- filters ----------------------------------------------------------------------------------------
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
GPU = {"key": "gpu", "value": "true", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("case", "p", "n", "expected"),
    [
        ("fits", pod(cpu="1", memory="1Gi"), node("n"), []),
        ("unschedulable", pod(), node("n", unschedulable=True), [alg.REASON_UNSCHEDULABLE]),
        (
            "unschedulable tolerated",
            pod(
                tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
            ),
            node("n", unschedulable=True),
            [],
        ),
        (
            "not ready counts as not-ready taint",
            pod(),
            node("n", ready="False"),
            ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"],
        ),
        (
            "unknown readiness counts as unreachable",
            pod(),
            node("n", ready="Unknown"),
            ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"],
        ),
        (
            "not ready tolerated",
            pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]),
            node("n", ready="False"),
            [],
        ),
        ("NoExecute taint", pod(), node("n", taints=[UNREACHABLE]), [alg.taint_reason(UNREACHABLE)]),
        ("NoSchedule taint", pod(), node("n", taints=[GPU]), ["node(s) had untolerated taint {gpu: true}"]),
        (
            "Equal toleration",
            pod(tolerations=[{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
            node("n", taints=[GPU]),
            [],
        ),
        (
            "Equal toleration wrong value",
            pod(tolerations=[{"key": "gpu", "value": "false"}]),
            node("n", taints=[GPU]),
            ["node(s) had untolerated taint {gpu: true}"],
        ),
        (
            "toleration wrong effect",
            pod(tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]),
            node("n", taints=[GPU]),
            ["node(s) had untolerated taint {gpu: true}"],
        ),
        (
            "Exists with no key tolerates all",
            pod(tolerations=[{"operator": "Exists"}]),
            node("n", taints=[GPU, UNREACHABLE]),
            [],
        ),
        (
            "PreferNoSchedule never filters",
            pod(),
            node("n", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
            [],
        ),
        ("insufficient cpu", pod(cpu="5"), node("n"), ["Insufficient cpu"]),
        ("insufficient memory", pod(memory="9Gi"), node("n"), ["Insufficient memory"]),
        ("both", pod(cpu="4100m", memory="8193Mi"), node("n"), ["Insufficient cpu", "Insufficient memory"]),
        ("exact fit", pod(cpu="4", memory="8Gi"), node("n"), []),
        ("too many pods", pod(), node("n", pods="0"), ["Too many pods"]),
        ("nodeSelector ok", pod(nodeSelector={"zone": "a"}), node("n", labels={"zone": "a"}), []),
        (
            "nodeSelector mismatch",
            pod(nodeSelector={"zone": "a"}),
            node("n", labels={"zone": "b"}),
            [alg.REASON_NODE_AFFINITY],
        ),
        ("nodeSelector missing label", pod(nodeSelector={"zone": "a"}), node("n"), [alg.REASON_NODE_AFFINITY]),
    ],
)
def test_filter_table(case: str, p: dict[str, Any], n: dict[str, Any], expected: list[str]) -> None:
    assert reasons(p, n) == expected, case


def affinity_pod(*exprs: dict[str, Any], fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"matchExpressions": list(exprs)}
    if fields:
        term["matchFields"] = fields
    return pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    )


@pytest.mark.parametrize(
    ("expr", "labels", "fits"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, {"zone": "b"}, True),
        ({"key": "zone", "operator": "In", "values": ["a"]}, {"zone": "b"}, False),
        ({"key": "zone", "operator": "In", "values": ["a"]}, {}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"zone": "b"}, True),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {"zone": "a"}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["a"]}, {}, True),
        ({"key": "gpu", "operator": "Exists"}, {"gpu": ""}, True),
        ({"key": "gpu", "operator": "Exists"}, {}, False),
        ({"key": "gpu", "operator": "DoesNotExist"}, {}, True),
        ({"key": "gpu", "operator": "DoesNotExist"}, {"gpu": "1"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["4"]}, {"cores": "8"}, True),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, {"cores": "8"}, False),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "4"}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, {"cores": "x"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["1"]}, {}, False),
    ],
)
def test_required_node_affinity_operators(expr: dict[str, Any], labels: dict[str, str], fits: bool) -> None:
    got = reasons(affinity_pod(expr), node("n", labels=labels))
    assert got == ([] if fits else [alg.REASON_NODE_AFFINITY])


def test_node_affinity_terms_are_ored_expressions_anded_and_match_fields() -> None:
    terms = [
        {
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a"]},
                {"key": "gpu", "operator": "Exists"},
            ]
        },
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
    ]
    p = pod(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}})
    assert reasons(p, node("n1", labels={"zone": "a", "gpu": "1"})) == []
    assert reasons(p, node("n2", labels={"zone": "a"})) == [alg.REASON_NODE_AFFINITY]
    assert reasons(p, node("special")) == []
    empty = pod(
        affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    )
    assert reasons(empty, node("n")) == [alg.REASON_NODE_AFFINITY]


def test_resources_subtract_what_is_bound() -> None:
    n = node("n", cpu="2", memory="1Gi", pods="3")
    assert reasons(pod(cpu="1"), n, bound=[pod("a", cpu="500m")]) == []
    assert reasons(pod(cpu="1"), n, bound=[pod("a", cpu="1500m")]) == ["Insufficient cpu"]
    assert reasons(pod(memory="600Mi"), n, bound=[pod("a", memory="500Mi")]) == ["Insufficient memory"]
    assert reasons(pod(), n, bound=[pod("a"), pod("b")]) == []
    assert reasons(pod(), n, bound=[pod("a"), pod("b"), pod("c")]) == ["Too many pods"]


def test_init_containers_and_overhead_count() -> None:
    p = pod(cpu="500m")
    p["spec"]["initContainers"] = [{"name": "i", "resources": {"requests": {"cpu": "3"}}}]
    p["spec"]["overhead"] = {"cpu": "250m"}
    info = pod_info(p)
    assert info.cpu == 3250
    assert reasons(p, node("n", cpu="3")) == ["Insufficient cpu"]


def host_port_pod(name: str, port: int, proto: str = "TCP", ip: str | None = None) -> dict[str, Any]:
    p = pod(name)
    entry: dict[str, Any] = {"containerPort": 80, "hostPort": port, "protocol": proto}
    if ip:
        entry["hostIP"] = ip
    p["spec"]["containers"][0]["ports"] = [entry]
    return p


@pytest.mark.parametrize(
    ("existing", "incoming", "fits"),
    [
        (host_port_pod("a", 8080), host_port_pod("b", 8080), False),
        (host_port_pod("a", 8080), host_port_pod("b", 8081), True),
        (host_port_pod("a", 8080, "UDP"), host_port_pod("b", 8080), True),
        (host_port_pod("a", 8080, ip="127.0.0.1"), host_port_pod("b", 8080, ip="127.0.0.2"), True),
        (host_port_pod("a", 8080, ip="127.0.0.1"), host_port_pod("b", 8080), False),
        (pod("a"), host_port_pod("b", 8080), True),
    ],
)
def test_host_ports(existing: dict[str, Any], incoming: dict[str, Any], fits: bool) -> None:
    assert reasons(incoming, node("n"), bound=[existing]) == ([] if fits else [alg.REASON_PORTS])


def anti(app: str, key: str = "kubernetes.io/hostname", kind: str = "podAntiAffinity") -> dict[str, Any]:
    return {
        kind: {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}
            ]
        }
    }


def test_pod_anti_affinity_on_hostname() -> None:
    s = snap_of(node("n1"), node("n2"), bound=[(pod("web-0", labels={"app": "web"}), "n1")])
    p = pod_info(pod("web-1", labels={"app": "web"}, affinity=anti("web")))
    inter = alg.prepare_inter_pod(p, s)
    assert alg.filter_node(p, s.nodes["n1"], inter) == [alg.REASON_POD_ANTI_AFFINITY]
    assert alg.filter_node(p, s.nodes["n2"], inter) == []
    # other namespaces do not count (namespaces default to the pod's own)
    other = pod_info(pod("web-1", ns="other", labels={"app": "web"}, affinity=anti("web")))
    assert alg.filter_node(other, s.nodes["n1"], alg.prepare_inter_pod(other, s)) == []


def test_existing_pods_anti_affinity_keeps_newcomers_away() -> None:
    s = snap_of(node("n1"), node("n2"), bound=[(pod("db", labels={"app": "db"}, affinity=anti("web")), "n1")])
    p = pod_info(pod("web", labels={"app": "web"}))
    inter = alg.prepare_inter_pod(p, s)
    assert alg.filter_node(p, s.nodes["n1"], inter) == [alg.REASON_EXISTING_ANTI_AFFINITY]
    assert alg.filter_node(p, s.nodes["n2"], inter) == []


def test_pod_anti_affinity_on_zone_topology() -> None:
    s = snap_of(
        node("a1", labels={"zone": "a"}),
        node("a2", labels={"zone": "a"}),
        node("b1", labels={"zone": "b"}),
        bound=[(pod("x", labels={"app": "x"}), "a1")],
    )
    p = pod_info(pod("y", labels={"app": "x"}, affinity=anti("x", key="zone")))
    inter = alg.prepare_inter_pod(p, s)
    assert [bool(alg.filter_node(p, s.nodes[n], inter)) for n in ("a1", "a2", "b1")] == [True, True, False]


def test_pod_affinity_requires_a_matching_pod_in_the_topology() -> None:
    s = snap_of(node("n1"), node("n2"), bound=[(pod("cache", labels={"app": "cache"}), "n2")])
    p = pod_info(pod("web", labels={"app": "web"}, affinity=anti("cache", kind="podAffinity")))
    inter = alg.prepare_inter_pod(p, s)
    assert alg.filter_node(p, s.nodes["n1"], inter) == [alg.REASON_POD_AFFINITY]
    assert alg.filter_node(p, s.nodes["n2"], inter) == []


def test_pod_affinity_first_pod_of_a_group_matching_itself_may_go_anywhere() -> None:
    s = snap_of(node("n1"), node("n2"))
    p = pod_info(pod("web-0", labels={"app": "web"}, affinity=anti("web", kind="podAffinity")))
    inter = alg.prepare_inter_pod(p, s)
    assert alg.filter_node(p, s.nodes["n1"], inter) == []
    q = pod_info(pod("web-0", labels={"app": "other"}, affinity=anti("web", kind="podAffinity")))
    assert alg.filter_node(q, s.nodes["n1"], alg.prepare_inter_pod(q, s)) == [alg.REASON_POD_AFFINITY]


# -- decisions and messages ----------------------------------------------------------------------------
def test_failure_message_matches_kubernetes_format() -> None:
    s = snap_of(node("n1", cpu="1"), node("n2", taints=[UNREACHABLE]), node("n3", taints=[UNREACHABLE]))
    d = schedule(pod_info(pod(cpu="2")), s)
    assert d.node is None
    assert d.message() == (
        "0/3 nodes are available: 1 Insufficient cpu, "
        "2 node(s) had untolerated taint {node.kubernetes.io/unreachable: }. "
        "preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, "
        "2 Preemption is not helpful for scheduling."
    )


def test_message_with_no_nodes_and_with_mixed_reasons() -> None:
    assert schedule(pod_info(pod()), Snapshot()).message() == "no nodes available to schedule pods"
    s = snap_of(
        node("a", unschedulable=True), node("b", labels={"zone": "x"}), node("c", pods="0", labels={"zone": "y"})
    )
    d = schedule(pod_info(pod(nodeSelector={"zone": "y"})), s)
    assert d.message() == (
        "0/3 nodes are available: 1 Too many pods, 1 node(s) didn't match Pod's node affinity/selector, "
        "1 node(s) were unschedulable. preemption: 0/3 nodes are available: "
        "1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    )


def test_least_allocated_prefers_the_emptier_node() -> None:
    s = snap_of(node("busy"), node("idle"), bound=[(pod("x", cpu="3", memory="6Gi"), "busy")])
    assert schedule(pod_info(pod(cpu="100m")), s).node == "idle"


def test_balanced_allocation_prefers_balance_when_free_space_ties() -> None:
    n = node("n", cpu="4", memory="4Gi")
    info = alg.NodeInfo(n)
    balanced = pod_info(pod(cpu="2", memory="2Gi"))
    skewed = pod_info(pod(cpu="4", memory="0"))
    assert alg.balanced_allocation(balanced, info) > alg.balanced_allocation(skewed, info)


def test_preferred_node_affinity_wins_over_small_resource_differences() -> None:
    pref = [{"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]
    s = snap_of(node("hdd"), node("ssd", labels={"disk": "ssd"}), bound=[(pod("x", cpu="500m"), "ssd")])
    p = pod_info(pod(cpu="100m", affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": pref}}))
    assert schedule(p, s).node == "ssd"


def test_prefer_no_schedule_taint_is_avoided_but_allowed() -> None:
    soft = [{"key": "spot", "effect": "PreferNoSchedule"}]
    s = snap_of(node("tainted", taints=soft), node("plain"))
    assert schedule(pod_info(pod()), s).node == "plain"
    only = snap_of(node("tainted", taints=soft))
    assert schedule(pod_info(pod()), only).node == "tainted"


def test_same_owner_pods_spread_across_nodes() -> None:
    s = snap_of(node("a"), node("b"), node("c"))
    placed = []
    for i in range(6):
        info = pod_info(pod(f"web-{i}", owner="rs1"))
        d = schedule(info, s, rng=random.Random(i))
        assert d.node is not None
        s.add_pod(info, d.node)
        placed.append(d.node)
    assert sorted(placed) == ["a", "a", "b", "b", "c", "c"]


def test_assumed_pods_prevent_overcommit_in_a_burst() -> None:
    s = snap_of(node("n1", cpu="2"), node("n2", cpu="2"))
    results = []
    for i in range(5):
        info = pod_info(pod(f"p{i}", cpu="1"))
        d = schedule(info, s)
        results.append(d.node)
        if d.node:
            s.add_pod(info, d.node)
    assert sorted(n for n in results if n) == ["n1", "n1", "n2", "n2"]
    assert results[-1] is None


def test_snapshot_bookkeeping_remove_and_orphans() -> None:
    s = Snapshot()
    p = pod_info(pod("a", cpu="1", owner="rs"))
    s.add_pod(p, "late")  # node not seen yet
    s.set_node(node("late", cpu="1"))
    assert s.nodes["late"].req_cpu == 1000 and s.nodes["late"].owners["rs"] == 1
    assert reasons(pod(cpu="1"), node("late", cpu="1"), bound=[pod("a", cpu="1")]) == ["Insufficient cpu"]
    s.set_node(node("late", cpu="2"))  # node update keeps the bound pods
    assert s.nodes["late"].alloc_cpu == 2000 and s.nodes["late"].req_cpu == 1000
    s.remove_pod("default/a")
    assert s.nodes["late"].req_cpu == 0 and not s.nodes["late"].owners
    s.remove_node("late")
    assert len(s) == 0


def test_large_clusters_evaluate_only_enough_feasible_nodes_and_rotate() -> None:
    assert alg.num_feasible_nodes_to_find(50) == 50
    assert alg.num_feasible_nodes_to_find(1000) == 420
    assert alg.num_feasible_nodes_to_find(5000) == 500
    assert alg.num_feasible_nodes_to_find(1000, 100) == 1000
    s = snap_of(*(node(f"n{i}") for i in range(1000)))
    d1 = schedule(pod_info(pod("a")), s)
    assert d1.evaluated == 420 and s.next_start == 420
    d2 = schedule(pod_info(pod("b")), s, percentage_of_nodes_to_score=100)
    assert d2.evaluated == 1000 and d2.feasible == 1000


def test_default_tolerations_keep_a_pod_on_the_fast_path_and_still_count_on_tainted_nodes() -> None:
    defaults = [
        {"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        for k in ("not-ready", "unreachable")
    ]
    info = pod_info(pod(tolerations=defaults))
    assert info.simple
    assert not pod_info(pod(nodeSelector={"a": "b"})).simple
    # on a tainted node the full filter still runs, tolerations included
    s = snap_of(node("gpu", taints=[GPU]), node("down", taints=[UNREACHABLE]))
    assert schedule(info, s).node == "down"  # tolerates unreachable:NoExecute, not the gpu taint
    # an unknown Ready condition alone implies unreachable:NoSchedule, which NoExecute tolerations miss
    assert schedule(info, snap_of(node("silent", ready="Unknown"))).node is None
