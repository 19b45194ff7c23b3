"""Controllers against the real API server, scheduler, hollow nodes and a fake kubelet.

Namespace per test (``t-<name>``); deployment ``web`` selects ``app=web``; nodes kl-node1..3.
Watches record every observed pod state so invariants are checked at each step, not sampled.
"""

from __future__ import annotations

import subprocess
import threading
from collections import Counter
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.api.registry import (
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    SERVICES,
)
from controlplane.client.informer import Informer
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for
from tests.integration.controllers.conftest import Cluster


def ns(c: Cluster, name: str) -> str:
    try:
        c.client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except errors.AlreadyExists:
        pass
    return name


def deployment(
    name: str = "web", replicas: int = 6, image: str = "hello:v1", surge: Any = 1, unavailable: Any = 1
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "c", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}]
                },
            },
        },
    }


def live_pods(c: Cluster, namespace: str, app: str = "web") -> list[dict[str, Any]]:
    items = c.client.list(PODS, namespace=namespace, label_selector=f"app={app}")["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(p: dict[str, Any]) -> bool:
    return any(
        x.get("type") == "Ready" and x.get("status") == "True" for x in (p.get("status") or {}).get("conditions") or []
    )


def rolled_out(c: Cluster, namespace: str, name: str = "web") -> bool:
    d = c.client.get(DEPLOYMENTS, name, namespace)
    st = d.get("status") or {}
    want = d["spec"]["replicas"]
    return (
        st.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and st.get("updatedReplicas") == want
        and st.get("replicas") == want
        and st.get("availableReplicas") == want
    )


def kubectl(c: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_binary("1.33"), "--kubeconfig", str(c.server.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class PodWatcher:
    """Every observed state of a namespace's pods; ``min_ready`` over all of them."""

    def __init__(self, c: Cluster, namespace: str) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.min_ready: int | None = None
        self.adds: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.inf = Informer(c.client, PODS, namespace=namespace)
        self.inf.add_handler(on_add=self._put, on_update=lambda _o, n: self._put(n), on_delete=self._del)

    def _observe(self) -> None:
        n = sum(1 for p in self.pods.values() if ready(p) and not p["metadata"].get("deletionTimestamp"))
        self.min_ready = n if self.min_ready is None else min(self.min_ready, n)

    def _put(self, p: dict[str, Any]) -> None:
        with self.lock:
            if p["metadata"]["name"] not in self.pods:
                self.adds[p["metadata"]["name"]] += 1
            self.pods[p["metadata"]["name"]] = p
            self._observe()

    def _del(self, p: dict[str, Any]) -> None:
        with self.lock:
            self.pods.pop(p["metadata"]["name"], None)
            self._observe()

    def __enter__(self) -> PodWatcher:
        self.inf.start()
        assert self.inf.wait_for_sync(10)
        with self.lock:
            self.min_ready = None
            self._observe()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inf.stop()


def test_deployment_spreads_scales_rolls_and_rolls_back(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-deploy")
    c.client.create(DEPLOYMENTS, deployment(), namespace=n)
    wait_for(lambda: rolled_out(c, n), timeout=30, message="6 replicas available")
    pods = live_pods(c, n)
    assert len(pods) == 6 and all(ready(p) for p in pods)
    per_node = Counter(p["spec"]["nodeName"] for p in pods)
    assert set(per_node) == {"kl-node1", "kl-node2", "kl-node3"}, per_node
    rs = c.client.list(REPLICASETS, namespace=n)["items"]
    assert len(rs) == 1 and rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    h = rs[0]["metadata"]["labels"]["pod-template-hash"]
    assert rs[0]["metadata"]["name"] == f"web-{h}"
    assert all(p["metadata"]["generateName"] == f"web-{h}-" for p in pods)
    d = c.client.get(DEPLOYMENTS, "web", n)
    conds = {x["type"]: x for x in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"

    # scale through the scale subresource, like kubectl scale
    c.client.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 9}}, namespace=n, subresource="scale")
    wait_for(lambda: rolled_out(c, n) and len(live_pods(c, n)) == 9, timeout=30, message="scaled to 9")
    c.client.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 6}}, namespace=n)
    wait_for(lambda: rolled_out(c, n) and len(live_pods(c, n)) == 6, timeout=30, message="scaled back to 6")

    # rolling update, every observed state keeps replicas - maxUnavailable ready pods
    with PodWatcher(c, n) as w:
        c.client.patch(
            DEPLOYMENTS,
            "web",
            {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "hello:v2"}]}}}},
            namespace=n,
            patch_type="strategic",
        )
        wait_for(lambda: rolled_out(c, n), timeout=60, message="rolling update done")
        wait_for(
            lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(c, n)} == {"hello:v2"},
            timeout=30,
            message="all pods on v2",
        )
    assert w.min_ready is not None and w.min_ready >= 6 - 1, f"ready dipped to {w.min_ready}"
    d = c.client.get(DEPLOYMENTS, "web", n)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

    # kubectl reads our status: rollout status succeeds, rollout undo brings v1 back as revision 3
    r = kubectl(c, "-n", n, "rollout", "status", "deployment/web", "--timeout=30s")
    assert r.returncode == 0 and "successfully rolled out" in r.stdout, r.stdout + r.stderr
    r = kubectl(c, "-n", n, "rollout", "undo", "deployment/web")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(
        lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(c, n)} == {"hello:v1"} and rolled_out(c, n),
        timeout=60,
        message="rolled back to v1",
    )
    rses = c.client.list(REPLICASETS, namespace=n)["items"]
    assert len(rses) == 2, "rollback reuses the old ReplicaSet"
    by_rev = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r for r in rses}
    assert set(by_rev) == {"2", "3"} and by_rev["3"]["metadata"]["name"] == f"web-{h}"

    # kubectl rollout restart: a new ReplicaSet, revision 4
    r = kubectl(c, "-n", n, "rollout", "restart", "deployment/web")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(
        lambda: len(c.client.list(REPLICASETS, namespace=n)["items"]) == 3 and rolled_out(c, n),
        timeout=60,
        message="restart rolled out",
    )
    d = c.client.get(DEPLOYMENTS, "web", n)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"

    # kubectl rollout history lists our revisions; undo --to-revision picks one
    r = kubectl(c, "-n", n, "rollout", "history", "deployment/web")
    assert r.returncode == 0, r.stdout + r.stderr
    revisions = [line.split()[0] for line in r.stdout.splitlines() if line[:1].isdigit()]
    assert revisions == ["2", "3", "4"], r.stdout
    r = kubectl(c, "-n", n, "rollout", "undo", "deployment/web", "--to-revision=2")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(
        lambda: {p["spec"]["containers"][0]["image"] for p in live_pods(c, n)} == {"hello:v2"} and rolled_out(c, n),
        timeout=60,
        message="undo --to-revision=2",
    )


def test_invalid_selector_is_refused_with_422(cluster: Cluster) -> None:
    n = ns(cluster, "t-invalid")
    bad = deployment()
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(errors.Invalid) as ei:
        cluster.client.create(DEPLOYMENTS, bad, namespace=n)
    assert ei.value.code == 422
    assert "selector" in str(ei.value)
    assert cluster.client.list(REPLICASETS, namespace=n)["items"] == []


def test_endpoints_and_slices_follow_pods(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-ep")
    c.client.create(DEPLOYMENTS, deployment(replicas=3), namespace=n)
    c.client.create(
        SERVICES,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        },
        namespace=n,
    )

    def addresses() -> list[str]:
        ep = c.client.get(ENDPOINTS, "web", n)
        return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])

    wait_for(lambda: len(addresses()) == 3, timeout=30, message="3 ready endpoints")
    ep = c.client.get(ENDPOINTS, "web", n)
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert "endpoints.kubernetes.io/last-change-trigger-time" in ep["metadata"]["annotations"]
    pod_ips = sorted(p["status"]["podIP"] for p in live_pods(c, n))
    assert addresses() == pod_ips
    slices = c.client.list(ENDPOINTSLICES, namespace=n, label_selector="kubernetes.io/service-name=web")["items"]
    assert len(slices) == 1
    assert sorted(e["addresses"][0] for e in slices[0]["endpoints"]) == pod_ips
    assert all(e["conditions"]["ready"] and e["nodeName"].startswith("kl-node") for e in slices[0]["endpoints"])
    assert (
        slices[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    )
    # deleting a pod: its replacement takes its place in the endpoints
    victim = live_pods(c, n)[0]
    c.client.delete(PODS, victim["metadata"]["name"], n)
    wait_for(
        lambda: (
            victim["status"]["podIP"] not in addresses()
            and len(addresses()) == 3
            and addresses() == sorted(p["status"]["podIP"] for p in live_pods(c, n))
        ),
        timeout=30,
        message="endpoints follow the replacement pod",
    )


def test_namespace_deletion_and_default_serviceaccount(cluster: Cluster) -> None:
    from controlplane.api.registry import SERVICEACCOUNTS

    c = cluster
    n = ns(c, "t-nsdel")
    wait_for(lambda: c.client.get(SERVICEACCOUNTS, "default", n), timeout=20, message="default serviceaccount")
    c.client.create(DEPLOYMENTS, deployment(replicas=2), namespace=n)
    wait_for(lambda: rolled_out(c, n), timeout=30, message="deployment up")
    c.client.delete(NAMESPACES, n)

    def gone() -> bool:
        try:
            c.client.get(NAMESPACES, n)
        except errors.NotFound:
            return True
        return False

    wait_for(gone, timeout=30, message="namespace removed")
    assert c.client.list(PODS, namespace=n)["items"] == []


def test_garbage_collection_background_and_orphan(cluster: Cluster) -> None:
    c = cluster
    n = ns(c, "t-gc")
    c.client.create(DEPLOYMENTS, deployment(name="bg", replicas=2), namespace=n)
    c.client.create(DEPLOYMENTS, deployment(name="orph", replicas=2), namespace=n)
    wait_for(lambda: rolled_out(c, n, "bg") and rolled_out(c, n, "orph"), timeout=30, message="both up")
    c.client.delete(DEPLOYMENTS, "bg", n, propagation_policy="Background")
    wait_for(
        lambda: (
            live_pods(c, n, "bg") == []
            and not [
                r for r in c.client.list(REPLICASETS, namespace=n)["items"] if r["metadata"]["name"].startswith("bg-")
            ]
        ),
        timeout=30,
        message="background cascade",
    )
    c.client.delete(DEPLOYMENTS, "orph", n, propagation_policy="Orphan")

    def orphaned() -> bool:
        rses = [
            r for r in c.client.list(REPLICASETS, namespace=n)["items"] if r["metadata"]["name"].startswith("orph-")
        ]
        return len(rses) == 1 and not rses[0]["metadata"].get("ownerReferences")

    wait_for(orphaned, timeout=30, message="ReplicaSet orphaned")
    assert len(live_pods(c, n, "orph")) == 2


def test_node_stops_heartbeating(cluster: Cluster) -> None:
    """Runs last in the module: it takes kl-node3 down and brings it back."""
    c = cluster
    n = ns(c, "t-node")
    c.client.create(DEPLOYMENTS, deployment(replicas=6), namespace=n)
    c.client.create(
        SERVICES,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        namespace=n,
    )
    wait_for(lambda: rolled_out(c, n), timeout=30, message="6 up")
    on3 = [p for p in live_pods(c, n) if p["spec"]["nodeName"] == "kl-node3"]
    assert on3, "the spread put pods on kl-node3"
    ips3 = {p["status"]["podIP"] for p in on3}

    c.nodes.set_heartbeat("kl-node3", False)

    def node3_unreachable() -> bool:
        node = c.client.get(NODES, "kl-node3")
        ready_c = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
        taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
        return (
            ready_c["status"] == "Unknown"
            and ready_c["reason"] == "NodeStatusUnknown"
            and taints
            >= {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")}
        )

    wait_for(node3_unreachable, timeout=20, message="kl-node3 NotReady and tainted")

    def recovered_elsewhere() -> bool:
        pods = live_pods(c, n)
        return len(pods) == 6 and all(ready(p) and p["spec"]["nodeName"] != "kl-node3" for p in pods)

    wait_for(recovered_elsewhere, timeout=30, message="pods evicted and recreated on kl-node1/2")

    def endpoints_clean() -> bool:
        ep = c.client.get(ENDPOINTS, "web", n)
        ips = {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}
        addrs = [a for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
        names = {a.get("nodeName") for a in addrs}
        return len(addrs) == len(ips) == 6 and not (ips & ips3) and "kl-node3" not in names

    wait_for(
        endpoints_clean,
        timeout=20,
        message=f"endpoints no longer name kl-node3's pods {ips3}: {c.client.get(ENDPOINTS, 'web', n)}",
    )

    c.nodes.set_heartbeat("kl-node3", True)
    wait_for(
        lambda: not c.client.get(NODES, "kl-node3")["spec"].get("taints"),
        timeout=20,
        message="taints removed after heartbeats resume",
    )


def test_node_ipam_assigns_lab_cidrs(cluster: Cluster) -> None:
    def cidrs() -> dict[str, str]:
        return {x["metadata"]["name"]: x["spec"].get("podCIDR") for x in cluster.client.list(NODES)["items"]}

    wait_for(lambda: all(cidrs().values()), timeout=20, message="podCIDRs assigned")
    got = cidrs()
    assert got["kl-node1"] == "10.244.1.0/24" and got["kl-node2"] == "10.244.2.0/24"
    assert got["kl-node3"] == "10.244.3.0/24"
    node = cluster.client.get(NODES, "kl-node1")
    assert node["spec"]["podCIDRs"] == ["10.244.1.0/24"]
