"""Deployment: fencepost rounding, one-step rollout planning, status conditions, and a simulated
rollout (Deployment + ReplicaSet controllers + a fake kubelet over the stateful fake API) that
checks the availability invariant at every step."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from controlplane.api.registry import DEPLOYMENTS, PODS, REPLICASETS
from controlplane.controllers.deployment import (
    HASH_LABEL,
    REVISION,
    DeploymentController,
    compute_status,
    fenceposts,
    history_to_delete,
    new_rs_target,
    old_scale_down,
    plan_rollout,
)
from controlplane.controllers.replicaset import ReplicaSetController
from controlplane.controllers.util import get_condition, is_pod_ready, template_hash
from tests.unit.controllers.fake import FakeCluster


def deploy(
    replicas: int = 3,
    surge: Any = 1,
    unavailable: Any = 1,
    image: str = "v1",
    strategy: str = "RollingUpdate",
    **spec: Any,
) -> dict[str, Any]:
    st: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        st["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": st,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            **spec,
        },
    }


def rs(
    name: str,
    replicas: int,
    available: int,
    image: str = "v1",
    revision: int = 1,
    created: int = 0,
    status_replicas: int | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "annotations": {REVISION: str(revision)},
            "creationTimestamp": f"2026-01-01T00:00:{created:02d}Z",
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": "web", HASH_LABEL: name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
        "status": {
            "replicas": replicas if status_replicas is None else status_replicas,
            "availableReplicas": available,
            "readyReplicas": available,
        },
    }


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "want"),
    [
        (10, "25%", "25%", (3, 2)),  # surge rounds up, unavailable down
        (4, "25%", "25%", (1, 1)),
        (1, "25%", "25%", (1, 0)),
        (3, 0, 0, (0, 1)),  # both zero → one unavailable allowed
        (3, "0%", "0%", (0, 1)),
        (5, 2, 1, (2, 1)),
        (3, 1, 5, (1, 3)),  # unavailable capped at replicas
        (10, "33%", "33%", (4, 3)),
    ],
)
def test_fenceposts(replicas: int, surge: Any, unavailable: Any, want: tuple[int, int]) -> None:
    assert fenceposts(deploy(replicas, surge, unavailable)) == want


@pytest.mark.parametrize(
    ("replicas", "surge", "new", "old", "want"),
    [
        (3, 1, 0, 3, 1),  # room for one surge pod
        (3, 1, 1, 3, 1),  # at max total: wait
        (3, 1, 1, 2, 2),
        (3, 2, 0, 3, 2),
        (3, 1, 4, 0, 3),  # above replicas: scale down to replicas
        (3, 5, 0, 3, 3),  # never above replicas
    ],
)
def test_new_rs_target(replicas: int, surge: int, new: int, old: int, want: int) -> None:
    d = deploy(replicas, surge, 1)
    new_rs = rs("new", new, 0, image="v1")
    old_rs = rs("old", old, old, image="v0")
    assert new_rs_target(d, [new_rs, old_rs], new_rs) == want


@pytest.mark.parametrize(
    ("old_replicas", "old_available", "new_replicas", "new_available", "want"),
    [
        (3, 3, 1, 0, {"old": 2}),  # min available 2: one old may go
        (2, 2, 1, 0, {}),  # new still unavailable: hold
        (2, 2, 2, 1, {"old": 1}),
        (3, 1, 1, 0, {"old": 2}),  # unhealthy old pods go first: 2 not available, budget 4-2-1=1
        (1, 1, 3, 3, {"old": 0}),
        (0, 0, 3, 3, {}),
    ],
)
def test_old_scale_down(
    old_replicas: int, old_available: int, new_replicas: int, new_available: int, want: dict[str, int]
) -> None:
    d = deploy(3, 1, 1)
    new_rs = rs("new", new_replicas, new_available)
    old_rs = rs("old", old_replicas, old_available, image="v0")
    assert old_scale_down(d, [new_rs, old_rs], [old_rs], new_rs) == want


def test_plan_creates_new_rs_with_hash_and_next_revision() -> None:
    d = deploy(3, 1, 1, image="v2")
    plan = plan_rollout(d, [rs("web-old", 3, 3, image="v1", revision=4)], old_pods_running=True)
    assert plan.create is not None
    h = template_hash(d["spec"]["template"])
    assert plan.create["metadata"]["name"] == f"web-{h}"
    assert plan.create["metadata"]["annotations"][REVISION] == "5"
    assert plan.create["spec"]["replicas"] == 1
    assert plan.create["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    assert plan.create["spec"]["template"]["metadata"]["labels"][HASH_LABEL] == h
    assert plan.create["metadata"]["ownerReferences"][0]["uid"] == "d-uid"


def test_hash_is_stable_and_collision_count_changes_it() -> None:
    t = deploy()["spec"]["template"]
    assert template_hash(t) == template_hash(copy.deepcopy(t))
    assert template_hash(t) != template_hash(t, 1)
    assert set(template_hash(t)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_rollback_reuses_old_rs_with_bumped_revision() -> None:
    d = deploy(3, 1, 1, image="v1")  # template copied back from revision 1
    rses = [rs("web-a", 0, 0, image="v1", revision=1), rs("web-b", 3, 3, image="v2", revision=2, created=5)]
    plan = plan_rollout(d, rses, old_pods_running=True)
    assert plan.create is None
    assert plan.new_rs_name == "web-a"
    assert plan.annotate["web-a"][REVISION] == "3"
    assert plan.scale == {"web-a": 1}


def test_recreate_scales_old_down_then_waits_for_pods() -> None:
    d = deploy(3, strategy="Recreate", image="v2")
    old = rs("web-old", 3, 3, image="v1")
    plan = plan_rollout(d, [old], old_pods_running=True)
    assert plan.create is not None and plan.create["spec"]["replicas"] == 0
    new = rs("web-new", 0, 0, image="v2", revision=2)
    assert plan_rollout(d, [old, new], True).scale == {"web-old": 0}
    old0 = rs("web-old", 0, 0, image="v1")
    assert plan_rollout(d, [old0, new], True).scale == {}
    assert plan_rollout(d, [old0, new], False).scale == {"web-new": 3}


def test_paused_only_scales() -> None:
    d = deploy(5, image="v2", paused=True)
    plan = plan_rollout(d, [rs("web-old", 3, 3, image="v1")], old_pods_running=True)
    assert plan.create is None and plan.scale == {"web-old": 5}


@pytest.mark.parametrize(("limit", "dead", "want"), [(10, 3, 0), (2, 3, 1), (0, 3, 3)])
def test_history_limit(limit: int, dead: int, want: int) -> None:
    d = deploy(revisionHistoryLimit=limit)
    olds = [rs(f"old{i}", 0, 0, revision=i + 1) for i in range(dead)]
    doomed = history_to_delete(d, olds)
    assert [r["metadata"]["name"] for r in doomed] == [f"old{i}" for i in range(want)]


def test_status_conditions_progress_and_deadline(cluster: FakeCluster) -> None:
    now = cluster.clock.now()
    d = deploy(3, 1, 1, progressDeadlineSeconds=60)
    new = rs("web-new", 3, 1, revision=1)
    st = compute_status(d, [new], new, now, created_new=True)
    prog = next(c for c in st["conditions"] if c["type"] == "Progressing")
    assert prog["reason"] == "NewReplicaSetCreated" and prog["message"] == 'Created new replica set "web-new"'
    avail = next(c for c in st["conditions"] if c["type"] == "Available")
    assert avail["status"] == "False" and avail["reason"] == "MinimumReplicasUnavailable"
    assert st["unavailableReplicas"] == 2 and st["updatedReplicas"] == 3
    d["status"] = st
    cluster.clock.step(61)
    st2 = compute_status(d, [new], new, cluster.clock.now())
    prog2 = next(c for c in st2["conditions"] if c["type"] == "Progressing")
    assert (prog2["status"], prog2["reason"]) == ("False", "ProgressDeadlineExceeded")
    done = rs("web-new", 3, 3)
    d["status"] = st2
    st3 = compute_status(d, [done], done, cluster.clock.now())
    prog3 = next(c for c in st3["conditions"] if c["type"] == "Progressing")
    assert (prog3["status"], prog3["reason"]) == ("True", "NewReplicaSetAvailable")
    assert next(c for c in st3["conditions"] if c["type"] == "Available")["status"] == "True"


# --- simulation ----------------------------------------------------------------------------------


class Sim:
    """Deployment + ReplicaSet controllers and a kubelet that readies one random pod per step."""

    def __init__(self, cluster: FakeCluster, seed: int = 0) -> None:
        self.c = cluster
        ctx = cluster.context()
        self.dc = DeploymentController(ctx)
        self.rsc = ReplicaSetController(ctx)
        self.rng = random.Random(seed)
        self.min_ready_seen: int | None = None

    def ready_pods(self) -> int:
        return sum(1 for p in self.c.all(PODS) if is_pod_ready(p) and not p["metadata"].get("deletionTimestamp"))

    def drain(self) -> None:
        for _ in range(50):
            progressed = False
            for ctl in (self.dc, self.rsc):
                for key in ctl.queue.drain():
                    progressed = True
                    ctl.sync(key)
                    self.observe()
            if not progressed:
                return

    def observe(self) -> None:
        n = self.ready_pods()
        self.min_ready_seen = n if self.min_ready_seen is None else min(self.min_ready_seen, n)

    def kubelet_step(self) -> bool:
        pending = [p for p in self.c.all(PODS) if not is_pod_ready(p)]
        if not pending:
            return False
        p = self.rng.choice(pending)
        self.c.set_pod_state(p["metadata"]["name"], node="n1", ready=True)
        return True

    def run(self, steps: int = 200) -> None:
        for _ in range(steps):
            self.drain()
            if not self.kubelet_step():
                self.drain()
                if not any(not is_pod_ready(p) for p in self.c.all(PODS)):
                    return


def d_status(c: FakeCluster) -> dict[str, Any]:
    return c.obj(DEPLOYMENTS, "web")["status"]  # type: ignore[index,no-any-return]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("replicas", "surge", "unavailable"), [(6, 1, 1), (6, "25%", "25%"), (4, 0, 1), (5, 2, 0)])
def test_simulated_rolling_update_keeps_availability(
    cluster: FakeCluster, seed: int, replicas: int, surge: Any, unavailable: Any
) -> None:
    sim = Sim(cluster, seed)
    d = cluster.seed(DEPLOYMENTS, deploy(replicas, surge, unavailable))
    sim.run()
    st = d_status(cluster)
    assert st["availableReplicas"] == replicas and st["updatedReplicas"] == replicas
    assert get_condition({"status": st}, "Progressing")["reason"] == "NewReplicaSetAvailable"  # type: ignore[index]
    assert cluster.obj(DEPLOYMENTS, "web")["metadata"]["annotations"][REVISION] == "1"  # type: ignore[index]

    d = cluster.obj(DEPLOYMENTS, "web")  # type: ignore[assignment]
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v2"
    cluster.update(DEPLOYMENTS, d)
    sim.min_ready_seen = None
    sim.run()
    _, max_unavailable = fenceposts(d)
    assert sim.min_ready_seen is not None and sim.min_ready_seen >= replicas - max_unavailable
    st = d_status(cluster)
    assert st["updatedReplicas"] == replicas and st["availableReplicas"] == replicas and st["replicas"] == replicas
    images = {
        p["spec"]["containers"][0]["image"] for p in cluster.all(PODS) if not p["metadata"].get("deletionTimestamp")
    }
    assert images == {"v2"}
    assert cluster.obj(DEPLOYMENTS, "web")["metadata"]["annotations"][REVISION] == "2"  # type: ignore[index]
    assert len(cluster.all(REPLICASETS)) == 2


def test_simulated_rollback_and_restart(cluster: FakeCluster) -> None:
    sim = Sim(cluster)
    cluster.seed(DEPLOYMENTS, deploy(3, 1, 1))
    sim.run()
    d = cluster.obj(DEPLOYMENTS, "web")
    assert d is not None
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v2"
    cluster.update(DEPLOYMENTS, d)
    sim.run()
    # kubectl rollout undo: copy revision 1's template (minus the hash label) back.
    rs1 = next(r for r in cluster.all(REPLICASETS) if r["metadata"]["annotations"][REVISION] == "1")
    tmpl = copy.deepcopy(rs1["spec"]["template"])
    del tmpl["metadata"]["labels"][HASH_LABEL]
    d = cluster.obj(DEPLOYMENTS, "web")
    assert d is not None
    d["spec"]["template"] = tmpl
    cluster.update(DEPLOYMENTS, d)
    sim.run()
    rs1 = cluster.obj(REPLICASETS, rs1["metadata"]["name"])  # type: ignore[assignment]
    assert rs1["metadata"]["annotations"][REVISION] == "3" and rs1["spec"]["replicas"] == 3
    assert len(cluster.all(REPLICASETS)) == 2, "rollback reuses the old ReplicaSet"
    assert cluster.obj(DEPLOYMENTS, "web")["metadata"]["annotations"][REVISION] == "3"  # type: ignore[index]
    # kubectl rollout restart: a template annotation → a new ReplicaSet.
    d = cluster.obj(DEPLOYMENTS, "web")
    assert d is not None
    d["spec"]["template"]["metadata"]["annotations"] = {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}
    cluster.update(DEPLOYMENTS, d)
    sim.run()
    assert len(cluster.all(REPLICASETS)) == 3
    assert d_status(cluster)["updatedReplicas"] == 3


def test_simulated_scale_and_recreate(cluster: FakeCluster) -> None:
    sim = Sim(cluster)
    cluster.seed(DEPLOYMENTS, deploy(2, strategy="Recreate"))
    sim.run()
    d = cluster.obj(DEPLOYMENTS, "web")
    assert d is not None
    d["spec"]["replicas"] = 5
    cluster.update(DEPLOYMENTS, d)
    sim.run()
    assert d_status(cluster)["availableReplicas"] == 5
    d = cluster.obj(DEPLOYMENTS, "web")
    assert d is not None
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "v2"
    cluster.update(DEPLOYMENTS, d)
    sim.drain()
    # Recreate: all old pods go before any new one is created
    live = [p for p in cluster.all(PODS) if not p["metadata"].get("deletionTimestamp")]
    assert all(p["spec"]["containers"][0]["image"] == "v1" for p in live) or not any(
        p["spec"]["containers"][0]["image"] == "v1" for p in live
    )
    sim.run()
    assert {p["spec"]["containers"][0]["image"] for p in cluster.all(PODS)} == {"v2"}
    assert d_status(cluster)["availableReplicas"] == 5


def test_empty_selector_is_left_alone(cluster: FakeCluster) -> None:
    sim = Sim(cluster)
    d = deploy()
    d["spec"]["selector"] = {}
    cluster.seed(DEPLOYMENTS, d)
    sim.drain()
    assert cluster.all(REPLICASETS) == []


def test_template_equality_ignores_hash_label_and_nulls() -> None:
    from controlplane.controllers.util import templates_equal_ignoring_hash

    a = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
    b = {
        "metadata": {"labels": {"app": "web", HASH_LABEL: "x"}, "creationTimestamp": None},
        "spec": {"containers": [{"name": "c"}]},
    }
    assert templates_equal_ignoring_hash(a, b)
    b["spec"]["containers"][0]["image"] = "v2"
    assert not templates_equal_ignoring_hash(a, b)
