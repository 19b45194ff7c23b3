"""The proxier fed by real informers from a real API server (memory store), applying to the fake
backend: Services and EndpointSlices created, changed and deleted through the API show up in the
rules (traced with the packet tracer). No kernel state is touched by this test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import registry
from proxy.backend.fake import FakeBackend
from proxy.proxier import Proxier
from proxy.rules import ProxyOptions, service_chain
from proxy.sources import InformerSource
from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.wait import wait_for
from tests.unit.proxy.tracer import Tracer


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path, store="memory")
    try:
        yield srv
    finally:
        srv.stop()


def trace(backend: FakeBackend, dst: str) -> str:
    return Tracer(backend.tables).trace("10.244.1.9", dst, 80).output


def test_proxier_follows_the_api(apiserver: RunningApiServer) -> None:
    client = apiserver.client()
    svc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.50", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    es: dict[str, Any] = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.1.2"], "conditions": {"ready": True}, "nodeName": "node1"}],
    }
    client.create(registry.SERVICES, svc, namespace="default")
    created = client.create(registry.ENDPOINTSLICES, es, namespace="default")
    backend = FakeBackend()
    proxier = Proxier(backend, ProxyOptions(node_name="node1"), min_sync_period=0, sync_period=30)
    source = InformerSource(proxier, str(apiserver.kubeconfig), "node1")
    stop = threading.Event()
    loop = threading.Thread(target=proxier.runner.loop, args=(stop,), daemon=True)
    source.start(stop)
    loop.start()
    try:
        wait_for(lambda: trace(backend, "10.96.0.50") == "10.244.1.2:8080", 15, message="rules from the API")
        created["endpoints"][0]["conditions"]["ready"] = False
        client.update(registry.ENDPOINTSLICES, created)
        wait_for(lambda: trace(backend, "10.96.0.50") == "REJECT", 10, message="not-ready endpoint dropped")
        client.delete(registry.SERVICES, "web", namespace="default")
        wait_for(lambda: trace(backend, "10.96.0.50") == "ACCEPT", 10, message="service gone")
        # (the API server's own default/kubernetes service may have chains; web's are gone)
        assert service_chain("KUBE-SVC-", "default/web:http", "tcp") not in backend.tables["nat"]
        assert proxier.last_applied is not None and not proxier.last_applied.full
    finally:
        stop.set()
        proxier.runner.wake()
        loop.join(5)
        source.stop()
