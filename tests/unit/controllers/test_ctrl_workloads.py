"""DaemonSet, StatefulSet and Job: pure planners (tables) and sync() against the fake API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.api.registry import DAEMONSETS, JOBS, NODES, PODS, STATEFULSETS
from controlplane.controllers.daemonset import (
    REVISION_LABEL,
    DaemonSetController,
    daemon_status,
    node_affinity_matches,
    node_should_run,
    plan_daemon,
)
from controlplane.controllers.job import JobController, plan_job
from controlplane.controllers.statefulset import StatefulSetController, plan_statefulset, sts_status
from controlplane.controllers.util import format_time, get_condition, template_hash
from tests.unit.controllers.fake import FakeCluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TEMPLATE: dict[str, Any] = {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}


def node(name: str, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def pod(
    name: str,
    node_name: str = "",
    *,
    phase: str = "Running",
    ready: bool = True,
    rev: str | None = None,
    created: int = 0,
    deleting: bool = False,
    restarts: int = 0,
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "uid": f"u-{name}",
        "labels": {"app": "d", REVISION_LABEL: rev if rev is not None else template_hash(TEMPLATE)},
        "creationTimestamp": format_time(T0 + timedelta(seconds=created)),
    }
    if deleting:
        md["deletionTimestamp"] = format_time(T0)
    return {
        "metadata": md,
        "spec": {"nodeName": node_name} if node_name else {},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "c", "restartCount": restarts}],
        },
    }


# --- DaemonSet -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pod_spec", "node_obj", "want"),
    [
        ({}, node("a"), True),
        ({"nodeSelector": {"disk": "ssd"}}, node("a", {"disk": "ssd"}), True),
        ({"nodeSelector": {"disk": "ssd"}}, node("a", {"disk": "hdd"}), False),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x", "y"]}]}
                            ]
                        }
                    }
                }
            },
            node("a", {"zone": "y"}),
            True,
        ),
        (
            {
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}
                            ]
                        }
                    }
                }
            },
            node("a"),
            False,
        ),
        ({}, node("a", taints=[{"key": "dedicated", "effect": "NoSchedule"}]), False),
        (
            {"tolerations": [{"key": "dedicated", "operator": "Exists"}]},
            node("a", taints=[{"key": "dedicated", "effect": "NoSchedule"}]),
            True,
        ),
        ({}, node("a", taints=[{"key": "x", "effect": "PreferNoSchedule"}]), True),
        # daemon pods tolerate cordoned and unreachable nodes
        (
            {},
            node(
                "a",
                taints=[
                    {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                ],
            ),
            True,
        ),
    ],
)
def test_node_should_run(pod_spec: dict[str, Any], node_obj: dict[str, Any], want: bool) -> None:
    assert node_should_run(pod_spec, node_obj) is want


def test_node_affinity_gt_lt() -> None:
    spec = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]
                }
            }
        }
    }
    assert node_affinity_matches(spec, node("a", {"cores": "8"}))
    assert not node_affinity_matches(spec, node("a", {"cores": "2"}))


def ds(max_unavailable: Any = 1, template: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "d", "namespace": "default", "uid": "ds-uid", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "d"}},
            "template": template or TEMPLATE,
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}},
            **spec,
        },
    }


def test_plan_daemon_create_delete_duplicates_and_gone_nodes() -> None:
    nodes = [node("a"), node("b"), node("c", {"skip": "1"})]
    d = ds(
        template={
            **TEMPLATE,
            "spec": {
                **TEMPLATE["spec"],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}]
                        }
                    }
                },
            },
        }
    )
    rev = template_hash(d["spec"]["template"])
    pods = [
        pod("a1", "a", created=0, rev=rev),
        pod("a2", "a", created=5, rev=rev),
        pod("c1", "c", rev=rev),
        pod("gone", "z", rev=rev),
        pod("failed", "b", phase="Failed", rev=rev),
    ]
    plan = plan_daemon(d, nodes, pods, T0)
    assert plan.create_on == ["b"]
    assert sorted(p["metadata"]["name"] for p in plan.delete) == ["a2", "c1", "failed", "gone"]
    assert plan.desired == 2


@pytest.mark.parametrize(("max_unavailable", "not_ready", "want"), [(1, 0, 1), (2, 0, 2), (1, 1, 1), ("50%", 0, 2)])
def test_plan_daemon_rolling_update_budget(max_unavailable: Any, not_ready: int, want: int) -> None:
    nodes = [node(n) for n in "abcd"]
    pods = [pod(f"p{n}", n, rev="old", ready=i >= not_ready) for i, n in enumerate("abcd")]
    plan = plan_daemon(ds(max_unavailable), nodes, pods, T0)
    assert plan.create_on == []
    # Unready outdated pods are always replaced; available ones only within the budget.
    assert len(plan.delete) == max(want, not_ready)


def test_daemon_status() -> None:
    nodes = [node("a"), node("b"), node("c", taints=[{"key": "k", "effect": "NoSchedule"}])]
    pods = [pod("pa", "a"), pod("pb", "b", ready=False), pod("pc", "c")]
    st = daemon_status(ds(), nodes, pods, T0)
    assert st == {
        "desiredNumberScheduled": 2,
        "currentNumberScheduled": 2,
        "numberMisscheduled": 1,
        "numberReady": 1,
        "numberAvailable": 1,
        "numberUnavailable": 1,
        "updatedNumberScheduled": 2,
        "observedGeneration": 1,
    }


def test_daemonset_sync_places_pods_by_node_name(cluster: FakeCluster) -> None:
    ctl = DaemonSetController(cluster.context())
    for n in ("a", "b"):
        cluster.seed(NODES, node(n))
    cluster.seed(DAEMONSETS, ds())
    ctl.sync("default/d")
    pods = cluster.all(PODS)
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["a", "b"]
    assert all(p["metadata"]["labels"][REVISION_LABEL] == template_hash(TEMPLATE) for p in pods)
    assert any(t["key"] == "node.kubernetes.io/unreachable" for t in pods[0]["spec"]["tolerations"])
    ctl.sync("default/d")
    assert len(cluster.all(PODS)) == 2, "idempotent"
    cluster.seed(NODES, node("c"))
    ctl.sync("default/d")
    assert len(cluster.all(PODS)) == 3


# --- StatefulSet ----------------------------------------------------------------------------------


def sts(replicas: int = 3, policy: str = "OrderedReady", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default", "uid": "sts-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "d"}},
            "template": TEMPLATE,
            **spec,
        },
    }


def spod(i: int, **kw: Any) -> dict[str, Any]:
    return pod(f"db-{i}", "n", **kw)


@pytest.mark.parametrize(
    ("policy", "replicas", "pods", "create", "delete"),
    [
        ("OrderedReady", 3, [], [0], []),
        ("OrderedReady", 3, [spod(0)], [1], []),
        ("OrderedReady", 3, [spod(0, ready=False)], [], []),  # wait for db-0 to be Ready
        ("OrderedReady", 3, [spod(0), spod(2)], [1], []),  # fill the hole first
        ("Parallel", 3, [], [0, 1, 2], []),
        ("OrderedReady", 1, [spod(0), spod(1), spod(2)], [], ["db-2"]),  # highest first, one at a time
        ("OrderedReady", 1, [spod(0), spod(1), spod(2, deleting=True)], [], []),  # wait for db-2 to go
        ("OrderedReady", 1, [spod(0, ready=False), spod(1)], [], []),  # unhealthy: no scale-down
        ("Parallel", 1, [spod(0), spod(1), spod(2)], [], ["db-2", "db-1"]),
        ("OrderedReady", 2, [spod(0, phase="Failed"), spod(1)], [], ["db-0"]),
        ("OrderedReady", 3, [spod(0, rev="old"), spod(1, rev="old"), spod(2, rev="old")], [], ["db-2"]),
        ("OrderedReady", 3, [spod(0, rev="old"), spod(1, rev="old"), spod(2)], [], ["db-1"]),
    ],
)
def test_plan_statefulset(
    policy: str, replicas: int, pods: list[dict[str, Any]], create: list[int], delete: list[str]
) -> None:
    plan = plan_statefulset(sts(replicas, policy), pods)
    assert plan.create == create
    assert [p["metadata"]["name"] for p in plan.delete] == delete


def test_statefulset_partition_and_on_delete() -> None:
    pods = [spod(0, rev="old"), spod(1, rev="old"), spod(2)]
    part = sts(3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    assert plan_statefulset(part, pods).delete == []
    assert plan_statefulset(sts(3, updateStrategy={"type": "OnDelete"}), pods).delete == []


def test_statefulset_sync_names_hostnames_and_status(cluster: FakeCluster) -> None:
    ctl = StatefulSetController(cluster.context())
    cluster.seed(STATEFULSETS, sts(2))
    ctl.sync("default/db")
    assert [p["metadata"]["name"] for p in cluster.all(PODS)] == ["db-0"]
    p0 = cluster.obj(PODS, "db-0")
    assert p0 is not None and p0["spec"]["hostname"] == "db-0" and p0["spec"]["subdomain"] == "db"
    assert p0["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"
    ctl.sync("default/db")
    assert len(cluster.all(PODS)) == 1, "db-1 waits for db-0 to be Ready"
    cluster.set_pod_state("db-0", node="n")
    ctl.sync("default/db")
    cluster.set_pod_state("db-1", node="n")
    ctl.sync("default/db")
    st = cluster.obj(STATEFULSETS, "db")["status"]  # type: ignore[index]
    assert st["replicas"] == 2 and st["readyReplicas"] == 2 and st["updatedReplicas"] == 2
    assert st["currentRevision"] == st["updateRevision"]


def test_sts_status_revisions() -> None:
    st = sts_status(sts(2), [spod(0, rev="old"), spod(1)], T0)
    assert st["updatedReplicas"] == 1 and st["updateRevision"] == f"db-{template_hash(TEMPLATE)}"


# --- Job ------------------------------------------------------------------------------------------


def job(**spec: Any) -> dict[str, Any]:
    tmpl = {
        "metadata": {"labels": {"app": "d"}},
        "spec": {"restartPolicy": spec.pop("restart", "Never"), "containers": [{"name": "c", "image": "x"}]},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "default", "uid": "job-uid", "generation": 1},
        "spec": {"template": tmpl, **spec},
    }


def jp(name: str, phase: str, restarts: int = 0) -> dict[str, Any]:
    return pod(name, "n", phase=phase, restarts=restarts)


@pytest.mark.parametrize(
    ("spec", "pods", "create", "n_delete", "condition"),
    [
        ({"completions": 3, "parallelism": 2}, [], 2, 0, None),
        (
            {"completions": 3, "parallelism": 2},
            [jp("a", "Succeeded"), jp("b", "Succeeded"), jp("c", "Running")],
            0,
            0,
            None,
        ),
        ({"completions": 3, "parallelism": 2}, [jp("a", "Succeeded"), jp("b", "Succeeded")], 1, 0, None),
        ({"completions": 2}, [jp("a", "Succeeded"), jp("b", "Succeeded")], 0, 0, ("Complete", "CompletionsReached")),
        ({"parallelism": 2}, [jp("a", "Succeeded"), jp("b", "Running")], 0, 0, None),  # work queue: no new pods
        ({"parallelism": 2}, [jp("a", "Succeeded")], 0, 0, ("Complete", "CompletionsReached")),
        (
            {"completions": 1, "backoffLimit": 1},
            [jp("a", "Failed"), jp("b", "Failed"), jp("c", "Running")],
            0,
            1,
            ("Failed", "BackoffLimitExceeded"),
        ),
        ({"completions": 1, "backoffLimit": 1}, [jp("a", "Failed")], 1, 0, None),
        (
            {"completions": 1, "backoffLimit": 2, "restart": "OnFailure"},
            [jp("a", "Running", restarts=3)],
            0,
            1,
            ("Failed", "BackoffLimitExceeded"),
        ),
        ({"completions": 3, "parallelism": 3, "suspend": True}, [jp("a", "Running")], 0, 1, None),
    ],
)
def test_plan_job(
    spec: dict[str, Any], pods: list[dict[str, Any]], create: int, n_delete: int, condition: tuple[str, str] | None
) -> None:
    plan = plan_job(job(**spec), pods, T0)
    assert plan.create == create
    assert len(plan.delete) == n_delete
    conds = plan.status.get("conditions") or []
    if condition is None:
        assert conds == []
    else:
        c = get_condition({"status": plan.status}, condition[0])
        assert c is not None and c["status"] == "True" and c["reason"] == condition[1]


def test_job_deadline() -> None:
    j = job(completions=1, activeDeadlineSeconds=10)
    j["status"] = {"startTime": format_time(T0)}
    plan = plan_job(j, [jp("a", "Running")], T0 + timedelta(seconds=11))
    assert get_condition({"status": plan.status}, "Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]
    assert len(plan.delete) == 1


def test_job_sync_labels_and_completion(cluster: FakeCluster) -> None:
    ctl = JobController(cluster.context())
    cluster.seed(JOBS, job(completions=2, parallelism=2))
    ctl.sync("default/j")
    pods = cluster.all(PODS)
    assert len(pods) == 2
    uid = cluster.obj(JOBS, "j")["metadata"]["uid"]  # type: ignore[index]
    assert all(
        p["metadata"]["labels"]["job-name"] == "j" and p["metadata"]["labels"]["controller-uid"] == uid for p in pods
    )
    assert all(p["metadata"]["generateName"] == "j-" for p in pods)
    for p in pods:
        cluster.set_pod_state(p["metadata"]["name"], phase="Succeeded", ready=False, node="n")
    ctl.sync("default/j")
    st = cluster.obj(JOBS, "j")["status"]  # type: ignore[index]
    assert st["succeeded"] == 2 and st["active"] == 0 and "completionTime" in st
    assert get_condition({"status": st}, "Complete")["status"] == "True"  # type: ignore[index]
    ctl.sync("default/j")
    assert len(cluster.all(PODS)) == 2, "a complete job creates nothing more"


def test_daemonset_ignores_heartbeats_but_follows_labels(cluster: FakeCluster) -> None:
    DaemonSetController(cluster.context())
    cluster.seed(NODES, node("a"))
    cluster.seed(DAEMONSETS, ds())
    q = cluster.queues["daemonset"]
    q.drain()
    n = cluster.obj(NODES, "a", None)
    assert n is not None
    n["status"] = {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "now"}]}
    cluster.update_status(NODES, n)
    assert q.drain() == []
    n = cluster.obj(NODES, "a", None)
    assert n is not None
    n["metadata"]["labels"] = {"disk": "ssd"}
    cluster.update(NODES, n)
    assert q.drain() == ["default/d"]
