"""DaemonSet, StatefulSet, Job, foreground deletion and the progress deadline, through the real
API server with the scheduler, hollow nodes kl-node1..3 and the fake kubelet (conftest.py).

The fake kubelet only makes pods Running/Ready; where a test needs pods to finish, it plays the
kubelet itself and writes ``status.phase`` (Succeeded/Failed) through ``pods/status``.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import DAEMONSETS, DEPLOYMENTS, JOBS, NAMESPACES, PODS, REPLICASETS, STATEFULSETS
from controlplane.client.informer import Informer
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for
from tests.integration.controllers.conftest import Cluster

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "w"}},
    "spec": {"containers": [{"name": "c", "image": "hello:v1"}]},
}


def ns(c: Cluster, name: str) -> str:
    try:
        c.client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except errors.AlreadyExists:
        pass
    return name


def pods(c: Cluster, namespace: str) -> list[dict[str, Any]]:
    return [p for p in c.client.list(PODS, namespace=namespace)["items"] if not p["metadata"].get("deletionTimestamp")]


def is_ready(p: dict[str, Any]) -> bool:
    return any(
        x.get("type") == "Ready" and x.get("status") == "True" for x in (p.get("status") or {}).get("conditions") or []
    )


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((x for x in (obj.get("status") or {}).get("conditions") or [] if x["type"] == type_), {})


def finish(c: Cluster, pod: dict[str, Any], phase: str) -> None:
    """Play the kubelet: the pod's containers exited."""
    for _ in range(5):
        p = c.client.get(PODS, pod["metadata"]["name"], pod["metadata"]["namespace"])
        p["status"]["phase"] = phase
        p["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
        try:
            c.client.update_status(PODS, p)
            return
        except errors.Conflict:
            continue


def test_daemonset_one_pod_per_node(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-ds")
    c.client.create(
        DAEMONSETS,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": TEMPLATE},
        },
        namespace=n,
    )

    def done() -> bool:
        st = c.client.get(DAEMONSETS, "agent", n).get("status") or {}
        return st.get("desiredNumberScheduled") == 3 and st.get("numberReady") == 3

    wait_for(done, timeout=30, message="3 daemon pods ready")
    assert sorted(p["spec"]["nodeName"] for p in pods(c, n)) == ["kl-node1", "kl-node2", "kl-node3"]


def test_statefulset_ordered_start_and_reverse_stop(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-sts")
    order: list[str] = []
    violations: list[str] = []
    seen: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def on_add(p: dict[str, Any]) -> None:
        with lock:
            name = p["metadata"]["name"]
            i = int(name.rsplit("-", 1)[1])
            if i > 0 and not is_ready(seen.get(f"db-{i - 1}", {})):
                violations.append(f"{name} created before db-{i - 1} was Ready")
            seen[name] = p
            order.append(name)

    def on_update(_o: dict[str, Any], p: dict[str, Any]) -> None:
        with lock:
            seen[p["metadata"]["name"]] = p

    deleted: list[str] = []
    inf = Informer(c.client, PODS, namespace=n)
    inf.add_handler(on_add=on_add, on_update=on_update, on_delete=lambda p: deleted.append(p["metadata"]["name"]))
    inf.start()
    try:
        assert inf.wait_for_sync(10)
        c.client.create(
            STATEFULSETS,
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "db"},
                "spec": {
                    "replicas": 3,
                    "serviceName": "db",
                    "selector": {"matchLabels": {"app": "w"}},
                    "template": TEMPLATE,
                },
            },
            namespace=n,
        )
        wait_for(
            lambda: (c.client.get(STATEFULSETS, "db", n).get("status") or {}).get("readyReplicas") == 3,
            timeout=30,
            message="3 ready replicas",
        )
        assert order == ["db-0", "db-1", "db-2"] and not violations, (order, violations)
        p0 = c.client.get(PODS, "db-0", n)
        assert p0["spec"]["hostname"] == "db-0" and p0["spec"]["subdomain"] == "db"
        c.client.patch(STATEFULSETS, "db", {"spec": {"replicas": 1}}, namespace=n)
        wait_for(
            lambda: [p["metadata"]["name"] for p in pods(c, n)] == ["db-0"] and len(inf.list()) == 1,
            timeout=30,
            message="scaled down to db-0",
        )
        assert deleted == ["db-2", "db-1"]
    finally:
        inf.stop()


def test_job_completions_and_backoff_limit(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-job")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "work"},
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}},
        },
    }
    c.client.create(JOBS, job, namespace=n)
    completed = 0
    while completed < 3:
        active = wait_for(
            lambda: [p for p in pods(c, n) if p["status"].get("phase") == "Running"],
            timeout=30,
            message="a running job pod",
        )
        assert len(active) <= 2, "parallelism 2"
        assert active[0]["metadata"]["labels"]["job-name"] == "work"
        finish(c, active[0], "Succeeded")
        completed += 1
    wait_for(
        lambda: condition(c.client.get(JOBS, "work", n), "Complete").get("status") == "True",
        timeout=30,
        message="job Complete",
    )
    st = c.client.get(JOBS, "work", n)["status"]
    assert st["succeeded"] == 3 and st["active"] == 0

    job2 = {
        **job,
        "metadata": {"name": "flaky"},
        "spec": {**job["spec"], "completions": 1, "parallelism": 1, "backoffLimit": 1},
    }
    c.client.create(JOBS, job2, namespace=n)
    for _ in range(2):
        p = wait_for(
            lambda: [
                p
                for p in pods(c, n)
                if p["metadata"]["labels"].get("job-name") == "flaky" and p["status"].get("phase") == "Running"
            ],
            timeout=30,
            message="flaky pod running",
        )[0]
        finish(c, p, "Failed")
    wait_for(
        lambda: condition(c.client.get(JOBS, "flaky", n), "Failed").get("reason") == "BackoffLimitExceeded",
        timeout=30,
        message="job Failed: BackoffLimitExceeded",
    )


def test_foreground_deletion_removes_dependents_first(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-fg")
    events: list[tuple[str, str]] = []
    infs = [Informer(c.client, r, namespace=n) for r in (DEPLOYMENTS, REPLICASETS)]
    for inf in infs:
        inf.add_handler(on_delete=lambda o: events.append((o.get("kind", "?"), o["metadata"]["name"])))
    c.client.create(
        DEPLOYMENTS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "fg"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "w"}}, "template": TEMPLATE},
        },
        namespace=n,
    )
    wait_for(lambda: len([p for p in pods(c, n) if is_ready(p)]) == 2, timeout=30, message="2 pods")
    for inf in infs:
        inf.start()
        assert inf.wait_for_sync(10)
    try:
        c.client.delete(DEPLOYMENTS, "fg", n, propagation_policy="Foreground")
        d = c.client.get(DEPLOYMENTS, "fg", n)
        assert "foregroundDeletion" in d["metadata"]["finalizers"]

        def gone() -> bool:
            try:
                c.client.get(DEPLOYMENTS, "fg", n)
            except errors.NotFound:
                return True
            return False

        wait_for(gone, timeout=30, message="deployment removed after its dependents")
        assert pods(c, n) == [] and c.client.list(REPLICASETS, namespace=n)["items"] == []
        wait_for(lambda: len(events) == 2, timeout=10, message="both deletions observed")
        assert [name for _, name in events][-1] == "fg", events
    finally:
        for inf in infs:
            inf.stop()


def test_progress_deadline_and_pause(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-prog")
    d = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "slow"},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 2,
            "selector": {"matchLabels": {"app": "w"}},
            "template": TEMPLATE,
        },
    }
    c.client.create(DEPLOYMENTS, d, namespace=n)
    wait_for(
        lambda: (
            condition(c.client.get(DEPLOYMENTS, "slow", n), "Progressing").get("reason") == "NewReplicaSetAvailable"
        ),
        timeout=30,
        message="first rollout complete",
    )
    # a template nothing can schedule: the rollout stalls and passes its deadline
    c.client.patch(
        DEPLOYMENTS,
        "slow",
        {"spec": {"template": {"spec": {"nodeSelector": {"nowhere": "true"}}}}},
        namespace=n,
        patch_type="strategic",
    )
    wait_for(
        lambda: (
            condition(c.client.get(DEPLOYMENTS, "slow", n), "Progressing").get("reason") == "ProgressDeadlineExceeded"
        ),
        timeout=30,
        message="ProgressDeadlineExceeded",
    )
    r = subprocess.run(
        [
            kubectl_binary("1.33"),
            "--kubeconfig",
            str(c.server.kubeconfig),
            "-n",
            n,
            "rollout",
            "status",
            "deployment/slow",
            "--timeout=20s",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode != 0 and "exceeded its progress deadline" in (r.stdout + r.stderr), r.stdout + r.stderr
    assert len([p for p in pods(c, n) if is_ready(p)]) >= 1, "old pods kept serving (maxUnavailable 25% of 2 = 0)"

    # paused: a template change makes no new ReplicaSet until resumed
    c.client.patch(DEPLOYMENTS, "slow", {"spec": {"paused": True}}, namespace=n)
    wait_for(
        lambda: condition(c.client.get(DEPLOYMENTS, "slow", n), "Progressing").get("reason") == "DeploymentPaused",
        timeout=30,
        message="paused",
    )
    before = len(c.client.list(REPLICASETS, namespace=n)["items"])
    c.client.patch(
        DEPLOYMENTS,
        "slow",
        {"spec": {"template": {"spec": {"nodeSelector": None}}, "replicas": 3}},
        namespace=n,
        patch_type="merge",
    )
    wait_for(
        lambda: (
            (c.client.get(DEPLOYMENTS, "slow", n).get("status") or {}).get("observedGeneration")
            == c.client.get(DEPLOYMENTS, "slow", n)["metadata"]["generation"]
        ),
        timeout=30,
        message="observed",
    )
    assert len(c.client.list(REPLICASETS, namespace=n)["items"]) == before
    c.client.patch(DEPLOYMENTS, "slow", {"spec": {"paused": False}}, namespace=n)

    def rolled() -> bool:
        dd = c.client.get(DEPLOYMENTS, "slow", n)
        st = dd.get("status") or {}
        return st.get("updatedReplicas") == 3 and st.get("availableReplicas") == 3 and st.get("replicas") == 3

    wait_for(rolled, timeout=30, message="resumed rollout completes")
