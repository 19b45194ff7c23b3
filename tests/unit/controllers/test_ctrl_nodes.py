"""Node IPAM and node lifecycle: pure tables, then sync() with a fake clock (no waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.api.registry import LEASES, NODES, PODS
from controlplane.controllers.nodeipam import CidrSet, NodeIpamController
from controlplane.controllers.nodelifecycle import (
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    NodeLifecycleController,
    desired_taints,
    eviction_time,
    reconcile_taints,
    tolerates,
)
from controlplane.controllers.util import format_time, get_condition
from tests.unit.controllers.fake import FakeCluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- IPAM --------------------------------------------------------------------------------------


def test_cidrset_lowest_free_from_one_and_preferred() -> None:
    s = CidrSet("10.244.0.0/16", 24)
    assert s.capacity == 256
    assert s.allocate() == "10.244.1.0/24"
    assert s.allocate(preferred=5) == "10.244.5.0/24"
    assert s.allocate(preferred=5) == "10.244.2.0/24"  # taken: lowest free instead
    assert s.allocate(preferred=0) == "10.244.0.0/24"
    s.release("10.244.1.0/24")
    assert s.allocate() == "10.244.1.0/24"


def test_cidrset_exhaustion_and_bad_input() -> None:
    s = CidrSet("10.0.0.0/30", 30)
    assert s.allocate() == "10.0.0.0/30"
    with pytest.raises(Exception, match="no free"):
        s.allocate()
    with pytest.raises(ValueError, match="cluster-cidr"):
        CidrSet("10.244.0.1/16", 24)
    with pytest.raises(ValueError, match="mask-size"):
        CidrSet("10.244.0.0/16", 8)
    assert CidrSet("10.244.0.0/16", 24).index_of("10.245.1.0/24") is None


def node(name: str, **kw: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, **kw.pop("meta", {})},
        "spec": kw.pop("spec", {}),
        "status": kw.pop("status", {}),
    }


def test_ipam_lab_names_get_their_index_in_any_order(cluster: FakeCluster) -> None:
    ctl = NodeIpamController(cluster.context())
    for n in ("kl-node2", "kl-node1", "worker-x"):
        cluster.seed(NODES, node(n))
        ctl.sync(n)
    cluster.seed(NODES, node("kl-cp", meta={"labels": {"node-role.kubernetes.io/control-plane": ""}}))
    ctl.sync("kl-cp")
    got = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in cluster.all(NODES)}
    assert got == {
        "kl-node1": "10.244.1.0/24",
        "kl-node2": "10.244.2.0/24",
        "worker-x": "10.244.3.0/24",
        "kl-cp": "10.244.0.0/24",
    }
    assert cluster.obj(NODES, "kl-node1", None)["spec"]["podCIDRs"] == ["10.244.1.0/24"]  # type: ignore[index]


def test_ipam_control_plane_by_name_first(cluster: FakeCluster) -> None:
    ctl = NodeIpamController(cluster.context())
    for n in ("kl-cp", "kl-node1"):
        cluster.seed(NODES, node(n))
        ctl.sync(n)
    got = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in cluster.all(NODES)}
    assert got == {"kl-cp": "10.244.0.0/24", "kl-node1": "10.244.1.0/24"}


def test_ipam_rebuilds_from_existing_nodes_and_frees_on_delete(cluster: FakeCluster) -> None:
    cluster.seed(NODES, node("a", spec={"podCIDR": "10.244.1.0/24"}))
    cluster.seed(NODES, node("b"))
    ctl = NodeIpamController(cluster.context())  # a "restarted" controller
    ctl.sync("b")
    assert cluster.obj(NODES, "b", None)["spec"]["podCIDR"] == "10.244.2.0/24"  # type: ignore[index]
    ctl.sync("b")  # idempotent
    assert cluster.obj(NODES, "b", None)["spec"]["podCIDR"] == "10.244.2.0/24"  # type: ignore[index]
    cluster.delete(NODES, "a")
    cluster.seed(NODES, node("c"))
    ctl.sync("c")
    assert cluster.obj(NODES, "c", None)["spec"]["podCIDR"] == "10.244.1.0/24"  # type: ignore[index]


# --- lifecycle: pure ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tol", "taint", "want"),
    [
        ({"key": "k", "operator": "Exists"}, {"key": "k", "effect": "NoExecute"}, True),
        ({"operator": "Exists"}, {"key": "any", "effect": "NoSchedule"}, True),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": "NoExecute"}, True),
        ({"key": "k", "value": "w"}, {"key": "k", "value": "v", "effect": "NoExecute"}, False),
        ({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, {"key": "k", "effect": "NoExecute"}, False),
    ],
)
def test_tolerates(tol: dict[str, Any], taint: dict[str, Any], want: bool) -> None:
    assert tolerates(tol, taint) is want


@pytest.mark.parametrize(
    ("ready", "stale", "want"),
    [
        ("True", False, []),
        ("True", True, TAINT_UNREACHABLE),
        ("Unknown", False, TAINT_UNREACHABLE),
        ("False", False, TAINT_NOT_READY),
        (None, True, TAINT_UNREACHABLE),
    ],
)
def test_desired_taints(ready: str | None, stale: bool, want: Any) -> None:
    got = desired_taints(ready, stale)
    assert got == ([] if want == [] else [(want, "NoSchedule"), (want, "NoExecute")])


def test_reconcile_taints_keeps_foreign_and_time_added() -> None:
    foreign = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    got = reconcile_taints([foreign], [(TAINT_UNREACHABLE, "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute")], T0)
    assert got is not None and got[0] == foreign
    assert got[2] == {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": format_time(T0)}
    assert reconcile_taints(got, [(TAINT_UNREACHABLE, "NoSchedule"), (TAINT_UNREACHABLE, "NoExecute")], T0) is None
    assert reconcile_taints(got, [], T0) == [foreign]


UNREACH = {"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": format_time(T0)}


@pytest.mark.parametrize(
    ("tolerations", "taints", "want_seconds"),
    [
        ([], [UNREACH], 300),  # default toleration
        (
            [{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}],
            [UNREACH],
            5,
        ),  # pod's own wins
        ([{"operator": "Exists"}], [UNREACH], None),  # tolerates forever
        ([], [{"key": "x", "effect": "NoExecute", "timeAdded": format_time(T0)}], 0),  # untolerated: now
        ([], [{"key": "x", "effect": "NoSchedule"}], None),  # NoSchedule never evicts
    ],
)
def test_eviction_time(tolerations: list[Any], taints: list[Any], want_seconds: int | None) -> None:
    at = eviction_time({"spec": {"tolerations": tolerations}}, taints, 300)
    assert at == (None if want_seconds is None else T0 + timedelta(seconds=want_seconds))


# --- lifecycle: sync with a fake clock --------------------------------------------------------------


def setup_node(cluster: FakeCluster, name: str = "n1") -> None:
    now = format_time(cluster.clock.now())
    cluster.seed(
        NODES,
        node(
            name,
            status={
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now},
                    {"type": "MemoryPressure", "status": "False"},
                ]
            },
        ),
    )
    cluster.seed(
        LEASES,
        {
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "renewTime": now},
        },
    )


def renew(cluster: FakeCluster, name: str = "n1") -> None:
    lease = cluster.obj(LEASES, name, "kube-node-lease")
    assert lease is not None
    lease["spec"]["renewTime"] = format_time(cluster.clock.now()) + f"-{cluster.clock.now().timestamp()}"
    cluster.update(LEASES, lease)


def test_lifecycle_unknown_taint_evict_and_recover(cluster: FakeCluster) -> None:
    ctl = NodeLifecycleController(cluster.context(), grace_period=40, pod_eviction_timeout=300)
    setup_node(cluster)
    cluster.seed(
        PODS,
        {
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"nodeName": "n1"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    cluster.seed(
        PODS,
        {
            "metadata": {"name": "quick", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "tolerations": [
                    {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}
                ],
            },
            "status": {"phase": "Running"},
        },
    )
    ctl.sync("n1")
    cluster.clock.step(30)
    renew(cluster)
    ctl.sync("n1")
    cluster.clock.step(30)
    ctl.sync("n1")
    assert get_condition(cluster.obj(NODES, "n1", None), "Ready")["status"] == "True"  # type: ignore[arg-type,index]

    cluster.clock.step(11)  # 41 s since the last renewal
    ctl.sync("n1")
    n = cluster.obj(NODES, "n1", None)
    assert n is not None
    ready = get_condition(n, "Ready")
    assert ready == {
        **ready,
        "status": "Unknown",
        "reason": "NodeStatusUnknown",  # type: ignore[dict-item]
        "message": "Kubelet stopped posting node status.",
    }
    assert get_condition(n, "MemoryPressure")["status"] == "Unknown"  # type: ignore[index]
    assert {(t["key"], t["effect"]) for t in n["spec"]["taints"]} == {
        (TAINT_UNREACHABLE, "NoSchedule"),
        (TAINT_UNREACHABLE, "NoExecute"),
    }
    assert get_condition(cluster.obj(PODS, "p"), "Ready")["status"] == "False"  # type: ignore[arg-type,index]
    assert cluster.obj(PODS, "quick") is not None

    cluster.clock.step(10)
    ctl.sync("n1")
    assert cluster.obj(PODS, "quick") is None, "tolerationSeconds=10 has passed"
    assert cluster.obj(PODS, "p") is not None
    cluster.clock.step(290)
    ctl.sync("n1")
    assert cluster.obj(PODS, "p") is None, "default 300 s toleration has passed"

    renew(cluster)
    ctl.sync("n1")
    assert not cluster.obj(NODES, "n1", None)["spec"].get("taints")  # type: ignore[index]


def test_lifecycle_not_ready_node_gets_not_ready_taint(cluster: FakeCluster) -> None:
    ctl = NodeLifecycleController(cluster.context(), grace_period=40)
    setup_node(cluster)
    n = cluster.obj(NODES, "n1", None)
    assert n is not None
    n["status"]["conditions"][0]["status"] = "False"
    cluster.update_status(NODES, n)
    ctl.sync("n1")
    taints = cluster.obj(NODES, "n1", None)["spec"]["taints"]  # type: ignore[index]
    assert {t["key"] for t in taints} == {TAINT_NOT_READY}
    assert ("nodelifecycle" in cluster.queues) and cluster.queues["nodelifecycle"].after


def test_admission_default_toleration_defers_to_eviction_timeout() -> None:
    admission = {"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    at = eviction_time({"spec": {"tolerations": [admission]}}, [UNREACH], 2)
    assert at == T0 + timedelta(seconds=2)
    own = {**admission, "tolerationSeconds": 301}
    assert eviction_time({"spec": {"tolerations": [own]}}, [UNREACH], 2) == T0 + timedelta(seconds=301)
