"""The aggregation layer end to end on one machine: a real API server process, a metrics server in this
process as the backend (its store filled by hand, its authorizer recording the SubjectAccessReviews it
would send), an APIService pointing at it; real kubectl 1.33 (and 1.27) on top.

Checks: the availability controller marks the APIService Available, discovery lists metrics.k8s.io,
requests are proxied with the front-proxy client certificate and the caller's identity in
X-Remote-User/X-Remote-Group (seen by the backend's authorizer), ``kubectl top nodes`` and
``kubectl get apiservices`` work, a forged X-Remote-User from a client is not believed, and when the
backend goes away the APIService turns False (FailedDiscoveryCheck) and proxied requests get 503.
"""

from __future__ import annotations

import base64
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from controlplane import pki
from controlplane.metricsserver.server import MetricsAPI, SarAuthorizer, serve_https
from controlplane.metricsserver.storage import MetricsStore, NodeBatch, Point
from tests.helpers.apiserver import RunningApiServer, free_port, start_apiserver
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for

NODE = {"metadata": {"name": "kl-node1", "labels": {"role": "worker"}}}


class Backend:
    def __init__(self, data_dir: Path) -> None:
        self.reviews: list[dict[str, Any]] = []
        a = pki.ensure_aggregator_pki(data_dir)
        store = MetricsStore()
        for i in range(2):
            t = 1000.0 + 5 * i
            store.store("kl-node1", NodeBatch(Point(t, 10.0 + 2.5 * i, 256 << 20, t), {}))

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            self.reviews.append(body)
            return {**body, "status": {"allowed": True}}  # this stand-in backend allows what it is asked

        self.port = free_port()
        self.httpd = serve_https(
            MetricsAPI(store, lambda: [NODE], list),
            SarAuthorizer(post),
            cert=a.metrics_server_cert,
            key=a.metrics_server_key,
            client_ca=data_dir / "pki" / "ca.crt",
            requestheader_ca=a.front_proxy_ca_cert,
            host="127.0.0.1",
            port=self.port,
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RunningApiServer, Backend]]:
    srv = start_apiserver(tmp_path)
    backend = Backend(srv.data_dir)
    try:
        yield srv, backend
    finally:
        backend.stop()
        srv.stop()


def _register(srv: RunningApiServer, port: int) -> None:
    ca = base64.b64encode((srv.data_dir / "pki" / "ca.crt").read_bytes()).decode()
    meta = {"name": "metrics-server", "namespace": "kube-system"}
    with srv.http() as h:
        for path, obj in [
            ("/api/v1/namespaces/kube-system/services", {"metadata": meta, "spec": {"ports": [
                {"name": "https", "port": 443, "targetPort": port}]}}),
            ("/api/v1/namespaces/kube-system/endpoints", {"metadata": meta, "subsets": [
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}),
            ("/apis/apiregistration.k8s.io/v1/apiservices", {
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "caBundle": ca,
                         "service": {"namespace": "kube-system", "name": "metrics-server", "port": 443},
                         "groupPriorityMinimum": 100, "versionPriority": 100}}),
        ]:  # fmt: skip
            r = h.post(path, json=obj)
            assert r.status_code == 201, r.text


def _available(srv: RunningApiServer) -> str:
    with srv.http() as h:
        obj = h.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io").json()
    conds = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Available"]
    return f"{conds[0]['status']}:{conds[0]['reason']}" if conds else ""


def _kubectl(srv: RunningApiServer, version: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_binary(version), "--kubeconfig", str(srv.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_aggregated_metrics_api(cluster: tuple[RunningApiServer, Backend]) -> None:
    srv, backend = cluster
    with srv.http() as h:
        assert "metrics.k8s.io" not in h.get("/apis").text
        assert h.get("/apis/metrics.k8s.io/v1beta1/nodes").status_code == 404
    _register(srv, backend.port)
    wait_for(lambda: _available(srv) == "True:Passed", timeout=20, message="the APIService to become Available")

    with srv.http() as h:
        groups = [g["name"] for g in h.get("/apis").json()["groups"]]
        assert "metrics.k8s.io" in groups and "apiregistration.k8s.io" in groups
        agg = h.get("/apis", headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"})
        item = next(i for i in agg.json()["items"] if i["metadata"]["name"] == "metrics.k8s.io")
        assert {r["resource"] for r in item["versions"][0]["resources"]} == {"nodes", "pods"}
        r = h.get("/apis/metrics.k8s.io/v1beta1/nodes")
        assert r.status_code == 200, r.text
        assert r.json()["items"][0]["usage"] == {"cpu": "500m", "memory": "256Mi"}
        assert h.get("/apis/metrics.k8s.io/v1beta1/nodes/nope").json()["reason"] == "NotFound"
        assert h.get("/apis/metrics.k8s.io").json()["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
        # the client's own X-Remote-User is dropped: the backend sees the authenticated admin
        h.get(
            "/apis/metrics.k8s.io/v1beta1/nodes",
            headers={"X-Remote-User": "mallory", "X-Remote-Group": "system:masters"},
        )
    # the backend asked about the real caller, whose identity came in X-Remote-* from the front proxy
    # (and the availability check's own identity, system:kube-aggregator in system:masters); every
    # authenticated user is in system:authenticated, added by the backend if the headers lack it
    users = {(rv["spec"]["user"], tuple(rv["spec"]["groups"])) for rv in backend.reviews}
    assert users == {
        ("kubernetes-admin", ("system:masters", "system:authenticated")),
        ("system:kube-aggregator", ("system:masters", "system:authenticated")),
    }
    assert all("mallory" not in str(rv) for rv in backend.reviews)

    # a cluster client certificate straight at the backend authenticates as itself; none → 401
    ctx = ssl.create_default_context(cafile=str(srv.ca_file))
    with httpx.Client(verify=ctx) as raw:
        assert raw.get(f"https://127.0.0.1:{backend.port}/apis/metrics.k8s.io/v1beta1/nodes").status_code == 401

    top = _kubectl(srv, "1.33", "top", "nodes")
    assert top.returncode == 0, top.stderr
    assert top.stdout.split("\n")[1].split()[:2] == ["kl-node1", "500m"], top.stdout
    top27 = _kubectl(srv, "1.27", "top", "nodes", "-l", "role=worker")
    assert top27.returncode == 0 and "kl-node1" in top27.stdout, top27.stderr
    got = _kubectl(srv, "1.33", "get", "apiservices")
    assert got.returncode == 0, got.stderr
    assert got.stdout.split("\n")[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    rows = {line.split()[0]: line.split()[1:3] for line in got.stdout.splitlines()[1:]}
    assert rows["v1beta1.metrics.k8s.io"] == ["kube-system/metrics-server", "True"], got.stdout
    # the built-in groups are Local APIServices, as kube-aggregator's autoregister makes them
    assert rows["v1."] == ["Local", "True"] and rows["v1.apps"] == ["Local", "True"], got.stdout

    backend.stop()
    wait_for(lambda: _available(srv) == "False:FailedDiscoveryCheck", timeout=20, message="the APIService to fail")
    with srv.http() as h:
        r = h.get("/apis/metrics.k8s.io/v1beta1/nodes")
        assert r.status_code == 503 and r.json()["message"] == "service unavailable"
        assert "metrics.k8s.io" not in [g["name"] for g in h.get("/apis").json()["groups"]]
        h.delete("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.metrics.k8s.io").raise_for_status()
