"""ResourceQuota through the real API server: scoped quotas and quota checked on update."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path_factory.mktemp("quota-scopes"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def ns(server: RunningApiServer, request: pytest.FixtureRequest) -> Iterator[str]:
    # a bare API server has no namespace controller (a deleted namespace stays): a name per test
    name = "qs-" + request.node.name.removeprefix("test_").replace("_", "-")[:40]
    with server.http() as c:
        r = c.post("/api/v1/namespaces", json={"metadata": {"name": name}})
        assert r.status_code == 201, r.text
        try:
            yield name
        finally:
            c.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def http(server: RunningApiServer) -> Iterator[httpx.Client]:
    with server.http() as c:
        yield c


def _pod(name: str, cpu: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "c", "image": "busybox"}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}}


def test_best_effort_scope_limits_only_best_effort_pods(http: httpx.Client, ns: str) -> None:
    quota = {"metadata": {"name": "be"}, "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}
    assert http.post(f"/api/v1/namespaces/{ns}/resourcequotas", json=quota).status_code == 201
    assert http.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("a")).status_code == 201
    r = http.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("b"))
    assert r.status_code == 403
    assert r.json()["message"] == (
        'pods "b" is forbidden: exceeded quota: be, requested: pods=1, used: pods=1, limited: pods=1'
    )
    assert http.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("c", cpu="100m")).status_code == 201


def test_service_changed_to_nodeport_is_charged(http: httpx.Client, ns: str) -> None:
    quota = {"metadata": {"name": "np"}, "spec": {"hard": {"services.nodeports": "0"}}}
    assert http.post(f"/api/v1/namespaces/{ns}/resourcequotas", json=quota).status_code == 201
    svc = {"metadata": {"name": "s"}, "spec": {"selector": {"app": "s"}, "ports": [{"port": 80}]}}
    assert http.post(f"/api/v1/namespaces/{ns}/services", json=svc).status_code == 201
    r = http.patch(
        f"/api/v1/namespaces/{ns}/services/s",
        json={"spec": {"type": "NodePort"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        'services "s" is forbidden: exceeded quota: np, requested: services.nodeports=1, '
        "used: services.nodeports=0, limited: services.nodeports=0"
    )
    got = http.get(f"/api/v1/namespaces/{ns}/services/s").json()
    assert got["spec"]["type"] == "ClusterIP" and "nodePort" not in got["spec"]["ports"][0]
    # an update that adds nothing passes
    r = http.patch(
        f"/api/v1/namespaces/{ns}/services/s",
        json={"metadata": {"labels": {"x": "y"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200, r.text
