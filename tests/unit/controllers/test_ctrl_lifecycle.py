"""Garbage collector, namespace deletion, default ServiceAccount and pod GC against the fake API."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api.registry import DEPLOYMENTS, NAMESPACES, NODES, PODS, REPLICASETS, SERVICEACCOUNTS
from controlplane.client.controller import TemporaryError
from controlplane.controllers.garbagecollector import GarbageCollector
from controlplane.controllers.namespace import NamespaceController
from controlplane.controllers.podgc import PodGCController, terminated_to_delete
from controlplane.controllers.serviceaccount import ServiceAccountController
from controlplane.controllers.util import format_time, new_controller_ref
from tests.unit.controllers.fake import FakeCluster


def drain(ctl: Any, cluster: FakeCluster, rounds: int = 20) -> None:
    q = cluster.queues[ctl.name]
    for _ in range(rounds):
        keys = q.drain() + [k for k, _ in q.after]
        q.after.clear()
        if not keys:
            return
        for k in keys:
            try:
                ctl.sync(k)
            except TemporaryError:
                q.add(k)


def chain(cluster: FakeCluster, block: bool = True) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    d = cluster.seed(DEPLOYMENTS, {"metadata": {"name": "web"}, "spec": {}})
    rs = cluster.seed(
        REPLICASETS, {"metadata": {"name": "web-1", "ownerReferences": [new_controller_ref(d, block)]}, "spec": {}}
    )
    pods = [
        cluster.seed(
            PODS, {"metadata": {"name": f"web-1-{i}", "ownerReferences": [new_controller_ref(rs, block)]}, "spec": {}}
        )
        for i in range(2)
    ]
    return d, rs, pods


def test_background_cascade(cluster: FakeCluster) -> None:
    gc = GarbageCollector(cluster.context())
    chain(cluster)
    drain(gc, cluster)
    assert len(cluster.all(PODS)) == 2, "owners present: nothing deleted"
    cluster.delete(DEPLOYMENTS, "web", "default", propagation_policy="Background")
    drain(gc, cluster)
    assert cluster.all(REPLICASETS) == [] and cluster.all(PODS) == []


def test_orphan_keeps_dependents_without_the_reference(cluster: FakeCluster) -> None:
    gc = GarbageCollector(cluster.context())
    chain(cluster)
    cluster.delete(DEPLOYMENTS, "web", "default", propagation_policy="Orphan")
    assert cluster.obj(DEPLOYMENTS, "web") is not None, "held by the orphan finalizer"
    drain(gc, cluster)
    assert cluster.obj(DEPLOYMENTS, "web") is None
    rs = cluster.obj(REPLICASETS, "web-1")
    assert rs is not None and not rs["metadata"].get("ownerReferences")
    assert len(cluster.all(PODS)) == 2


def test_foreground_waits_for_blocking_dependents(cluster: FakeCluster) -> None:
    gc = GarbageCollector(cluster.context())
    chain(cluster)
    cluster.delete(DEPLOYMENTS, "web", "default", propagation_policy="Foreground")
    drain(gc, cluster)
    assert cluster.all(PODS) == [] and cluster.all(REPLICASETS) == [] and cluster.all(DEPLOYMENTS) == []


def test_some_owners_gone_only_drops_those_references(cluster: FakeCluster) -> None:
    gc = GarbageCollector(cluster.context())
    a = cluster.seed(DEPLOYMENTS, {"metadata": {"name": "a"}, "spec": {}})
    b = cluster.seed(DEPLOYMENTS, {"metadata": {"name": "b"}, "spec": {}})
    ref_b = {**new_controller_ref(b), "controller": False}
    cluster.seed(PODS, {"metadata": {"name": "p", "ownerReferences": [new_controller_ref(a), ref_b]}, "spec": {}})
    cluster.delete(DEPLOYMENTS, "a", "default")
    drain(gc, cluster)
    p = cluster.obj(PODS, "p")
    assert p is not None and [r["name"] for r in p["metadata"]["ownerReferences"]] == ["b"]


def test_owner_with_same_name_but_new_uid_counts_as_gone(cluster: FakeCluster) -> None:
    gc = GarbageCollector(cluster.context())
    chain(cluster)
    cluster.delete(REPLICASETS, "web-1", "default")
    cluster.seed(REPLICASETS, {"metadata": {"name": "web-1"}, "spec": {}})  # new uid
    drain(gc, cluster)
    assert cluster.all(PODS) == []


def test_namespace_deletion_empties_then_finalizes(cluster: FakeCluster) -> None:
    ctl = NamespaceController(cluster.context())
    cluster.seed(NAMESPACES, {"metadata": {"name": "default"}, "spec": {"finalizers": ["kubernetes"]}})
    cluster.seed(NAMESPACES, {"metadata": {"name": "doomed"}, "spec": {"finalizers": ["kubernetes"]}})
    cluster.seed(PODS, {"metadata": {"name": "p", "namespace": "doomed"}, "spec": {}})
    cluster.seed(DEPLOYMENTS, {"metadata": {"name": "d", "namespace": "doomed"}, "spec": {}})
    cluster.seed(PODS, {"metadata": {"name": "other", "namespace": "default"}, "spec": {}})
    ctl.sync("doomed")  # not terminating: nothing happens
    assert len(cluster.all(PODS)) == 2
    ns = cluster.obj(NAMESPACES, "doomed", None)
    assert ns is not None
    ns["metadata"]["deletionTimestamp"] = format_time(cluster.clock.now())
    ns["status"] = {"phase": "Terminating"}
    cluster.objects[NAMESPACES]["doomed"] = ns
    with pytest.raises(TemporaryError):
        ctl.sync("doomed")
    assert [p["metadata"]["name"] for p in cluster.all(PODS)] == ["other"]
    ctl.sync("doomed")
    assert cluster.obj(NAMESPACES, "doomed", None) is None
    assert cluster.obj(NAMESPACES, "default", None) is not None


def test_default_serviceaccount(cluster: FakeCluster) -> None:
    ctl = ServiceAccountController(cluster.context())
    cluster.seed(NAMESPACES, {"metadata": {"name": "team"}})
    ctl.sync("team")
    ctl.sync("team")
    sas = cluster.all(SERVICEACCOUNTS)
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in sas] == [("team", "default")]
    cluster.delete(SERVICEACCOUNTS, "default", "team")
    assert cluster.queues["serviceaccount"].drain()[-1] == "team"
    ctl.sync("team")
    assert len(cluster.all(SERVICEACCOUNTS)) == 1


def test_podgc_deletes_pods_on_missing_nodes(cluster: FakeCluster) -> None:
    ctl = PodGCController(cluster.context())
    cluster.seed(NODES, {"metadata": {"name": "alive"}})
    cluster.seed(PODS, {"metadata": {"name": "ok"}, "spec": {"nodeName": "alive"}})
    cluster.seed(PODS, {"metadata": {"name": "stranded"}, "spec": {"nodeName": "ghost"}})
    cluster.seed(PODS, {"metadata": {"name": "pending"}, "spec": {}})
    for k in ("default/ok", "default/stranded", "default/pending"):
        ctl.sync(k)
    assert sorted(p["metadata"]["name"] for p in cluster.all(PODS)) == ["ok", "pending"]


def test_terminated_threshold() -> None:
    pods = [
        {
            "metadata": {"name": f"p{i}", "creationTimestamp": f"2026-01-01T00:00:0{i}Z"},
            "status": {"phase": "Succeeded" if i % 2 else "Running"},
        }
        for i in range(8)
    ]
    assert [p["metadata"]["name"] for p in terminated_to_delete(pods, 2)] == ["p1", "p3"]
    assert terminated_to_delete(pods, 0) == []
