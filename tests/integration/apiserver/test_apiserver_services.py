"""Service IP and NodePort allocation through the real server (sqlite), including a restart."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver

SVC = "/api/v1/namespaces/default/services"


@pytest.fixture(scope="module")
def sq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    srv = start_apiserver(
        tmp_path_factory.mktemp("svc"),
        store="sqlite",
        extra_args=["--service-cluster-ip-range", "10.96.0.0/28", "--service-node-port-range", "30000-30009"],
    )
    try:
        yield srv
    finally:
        srv.stop()


def svc(name: str, type_: str = "ClusterIP", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": type_, "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}], **spec},
    }


def test_kubernetes_service_and_endpoints(sq: RunningApiServer) -> None:
    with sq.http() as c:
        k = c.get(f"{SVC}/kubernetes").json()
        assert k["spec"]["clusterIP"] == "10.96.0.1"
        assert k["spec"]["ports"][0]["port"] == 443
        ep = c.get("/api/v1/namespaces/default/endpoints/kubernetes").json()
        assert ep["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"
        assert ep["subsets"][0]["ports"][0]["port"] == sq.port
        eps = c.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes").json()
        assert eps["endpoints"][0]["addresses"] == ["127.0.0.1"] and eps["ports"][0]["port"] == sq.port
        assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"


def test_allocation_unique_requested_and_freed(sq: RunningApiServer) -> None:
    with sq.http() as c:
        a = c.post(SVC, json=svc("alloc-a", "NodePort")).json()
        b = c.post(SVC, json=svc("alloc-b", "NodePort")).json()
        assert a["spec"]["clusterIP"] != b["spec"]["clusterIP"]
        assert a["spec"]["ports"][0]["nodePort"] != b["spec"]["ports"][0]["nodePort"]
        assert a["spec"]["ports"][0]["protocol"] == "TCP"  # defaulted
        ip = a["spec"]["clusterIP"]
        r = c.post(SVC, json=svc("alloc-c", clusterIP=ip))
        assert r.status_code == 422, r.text
        assert r.json()["details"]["causes"][0]["field"] == "spec.clusterIPs"
        assert c.get(f"{SVC}/alloc-c").status_code == 404  # nothing changed
        r = c.post(SVC, json=svc("alloc-d", "NodePort", ports=[{"port": 80, "nodePort": 31000}]))
        assert r.status_code == 422 and "valid range" in r.text
        assert c.delete(f"{SVC}/alloc-a").status_code == 200
        again = c.post(SVC, json=svc("alloc-e", clusterIP=ip))
        assert again.status_code == 201, again.text


def test_allocations_survive_restart(sq: RunningApiServer) -> None:
    with sq.http() as c:
        before = c.post(SVC, json=svc("restart-a", "NodePort")).json()
    sq.restart()
    with sq.http() as c:
        held_ip = before["spec"]["clusterIP"]
        held_port = before["spec"]["ports"][0]["nodePort"]
        r = c.post(SVC, json=svc("restart-b", clusterIP=held_ip))
        assert r.status_code == 422 and "already allocated" in r.text
        r = c.post(SVC, json=svc("restart-c", "NodePort", ports=[{"port": 80, "nodePort": held_port}]))
        assert r.status_code == 422 and "already allocated" in r.text
        items = c.get(SVC).json()["items"]
        ips = [s["spec"]["clusterIP"] for s in items]
        assert len(ips) == len(set(ips))
        # the kubernetes Service was not duplicated or re-allocated by the second bootstrap
        assert [s["metadata"]["name"] for s in items].count("kubernetes") == 1
