"""The dashboard's hub against a real API server (in-process data, no lab): informers → state → picture.

A real ``kubelab apiserver`` (memory store) holds a Node, a Pod, a Service and its EndpointSlice; the
hub's informers list and watch them, and each published state carries the tables and the Graphviz
SVG. Deleting the pod through the API removes it from the next state, pushed without any request
from a page. Needs Graphviz's ``dot`` (lab/programs.txt).
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.api import registry
from lab.dashboard.hub import Hub
from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot comes with `make deps`")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def objects(client: Any) -> None:
    client.create(registry.NODES, {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "kl-node1"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
    })  # fmt: skip
    client.create(registry.PODS, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"nodeName": "kl-node1", "containers": [{"name": "web", "image": "192.168.56.1:5000/kubelab/hello"}]},
    }, namespace="default")  # fmt: skip
    client.create(registry.SERVICES, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }, namespace="default")  # fmt: skip


def test_the_hub_draws_what_the_api_holds_and_follows_a_deletion(server: RunningApiServer) -> None:
    client = server.client()
    objects(client)
    hub = Hub(client)
    hub.start()
    try:
        def drawn(ids: set[str]) -> bool:
            st = hub.state
            return st is not None and all(f'id="{i}"' in html.unescape(st.svg) for i in ids)

        wait_for(lambda: drawn({"pod:default/web", "svc:default/web", "node:kl-node1"}), timeout=15,
                 message="the pod, the service and the node in the picture")  # fmt: skip
        st = hub.state
        assert st is not None
        assert [p["name"] for p in st.pods] == ["web"] and st.pods[0]["node"] == "kl-node1"
        assert st.services[[s["name"] for s in st.services].index("web")]["clusterIP"].startswith("10.96.")
        assert st.metrics == "metrics not available"  # no metrics.k8s.io served by a bare API server
        before = st.version
        client.delete(registry.PODS, "web", namespace="default", grace_period_seconds=0)
        wait_for(lambda: hub.state is not None and "pod:default/web" not in html.unescape(hub.state.svg),
                 timeout=5, message="the deleted pod gone from the picture")  # fmt: skip
        assert hub.state is not None and hub.state.version > before
        print(f"\nhub render: {hub.render_seconds * 1000:.0f} ms")
    finally:
        hub.stop()
        client.close()
