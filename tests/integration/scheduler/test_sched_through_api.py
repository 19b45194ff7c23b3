"""The scheduler against the real API server with hollow nodes (issue 3's scheduler acceptance)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.api.registry import EVENTS, NAMESPACES, NODES, PODS
from controlplane.client.rest import ApiClient
from controlplane.scheduler.scheduler import Scheduler
from tests.helpers.hollow import FakeKubelet, HollowNodes
from tests.helpers.wait import wait_for


@pytest.fixture
def ns(client: ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def nodes(client: ApiClient) -> Iterator[HollowNodes]:
    h = HollowNodes(client, heartbeat=None)
    yield h
    for name in h.names:
        try:
            client.delete(NODES, name)
        except errors.NotFound:
            pass


@pytest.fixture
def scheduler(client: ApiClient) -> Iterator[Scheduler]:
    stop = threading.Event()
    s = Scheduler(client, initial_backoff=0.2, max_backoff=1.0, unschedulable_flush=30)
    t = threading.Thread(target=s.run, args=(stop,), daemon=True)
    t.start()
    wait_for(lambda: s.nodes.has_synced() and s.pods.has_synced(), message="scheduler caches")
    yield s
    stop.set()
    t.join(15)
    assert not t.is_alive()


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def mkpod(
    client: ApiClient, ns: str, name: str, cpu: str | None = None, owner: str | None = None, **spec: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": spec.pop("labels", {})}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}
        ]
    container: dict[str, Any] = {"name": "c", "image": "kubelab/pause"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    return client.create(
        PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [container], **spec}}
    )


def node_of(client: ApiClient, ns: str, name: str) -> str:
    return str(client.get(PODS, name, ns)["spec"].get("nodeName") or "")


def events_for(client: ApiClient, ns: str, name: str) -> list[dict[str, Any]]:
    return [e for e in client.list(EVENTS, ns)["items"] if e["involvedObject"]["name"] == name]


def test_pods_of_one_owner_spread_and_become_running(
    client: ApiClient, ns: str, nodes: HollowNodes, scheduler: Scheduler
) -> None:
    names = [uniq("spread") for _ in range(3)]
    for n in names:
        nodes.add(n, cpu="4", labels={"pool": ns})
    kubelet = FakeKubelet(client, set(names))
    kubelet.start()
    try:
        pods = [f"web-{i}" for i in range(6)]
        for p in pods:
            mkpod(client, ns, p, cpu="100m", owner="rs-" + ns, nodeSelector={"pool": ns})
        wait_for(lambda: all(node_of(client, ns, p) for p in pods), timeout=20, message="all bound")
        placement = Counter(node_of(client, ns, p) for p in pods)
        assert placement == Counter({n: 2 for n in names})
        wait_for(
            lambda: all(client.get(PODS, p, ns)["status"].get("phase") == "Running" for p in pods),
            message="fake kubelet marks them Running",
        )
        ev = wait_for(lambda: [e for e in events_for(client, ns, "web-0") if e["reason"] == "Scheduled"])
        assert ev[0]["message"] == f"Successfully assigned {ns}/web-0 to {node_of(client, ns, 'web-0')}"
        assert ev[0]["source"]["component"] == "default-scheduler"
    finally:
        kubelet.stop()


def test_pod_that_fits_nowhere_stays_pending_with_reason_then_schedules_when_capacity_appears(
    client: ApiClient, ns: str, nodes: HollowNodes, scheduler: Scheduler
) -> None:
    small = [uniq("small") for _ in range(2)]
    for n in small:
        nodes.add(n, cpu="1", labels={"pool": ns})
    tainted = uniq("tainted")
    nodes.add(
        tainted, cpu="8", labels={"pool": ns}, taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    )
    mkpod(client, ns, "big", cpu="2", nodeSelector={"pool": ns})
    other_nodes = len(client.list(NODES)["items"]) - 3

    total = other_nodes + 3
    expected_reasons = sorted(
        [
            "2 Insufficient cpu",
            "1 node(s) had untolerated taint {dedicated: db}",
            *([f"{other_nodes} node(s) didn't match Pod's node affinity/selector"] if other_nodes else []),
        ]
    )
    expected = f"0/{total} nodes are available: {', '.join(expected_reasons)}. preemption: "

    def unschedulable_condition() -> dict[str, Any] | None:
        conds = client.get(PODS, "big", ns).get("status", {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "PodScheduled" and c["status"] == "False"), None)

    # The scheduler may try the pod before its informer has all three nodes (the clean room once
    # saw "0/2 nodes"): each try writes the condition and an event, so wait for the try that saw
    # them all, then for that try's event.
    cond = wait_for(
        lambda: (c := unschedulable_condition()) is not None and c["message"].startswith(expected) and c,
        timeout=10,
        message=f"PodScheduled=False with {expected!r}",
    )
    assert cond["reason"] == "Unschedulable"
    wanted = ("FailedScheduling", cond["message"])

    def that_try() -> list[dict[str, Any]]:
        return [e for e in events_for(client, ns, "big") if (e["reason"], e["message"]) == wanted]

    ev = wait_for(that_try, message="the FailedScheduling event of that try")
    assert ev[0]["type"] == "Warning"
    assert node_of(client, ns, "big") == ""

    roomy = uniq("roomy")
    nodes.add(roomy, cpu="4", labels={"pool": ns})
    wait_for(lambda: node_of(client, ns, "big") == roomy, timeout=10, message="scheduled once capacity appeared")


def test_pod_naming_another_scheduler_is_left_alone(
    client: ApiClient, ns: str, nodes: HollowNodes, scheduler: Scheduler
) -> None:
    nodes.add(uniq("any"), cpu="4")
    mkpod(client, ns, "theirs", schedulerName="someone-else")
    mkpod(client, ns, "ours")
    wait_for(lambda: node_of(client, ns, "ours"), message="our pod bound")
    pod = client.get(PODS, "theirs", ns)
    assert not pod["spec"].get("nodeName")
    assert not (pod.get("status") or {}).get("conditions")
    assert events_for(client, ns, "theirs") == []


def test_taints_tolerations_selectors_and_anti_affinity_through_the_api(
    client: ApiClient, ns: str, nodes: HollowNodes, scheduler: Scheduler
) -> None:
    gpu = uniq("gpu")
    plain = [uniq("plain") for _ in range(2)]
    nodes.add(
        gpu, labels={"pool": ns, "accel": "gpu"}, taints=[{"key": "gpu", "value": "true", "effect": "NoSchedule"}]
    )
    for n in plain:
        nodes.add(n, labels={"pool": ns})
    # Tolerates the taint and selects the gpu label: only the gpu node fits.
    mkpod(
        client,
        ns,
        "trainer",
        nodeSelector={"accel": "gpu"},
        tolerations=[{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
    )
    # Required node affinity NotIn gpu, anti-affinity between the two replicas: one per plain node.
    anti = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "pool", "operator": "In", "values": [ns]},
                            {"key": "accel", "operator": "DoesNotExist"},
                        ]
                    }
                ]
            }
        },
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        },
    }
    for i in range(3):
        mkpod(client, ns, f"web-{i}", labels={"app": "web"}, affinity=anti)
    wait_for(lambda: node_of(client, ns, "trainer") == gpu, message="trainer on the gpu node")
    wait_for(lambda: sum(1 for i in range(3) if node_of(client, ns, f"web-{i}")) == 2, message="two web replicas bound")
    placed = sorted(node_of(client, ns, f"web-{i}") for i in range(3) if node_of(client, ns, f"web-{i}"))
    assert placed == sorted(plain)
    pending = next(f"web-{i}" for i in range(3) if not node_of(client, ns, f"web-{i}"))
    cond = wait_for(
        lambda: next(
            (c for c in client.get(PODS, pending, ns)["status"].get("conditions") or [] if c["type"] == "PodScheduled"),
            None,
        )
    )
    assert "2 node(s) didn't match pod anti-affinity rules" in cond["message"]


def test_pending_pods_are_retried_when_a_node_is_uncordoned_or_a_bound_pod_goes_away(
    client: ApiClient, ns: str, nodes: HollowNodes, scheduler: Scheduler
) -> None:
    cordoned = uniq("cordoned")
    nodes.add(cordoned, labels={"pool": ns}, unschedulable=True)
    mkpod(client, ns, "waits-for-uncordon", nodeSelector={"pool": ns})
    cond = wait_for(
        lambda: next(
            (c for c in client.get(PODS, "waits-for-uncordon", ns)["status"].get("conditions") or []),
            None,
        ),
        message="unschedulable condition",
    )
    assert "1 node(s) were unschedulable" in cond["message"]
    client.patch(NODES, cordoned, {"spec": {"unschedulable": None}})
    wait_for(lambda: node_of(client, ns, "waits-for-uncordon") == cordoned, message="scheduled after uncordon")

    full = uniq("full")
    nodes.add(full, pods="1", labels={"pool": f"{ns}-full"})
    mkpod(client, ns, "first", nodeSelector={"pool": f"{ns}-full"})
    wait_for(lambda: node_of(client, ns, "first") == full, message="first bound")
    mkpod(client, ns, "second", nodeSelector={"pool": f"{ns}-full"})
    wait_for(
        lambda: any(
            "1 Too many pods" in (c.get("message") or "")
            for c in client.get(PODS, "second", ns)["status"].get("conditions") or []
        ),
        message="second pending: Too many pods",
    )
    client.delete(PODS, "first", ns, grace_period_seconds=0)
    wait_for(lambda: node_of(client, ns, "second") == full, message="second bound once first is gone")
