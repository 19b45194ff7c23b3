"""ResourceQuota scopes (Terminating, BestEffort, PriorityClass, …) and quota on update."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from controlplane.api import quota, registry
from controlplane.controllers.resourcequota import quota_status


def pod(name: str, *, cpu: str | None = None, deadline: int | None = None, pc: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "busybox"}
    if cpu:
        container["resources"] = {"requests": {"cpu": cpu}}
    spec: dict[str, Any] = {"containers": [container]}
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    if pc:
        spec["priorityClassName"] = pc
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec, "status": {"phase": "Running"}}


def q(name: str, hard: dict[str, str], scopes: list[str] | None = None, **selector: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"hard": hard}
    if scopes:
        spec["scopes"] = scopes
    if selector:
        spec["scopeSelector"] = {"matchExpressions": [selector]}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def used_from(existing: list[dict[str, Any]], res: registry.Resource = registry.PODS) -> quota.UsedOf:
    def used_of(names: Any, qq: Any) -> quota.Usage:
        return quota.namespace_usage(res, existing, names, qq)

    return used_of


def test_terminating_and_best_effort_scopes_select_pods() -> None:
    terminating = q("t", {"pods": "1"}, ["Terminating"])
    assert quota.matches(registry.PODS, terminating, pod("a", deadline=30))
    assert not quota.matches(registry.PODS, terminating, pod("a"))
    assert quota.matches(registry.PODS, q("n", {"pods": "1"}, ["NotTerminating"]), pod("a"))
    best = q("b", {"pods": "1"}, ["BestEffort"])
    assert quota.matches(registry.PODS, best, pod("a"))
    assert not quota.matches(registry.PODS, best, pod("a", cpu="100m"))
    assert quota.matches(registry.PODS, q("nb", {"pods": "1"}, ["NotBestEffort"]), pod("a", cpu="100m"))
    # two scopes: both must match
    both = q("tb", {"pods": "1"}, ["Terminating", "BestEffort"])
    assert quota.matches(registry.PODS, both, pod("a", deadline=5))
    assert not quota.matches(registry.PODS, both, pod("a", deadline=5, cpu="1"))
    # scopes never select other kinds
    assert not quota.matches(registry.SERVICES, best, {"metadata": {"name": "s"}})


def test_priority_class_scope_selector() -> None:
    high = q("h", {"pods": "1"}, scopeName="PriorityClass", operator="In", values=["high"])
    assert quota.matches(registry.PODS, high, pod("a", pc="high"))
    assert not quota.matches(registry.PODS, high, pod("a", pc="low"))
    assert not quota.matches(registry.PODS, high, pod("a"))
    not_high = q("nh", {"pods": "1"}, scopeName="PriorityClass", operator="NotIn", values=["high"])
    assert quota.matches(registry.PODS, not_high, pod("a"))
    exists = q("e", {"pods": "1"}, scopeName="PriorityClass", operator="Exists")
    assert quota.matches(registry.PODS, exists, pod("a", pc="low")) and not quota.matches(
        registry.PODS, exists, pod("a")
    )


def test_scoped_quota_counts_and_refuses_only_matching_pods() -> None:
    existing = [pod("a"), pod("b", cpu="100m")]  # one BestEffort pod, one not
    best = q("be", {"pods": "1"}, ["BestEffort"])
    msg = quota.check(registry.PODS, pod("c"), [best], used_from(existing))
    assert msg == "exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1"
    assert quota.check(registry.PODS, pod("c", cpu="50m"), [best], used_from(existing)) is None
    st = quota_status(best, {registry.PODS: existing})
    assert st["used"] == {"pods": "1"}


def test_service_turned_nodeport_is_charged_on_update() -> None:
    old = {"metadata": {"name": "s", "namespace": "ns"}, "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    new = {"metadata": {"name": "s", "namespace": "ns"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    assert quota.requested_usage(registry.SERVICES, new, old) == {"services.nodeports": Decimal(1)}
    nodeports = q("np", {"services.nodeports": "0"})
    msg = quota.check(registry.SERVICES, new, [nodeports], used_from([old], registry.SERVICES), old)
    assert msg == (
        "exceeded quota: np, requested: services.nodeports=1, used: services.nodeports=0, limited: services.nodeports=0"
    )
    # an update that adds nothing is never refused, even over a full quota
    assert quota.check(registry.SERVICES, old, [q("s", {"services": "0"})], used_from([old]), old) is None


def test_pod_requests_growing_on_update_are_charged() -> None:
    old, new = pod("a", cpu="500m"), pod("a", cpu="800m")
    assert quota.requested_usage(registry.PODS, new, old) == {"requests.cpu": Decimal("0.3"), "cpu": Decimal("0.3")}
    cq = q("cq", {"requests.cpu": "700m"})
    msg = quota.check(registry.PODS, new, [cq], used_from([old]), old)
    assert (
        msg == "exceeded quota: cq, requested: requests.cpu=300m, used: requests.cpu=500m, limited: requests.cpu=700m"
    )
    assert quota.requested_usage(registry.PODS, old, new) == {}
