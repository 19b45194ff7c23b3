"""Unit tests: victim selection, candidate ranking, eligibility, and the priority queue order."""

from __future__ import annotations

from typing import Any

from controlplane.scheduler import preemption
from controlplane.scheduler.algorithm import NodeInfo, Snapshot, pod_info
from controlplane.scheduler.queue import PriorityQueue


def node(name: str, cpu: str = "4", pods: str = "110") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": pods},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(name: str, cpu: str, prio: int = 0, start: str = "2026-01-01T00:00:00Z", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": name},
        "spec": {
            "priority": prio,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
            **spec,
        },
        "status": {"startTime": start},
    }


def info_with(n: dict[str, Any], *pods: dict[str, Any]) -> NodeInfo:
    info = NodeInfo(n)
    for p in pods:
        info.add(pod_info(p))
    return info


def names(victims: Any) -> list[str]:
    return sorted(v.name for v in victims)


def test_select_victims_evicts_only_what_is_needed_lowest_first() -> None:
    info = info_with(node("n1"), pod("a", "1", prio=1), pod("b", "1", prio=5), pod("c", "2", prio=200))
    high = pod_info(pod("h", "2", prio=100))
    # 4 cpu: c (200) stays; h needs 2 of a(1)+b(1): both must go
    assert names(preemption.select_victims(high, info)) == ["a", "b"]
    small = pod_info(pod("s", "1", prio=100))
    # one cpu is enough: the higher of the lower pods (b, 5) is reprieved, a (1) goes
    assert names(preemption.select_victims(small, info)) == ["a"]


def test_select_victims_none_when_higher_pods_fill_the_node() -> None:
    info = info_with(node("n1", cpu="2"), pod("big", "2", prio=1000), pod("low", "0", prio=0))
    assert preemption.select_victims(pod_info(pod("h", "1", prio=100)), info) is None
    assert preemption.select_victims(pod_info(pod("h", "1", prio=-5)), info_with(node("n2"), pod("x", "4"))) is None


def test_pick_node_prefers_least_important_victims() -> None:
    snap = Snapshot()
    for n, victim_prio in (("n1", 50), ("n2", 10), ("n3", 10)):
        snap.set_node(node(n, cpu="2"))
        snap.add_pod(pod_info(pod(f"v-{n}", "2", prio=victim_prio)), n)
    snap.add_pod(pod_info(pod("extra", "0", prio=10)), "n3")  # no cpu, but it is not a victim
    hi = pod_info(pod("h", "1", prio=100))
    chosen = preemption.preempt(hi, snap)
    assert chosen is not None and chosen.node == "n2" and names(chosen.victims) == ["v-n2"]


def test_preemption_policy_never_and_terminating_victims() -> None:
    snap = Snapshot()
    snap.set_node(node("n1", cpu="1"))
    snap.add_pod(pod_info(pod("low", "1", prio=0)), "n1")
    assert preemption.preempt(pod_info(pod("h", "1", prio=10, preemptionPolicy="Never")), snap) is None
    assert preemption.preempt(pod_info(pod("h", "1", prio=10)), snap) is not None
    terminating = pod("old", "1", prio=0)
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not preemption.eligible(pod_info(pod("h", "1", prio=10)), [terminating])
    assert preemption.eligible(pod_info(pod("h", "1", prio=10)), [pod("busy", "1", prio=50)])


def test_queue_hands_out_highest_priority_first_fifo_among_equals() -> None:
    prios = {"a": 0, "b": 10, "c": 10, "d": 5}
    q = PriorityQueue("t", lambda k: prios[k])
    for k in "abcd":
        q.add(k)
    got = [q.get(timeout=1) for _ in range(4)]
    assert got == ["b", "c", "d", "a"]
    assert q.get(timeout=0.01) is None
    q.shutdown()
