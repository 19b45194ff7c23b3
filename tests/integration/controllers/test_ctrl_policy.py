"""Acceptance: ResourceQuota, LimitRange, PodDisruptionBudget, PriorityClass and Ingress against a
small real cluster (API server, scheduler, controller-manager, hollow nodes, fake kubelet), driven
by the real kubectl 1.27 and 1.33: ``create quota|pdb|priorityclass|ingress``, ``drain``,
``cordon``, ``uncordon``, ``describe namespace``.

Every test works in a namespace of its own (deleted at the end, also on failure) and uncordons any
node it cordoned.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.api import errors, registry
from tests.helpers.hollow import ensure_namespace
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for
from tests.integration.controllers.conftest import Cluster

KUBECTLS = ("1.27", "1.33")


class Kubectl:
    def __init__(self, binary: str, cluster: Cluster) -> None:
        self.base = [binary, "--kubeconfig", str(cluster.server.kubeconfig)]

    def __call__(self, *args: str, ok: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=90, input=input)
        if ok:
            assert r.returncode == 0, f"kubectl {' '.join(args)}: {r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(params=sorted(KUBECTLS))
def k(request: pytest.FixtureRequest, cluster: Cluster) -> Kubectl:
    return Kubectl(kubectl_binary(request.param), cluster)


@pytest.fixture
def ns(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "pol-" + request.node.name.split("[")[0].removeprefix("test_")[:20].replace("_", "-") + "-"
    name += request.node.callspec.params.get("k", "x").replace(".", "") if hasattr(request.node, "callspec") else "x"
    ensure_namespace(cluster.client, name)
    wait_for(lambda: _exists(cluster, registry.SERVICEACCOUNTS, "default", name), timeout=20, message="default SA")
    try:
        yield name
    finally:
        try:
            cluster.client.delete(registry.NAMESPACES, name)
        except errors.NotFound:
            pass


def _exists(cluster: Cluster, res: registry.Resource, name: str, namespace: str | None = None) -> bool:
    try:
        cluster.client.get(res, name, namespace=namespace)
        return True
    except errors.NotFound:
        return False


def _pod(name: str, labels: dict[str, str] | None = None, cpu: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"containers": [c]}}


def test_quota_refuses_and_its_controller_counts(cluster: Cluster, k: Kubectl, ns: str) -> None:
    assert "resourcequota/q created" in k("create", "quota", "q", "--hard=pods=2,count/configmaps=5", "-n", ns).stdout
    for n in ("a", "b"):
        cluster.client.create(registry.PODS, _pod(n), namespace=ns)

    def used() -> Any:
        return (cluster.client.get(registry.RESOURCEQUOTAS, "q", namespace=ns).get("status") or {}).get("used")

    wait_for(lambda: (used() or {}).get("pods") == "2", timeout=20, message="status.used.pods == 2")
    r = k("run", "c", "--image=busybox", "-n", ns, ok=False)
    assert r.returncode != 0
    assert 'pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2' in r.stderr
    table = k("get", "quota", "q", "-n", ns).stdout
    assert table.split("\n")[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"]
    assert "count/configmaps: 0/5, pods: 2/2" in table
    cluster.client.delete(registry.PODS, "a", namespace=ns, grace_period_seconds=0)
    wait_for(lambda: (used() or {}).get("pods") == "1", timeout=20, message="status.used.pods back to 1")
    k("run", "c", "--image=busybox", "-n", ns)
    desc = k("describe", "namespace", ns).stdout
    assert "Resource Quotas" in desc and "Name:" in desc and "q" in desc
    assert [line.split() for line in desc.splitlines() if line.strip().startswith("pods")] == [["pods", "2", "2"]]


def test_limitrange_defaults_and_limits(cluster: Cluster, k: Kubectl, ns: str) -> None:
    manifest = (
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr}\nspec:\n  limits:\n  - type: Container\n"
        "    max: {memory: 1Gi}\n    min: {cpu: 50m}\n    defaultRequest: {cpu: 100m}\n"
    )
    assert "limitrange/lr created" in k("apply", "-n", ns, "-f", "-", input=manifest).stdout
    k("run", "p", "--image=busybox", "-n", ns)
    p = k.json("get", "pod", "p", "-n", ns)
    res = p["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "1Gi"}}
    assert "LimitRanger plugin set" in p["metadata"]["annotations"]["kubernetes.io/limit-ranger"]
    big = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n  - name: c\n    image: busybox\n"
        "    resources: {limits: {memory: 2Gi}, requests: {memory: 1Gi, cpu: 10m}}\n"
    )
    r = k("apply", "-n", ns, "-f", "-", input=big, ok=False)
    assert r.returncode != 0
    assert (
        'pods "big" is forbidden: [minimum cpu usage per Container is 50m, but request is 10m, '
        "maximum memory usage per Container is 1Gi, but limit is 2Gi]"
    ) in r.stderr
    desc = k("describe", "namespace", ns).stdout
    assert "Resource Limits" in desc
    assert ["Container", "memory", "-", "1Gi", "1Gi", "1Gi", "-"] in [line.split() for line in desc.splitlines()]


def test_priorityclass_and_priority_admission(cluster: Cluster, k: Kubectl, ns: str) -> None:
    name = f"{ns}-high"
    try:
        assert "created" in k("create", "priorityclass", name, "--value=1000", "--description=test").stdout
        rows = [line.split() for line in k("get", "priorityclass").stdout.splitlines()]
        assert rows[0] == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
        assert rows[[r[0] for r in rows].index("system-node-critical")][:3] == [
            "system-node-critical",
            "2000001000",
            "false",
        ]
        assert rows[[r[0] for r in rows].index("system-cluster-critical")][:2] == [
            "system-cluster-critical",
            "2000000000",
        ]
        pod = _pod("p")
        pod["spec"]["priorityClassName"] = name
        made = cluster.client.create(registry.PODS, pod, namespace=ns)
        assert made["spec"]["priority"] == 1000 and made["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
        bad = _pod("bad")
        bad["spec"]["priorityClassName"] = "no-such-class"
        with pytest.raises(errors.ApiError) as e:
            cluster.client.create(registry.PODS, bad, namespace=ns)
        assert e.value.code == 403
        assert e.value.message == 'pods "bad" is forbidden: no PriorityClass with name no-such-class was found'
    finally:
        try:
            cluster.client.delete(registry.PRIORITYCLASSES, name)
        except errors.NotFound:
            pass


def test_ingress_api(k: Kubectl, ns: str) -> None:
    out = k("create", "ingress", "web", "--class=lab", "--rule=foo.com/bar=svc1:8080", "-n", ns).stdout
    assert "ingress.networking.k8s.io/web created" in out
    rows = [line.split() for line in k("get", "ingress", "-n", ns).stdout.splitlines()]
    assert rows[0] == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert rows[1][:4] == ["web", "lab", "foo.com", "80"]
    ing = k.json("get", "ingress", "web", "-n", ns)
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "svc1",
        "port": {"number": 8080},
    }


def test_pdb_blocks_drain_until_the_budget_allows(cluster: Cluster, k: Kubectl, ns: str) -> None:
    deploy = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n"
        "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n"
        "    spec: {containers: [{name: c, image: busybox}]}\n"
    )
    k("apply", "-n", ns, "-f", "-", input=deploy)
    assert "created" in k("create", "pdb", "web", "--selector=app=web", "--min-available=2", "-n", ns).stdout

    def pdb_status() -> dict[str, Any]:
        return cluster.client.get(registry.PODDISRUPTIONBUDGETS, "web", namespace=ns).get("status") or {}

    wait_for(lambda: pdb_status().get("currentHealthy") == 2, timeout=30, message="2 healthy pods in the budget")
    st = pdb_status()
    assert (st["desiredHealthy"], st["disruptionsAllowed"], st["expectedPods"]) == (2, 0, 2)
    assert st["conditions"][0]["type"] == "DisruptionAllowed" and st["conditions"][0]["status"] == "False"
    pods = cluster.client.list(registry.PODS, namespace=ns)["items"]
    node = pods[0]["spec"]["nodeName"]
    try:
        r = k("drain", node, "--pod-selector=app=web", "--timeout=7s", ok=False)
        assert r.returncode != 0
        assert "Cannot evict pod as it would violate the pod's disruption budget." in r.stderr + r.stdout
        assert cluster.client.get(registry.NODES, node)["spec"].get("unschedulable") is True  # drain cordons first
        assert "uncordoned" in k("uncordon", node).stdout
        assert not cluster.client.get(registry.NODES, node)["spec"].get("unschedulable")

        k("patch", "pdb", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
        wait_for(lambda: pdb_status().get("disruptionsAllowed") == 1, timeout=30, message="one disruption allowed")
        assert "cordoned" in k("cordon", node).stdout
        out = k("drain", node, "--pod-selector=app=web", "--timeout=30s")
        assert "evicted" in out.stdout + out.stderr and "drained" in out.stdout
        wait_for(
            lambda: (
                all(
                    p["spec"].get("nodeName") not in (None, node)
                    for p in cluster.client.list(registry.PODS, namespace=ns)["items"]
                    if not p["metadata"].get("deletionTimestamp")
                )
                and pdb_status().get("currentHealthy") == 2
            ),
            timeout=30,
            message="the evicted pod replaced on another node",
        )
    finally:
        k("uncordon", node, ok=False)


def test_high_priority_pod_preempts_a_lower_one(cluster: Cluster, k: Kubectl, ns: str) -> None:
    low, high = f"{ns}-low", f"{ns}-high"
    try:
        k("create", "priorityclass", low, "--value=10")
        k("create", "priorityclass", high, "--value=1000")
        nodes = [n["metadata"]["name"] for n in cluster.client.list(registry.NODES)["items"]]
        for i in range(len(nodes)):  # one 3-cpu pod fills each 4-cpu node
            p = _pod(f"low-{i}", cpu="3")
            p["spec"]["priorityClassName"] = low
            cluster.client.create(registry.PODS, p, namespace=ns)

        def pods() -> dict[str, Any]:
            return {p["metadata"]["name"]: p for p in cluster.client.list(registry.PODS, namespace=ns)["items"]}

        wait_for(lambda: all(p["spec"].get("nodeName") for p in pods().values()), timeout=30, message="low pods bound")
        before = {n: p["spec"]["nodeName"] for n, p in pods().items()}
        h = _pod("important", cpu="2")
        h["spec"]["priorityClassName"] = high
        cluster.client.create(registry.PODS, h, namespace=ns)
        wait_for(
            lambda: (pods().get("important") or {}).get("spec", {}).get("nodeName"),
            timeout=40,
            message="the high-priority pod bound after preemption",
        )
        now = pods()
        node = now["important"]["spec"]["nodeName"]
        victims = [n for n, at in before.items() if at == node]
        assert len(victims) == 1 and victims[0] not in now  # the one low pod on that node was preempted
        assert sum(1 for n in before if n in now) == len(nodes) - 1  # the other low pods untouched
        events = cluster.client.list(registry.EVENTS, namespace=ns)["items"]
        assert any(
            e.get("reason") == "Preempted" and e["involvedObject"]["name"] == victims[0] and node in e["message"]
            for e in events
        )
        assert now["important"]["status"].get("nominatedNodeName") == node  # set by the scheduler
        header = k("get", "pods", "-o", "wide", "-n", ns).stdout.splitlines()[0]
        assert "NOMINATED NODE" in header
    finally:
        for name in (low, high):
            try:
                cluster.client.delete(registry.PRIORITYCLASSES, name)
            except errors.NotFound:
                pass


def test_only_one_global_default_priorityclass(cluster: Cluster, k: Kubectl, ns: str) -> None:
    first, second = f"{ns}-d1", f"{ns}-d2"
    try:
        k("create", "priorityclass", first, "--value=5", "--global-default")
        r = k("create", "priorityclass", second, "--value=6", "--global-default", ok=False)
        assert r.returncode != 0
        assert (
            f'priorityclasses.scheduling.k8s.io "{second}" is forbidden: PriorityClass {first} is already marked '
            "as default. Only one default can exist"
        ) in r.stderr
        made = cluster.client.create(registry.PODS, _pod("plain"), namespace=ns)
        assert made["spec"]["priority"] == 5 and made["spec"]["priorityClassName"] == first
    finally:
        for name in (first, second):
            try:
                cluster.client.delete(registry.PRIORITYCLASSES, name)
            except errors.NotFound:
                pass
