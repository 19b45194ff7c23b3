"""ReplicaSet: the pure planner (table-driven) and sync() against the stateful fake API.

Conventions: namespace ``default``; pods are named after their role in the table (``u`` unscheduled,
``p`` pending, ``nr`` not ready, ``r`` ready); times are offsets in seconds from the fake clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.api.registry import PODS, REPLICASETS
from controlplane.controllers.replicaset import (
    ReplicaSetController,
    compute_rs_status,
    deletion_rank,
    plan_claims,
    plan_replicas,
    pod_from_template,
)
from controlplane.controllers.util import format_time, is_controlled_by
from tests.unit.controllers.fake import FakeCluster

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pod(
    name: str,
    *,
    node: str = "",
    phase: str = "Pending",
    ready: bool = False,
    created: int = 0,
    ready_at: int | None = None,
    restarts: int = 0,
    labels: dict[str, str] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "creationTimestamp": format_time(T0 + timedelta(seconds=created)),
        "labels": labels if labels is not None else {"app": "web"},
    }
    if deleting:
        md["deletionTimestamp"] = format_time(T0)
    st: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": restarts}]}
    if ready or ready_at is not None:
        st["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "lastTransitionTime": format_time(T0 + timedelta(seconds=ready_at or 0)),
            }
        ]
    return {"metadata": md, "spec": {"nodeName": node} if node else {}, "status": st}


def rs_obj(replicas: int = 3, name: str = "web", min_ready: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default", "uid": "rs-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "hello"}]},
            },
        },
    }


@pytest.mark.parametrize(
    ("desired", "have", "create", "delete"),
    [
        (3, 0, 3, []),
        (3, 3, 0, []),
        (0, 2, 0, ["a", "b"]),
        (1, 3, 0, ["b", "c"]),  # ranked: unscheduled and pending go first
        (5, 2, 3, []),
    ],
)
def test_plan_replicas_counts(desired: int, have: int, create: int, delete: list[str]) -> None:
    pods = [
        pod("a", node="n1", phase="Running", ready=True, created=0, ready_at=1),
        pod("b", node="n1", phase="Pending", created=1),
        pod("c", created=2),
    ][:have]
    plan = plan_replicas(desired, pods)
    assert plan.create == create
    assert sorted(p["metadata"]["name"] for p in plan.delete) == sorted(delete)


def test_plan_replicas_respects_burst() -> None:
    assert plan_replicas(1000, [], burst=500).create == 500


def test_deletion_rank_orders_as_kubernetes() -> None:
    pods = [
        pod("ready-old", node="n", phase="Running", ready=True, ready_at=10, created=0),
        pod("ready-new", node="n", phase="Running", ready=True, ready_at=50, created=1),
        pod("notready", node="n", phase="Running", ready=False, created=2),
        pod("pending", node="n", phase="Pending", created=3),
        pod("unknown", node="n", phase="Unknown", created=4),
        pod("unscheduled-old", created=5),
        pod("unscheduled-new", created=6),
        pod("restarty", node="n", phase="Running", ready=True, ready_at=10, created=0, restarts=5),
    ]
    ranked = [p["metadata"]["name"] for p in sorted(pods, key=deletion_rank)]
    assert ranked == [
        "unscheduled-new",
        "unscheduled-old",
        "pending",
        "unknown",
        "notready",
        "ready-new",
        "restarty",
        "ready-old",
    ]


def test_status_counts_ready_available_and_labels() -> None:
    rs = rs_obj(min_ready=30)
    pods = [
        pod("a", node="n", phase="Running", ready=True, ready_at=0),  # available (ready 60 s)
        pod("b", node="n", phase="Running", ready=True, ready_at=50),  # ready, not yet available
        pod("c", node="n", phase="Running"),  # not ready
        pod("d", labels={"app": "web", "x": "y"}),  # fully labelled too
        pod("e", labels={}, phase="Running"),  # not fully labelled
        pod("f", phase="Succeeded"),  # inactive: not counted
        pod("g", deleting=True),  # inactive: not counted
    ]
    st = compute_rs_status(rs, pods, T0 + timedelta(seconds=60))
    assert st == {
        "replicas": 5,
        "fullyLabeledReplicas": 4,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "observedGeneration": 2,
    }


def test_claims_adopt_release_and_ignore_others() -> None:
    rs = rs_obj()
    mine = pod("mine")
    mine["metadata"]["ownerReferences"] = [{"uid": "rs-uid", "controller": True, "kind": "ReplicaSet", "name": "web"}]
    mine_mismatch = pod("gone-astray", labels={"app": "other"})
    mine_mismatch["metadata"]["ownerReferences"] = [{"uid": "rs-uid", "controller": True}]
    theirs = pod("theirs")
    theirs["metadata"]["ownerReferences"] = [{"uid": "other", "controller": True}]
    orphan = pod("orphan")
    orphan_dying = pod("orphan-dying", deleting=True)
    stranger = pod("stranger", labels={"app": "db"})
    c = plan_claims(rs, rs["spec"]["selector"], [mine, mine_mismatch, theirs, orphan, orphan_dying, stranger])
    assert [p["metadata"]["name"] for p in c.owned] == ["mine"]
    assert [p["metadata"]["name"] for p in c.adopt] == ["orphan"]
    assert [p["metadata"]["name"] for p in c.release] == ["gone-astray"]


def test_pod_from_template_has_owner_and_generate_name() -> None:
    rs = rs_obj()
    p = pod_from_template(rs["spec"]["template"], rs)
    assert p["metadata"]["generateName"] == "web-"
    assert p["metadata"]["labels"] == {"app": "web"}
    assert is_controlled_by(p, rs)
    assert p["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True


# --- sync against the fake API ---------------------------------------------------------------


def make(cluster: FakeCluster, replicas: int = 3) -> tuple[ReplicaSetController, dict[str, Any]]:
    ctl = ReplicaSetController(cluster.context())
    rs = cluster.seed(REPLICASETS, rs_obj(replicas))
    return ctl, rs


def owned(cluster: FakeCluster, rs: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in cluster.all(PODS) if is_controlled_by(p, rs) and not p["metadata"].get("deletionTimestamp")]


def test_sync_creates_then_waits_for_expectations(cluster: FakeCluster) -> None:
    ctl, rs = make(cluster)
    # Hide pod events from the controller: expectations must stop a second burst.
    handlers = cluster.informer(PODS).handlers
    saved = list(handlers)
    handlers.clear()
    ctl.sync("default/web")
    assert len(owned(cluster, rs)) == 3
    ctl.sync("default/web")
    assert len(owned(cluster, rs)) == 3, "expectations must prevent a duplicate burst"
    handlers.extend(saved)
    for p in owned(cluster, rs):  # the informer "sees" them now
        ctl._pod_added(p)
    ctl.sync("default/web")
    assert len(owned(cluster, rs)) == 3


def test_sync_is_idempotent_and_writes_status(cluster: FakeCluster) -> None:
    ctl, rs = make(cluster)
    ctl.sync("default/web")
    for i, p in enumerate(owned(cluster, rs)):
        cluster.set_pod_state(p["metadata"]["name"], node=f"n{i}", ready=True)
    ctl.sync("default/web")
    calls_before = len(cluster.calls)
    ctl.sync("default/web")
    assert len(cluster.calls) == calls_before, "a converged sync makes no calls"
    st = cluster.obj(REPLICASETS, "web")["status"]  # type: ignore[index]
    assert st["replicas"] == 3 and st["readyReplicas"] == 3 and st["availableReplicas"] == 3
    assert st["observedGeneration"] == 2


def test_scale_down_deletes_least_valuable(cluster: FakeCluster) -> None:
    ctl, rs = make(cluster)
    ctl.sync("default/web")
    names = sorted(p["metadata"]["name"] for p in owned(cluster, rs))
    cluster.set_pod_state(names[0], node="n1", ready=True)
    cluster.set_pod_state(names[1], node="n1", ready=False)
    r = cluster.obj(REPLICASETS, "web")
    r["spec"]["replicas"] = 1  # type: ignore[index]
    cluster.update(REPLICASETS, r)  # type: ignore[arg-type]
    ctl.sync("default/web")
    assert [p["metadata"]["name"] for p in owned(cluster, rs)] == [names[0]]


def test_adopts_orphans_instead_of_creating(cluster: FakeCluster) -> None:
    ctl = ReplicaSetController(cluster.context())
    cluster.seed(PODS, pod("orphan-1", node="n", phase="Running", ready=True))
    rs = cluster.seed(REPLICASETS, rs_obj(2))
    ctl.sync("default/web")
    pods = owned(cluster, rs)
    assert len(pods) == 2 and "orphan-1" in {p["metadata"]["name"] for p in pods}


def test_failed_create_lowers_expectations_and_raises(cluster: FakeCluster) -> None:
    ctl, rs = make(cluster)
    cluster.fail_next["create"] = errors.ApiError("boom")
    with pytest.raises(errors.ApiError):
        ctl.sync("default/web")
    assert ctl.expectations.satisfied("default/web")
    ctl.sync("default/web")
    assert len(owned(cluster, rs)) == 3


def test_deleted_rs_forgets_expectations(cluster: FakeCluster) -> None:
    ctl, _ = make(cluster)
    ctl.expectations.expect("default/web", creates=5)
    cluster.delete(REPLICASETS, "web", "default")
    ctl.sync("default/web")
    assert ctl.expectations.satisfied("default/web")


def test_pod_events_enqueue_owner(cluster: FakeCluster) -> None:
    ctl, _ = make(cluster)
    ctl.sync("default/web")
    q = cluster.queues["replicaset"]
    assert "default/web" in q.drain()
    p = cluster.all(PODS)[0]
    cluster.delete(PODS, p["metadata"]["name"], "default")
    assert q.drain() == ["default/web"]
