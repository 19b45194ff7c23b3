"""The netagent's policy controller against the real API server, with the stateful fake driver:
informers → render → one restore per change, stale chains removed, everything removed at stop."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from controlplane.client.rest import ApiClient
from netplugin.policy import plan
from netplugin.policy.controller import PolicyController
from netplugin.policy.driver import FakePolicyDriver
from tests.helpers.apiserver import RunningApiServer
from tests.helpers.wait import wait_for

NS = "np-ctl"
NODE = "np-ctl-node"


def _pod(name: str, labels: dict[str, str]) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox"}]},
    }


@pytest.fixture
def cluster(http: httpx.Client) -> Iterator[httpx.Client]:
    http.post("/api/v1/namespaces", json={"metadata": {"name": NS}})
    for i, (name, labels) in enumerate([("hello", {"app": "hello"}), ("client", {"access": "true"})]):
        r = http.post(f"/api/v1/namespaces/{NS}/pods", json=_pod(name, labels))
        assert r.status_code == 201, r.text
        r = http.patch(
            f"/api/v1/namespaces/{NS}/pods/{name}/status",
            json={"status": {"phase": "Running", "podIP": f"10.244.77.{10 + i}"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
    try:
        yield http
    finally:
        http.delete(f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies")
        for name in ("hello", "client"):
            http.delete(f"/api/v1/namespaces/{NS}/pods/{name}", params={"gracePeriodSeconds": "0"})


def _pod_chains(driver: FakePolicyDriver) -> set[str]:
    return {c for c in driver.chains if c.startswith("KUBELAB-POD-IN-")}


def test_controller_follows_policies_and_cleans_up(server: RunningApiServer, cluster: httpx.Client) -> None:
    driver = FakePolicyDriver()
    ctl = PolicyController(ApiClient.from_kubeconfig(server.kubeconfig), NODE, driver, min_interval=0.05)
    ctl.start()
    try:
        wait_for(lambda: plan.FIREWALL in driver.chains, timeout=10, message="the firewall chain")
        assert any(plan.FIREWALL in r for r in driver.chains["FORWARD"])
        assert _pod_chains(driver) == set()
        deny = {"metadata": {"name": "deny"}, "spec": {"podSelector": {"matchLabels": {"app": "hello"}}}}
        r = cluster.post(f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies", json=deny)
        assert r.status_code == 201, r.text
        wait_for(lambda: len(_pod_chains(driver)) == 1, timeout=10, message="hello's ingress chain")
        restores = driver.restores
        # a label change that selects the client too: a second pod chain
        r = cluster.patch(
            f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/deny",
            json={"spec": {"podSelector": {"matchLabels": None}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200, r.text
        wait_for(lambda: len(_pod_chains(driver)) == 2, timeout=10, message="both pods isolated")
        assert driver.restores > restores
        # an unrelated pod event renders the same rules: no restore
        restores, syncs = driver.restores, ctl.syncs
        cluster.patch(
            f"/api/v1/namespaces/{NS}/pods/client",
            json={"metadata": {"annotations": {"touched": "yes"}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        wait_for(lambda: ctl.syncs > syncs, timeout=5, message="a sync after the pod event")
        assert driver.restores == restores
        cluster.delete(f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/deny")
        wait_for(lambda: not _pod_chains(driver), timeout=10, message="stale pod chains deleted")
        assert driver.restores == restores + 1
    finally:
        ctl.stop()
    assert driver.owned_chains() == set()
    assert not any(plan.FIREWALL in r for r in driver.chains["FORWARD"])
