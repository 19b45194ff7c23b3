"""Endpoints/EndpointSlice: pure computation tables and sync() against the fake API.

Pod addresses: 10.244.<node>.<n>; service ``web`` selects ``app=web``; port 80 → target ``http``
(named, resolved per pod) or 8080 (number).
"""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api.models import Pod, Service, ServicePort
from controlplane.api.registry import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from controlplane.controllers.endpoints import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    TRIGGER_TIME,
    EndpointsController,
    EndpointSliceController,
    compute_slice_contents,
    compute_subsets,
    resolve_target_port,
)
from tests.unit.controllers.fake import FakeCluster


def svc(target: Any = "http", selector: dict[str, str] | None = None, name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": "svc-uid"},
        "spec": {
            "selector": {"app": "web"} if selector is None else selector,
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "targetPort": target, "protocol": "TCP"}],
            **spec,
        },
    }


def pod(
    name: str,
    ip: str,
    *,
    ready: bool = True,
    port_name: str = "http",
    port: int = 8080,
    node: str = "n1",
    labels: dict[str, str] | None = None,
    deleting: bool = False,
    phase: str = "Running",
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "labels": {"app": "web"} if labels is None else labels,
    }
    if deleting:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": md,
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}],
        },
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.mark.parametrize(
    ("target", "pod_port_name", "want"),
    [(8080, "http", 8080), ("8080", "x", 8080), ("http", "http", 9090), ("http", "other", None)],
)
def test_resolve_target_port(target: Any, pod_port_name: str, want: int | None) -> None:
    sp = ServicePort.decode({"port": 80, "targetPort": target})
    assert resolve_target_port(sp, Pod.decode(pod("a", "1.1.1.1", port_name=pod_port_name, port=9090))) == want


def test_subsets_ready_not_ready_terminating_and_per_pod_ports() -> None:
    pods = [
        pod("b", "10.244.1.3"),
        pod("a", "10.244.1.2"),
        pod("nr", "10.244.2.2", ready=False, node="n2"),
        pod("other-port", "10.244.2.3", port=9000),  # named port resolves to a different number
        pod("no-port", "10.244.2.4", port_name="metrics"),  # lacks the named port: not an endpoint
        pod("dying", "10.244.2.5", deleting=True),
        pod("done", "10.244.2.6", phase="Succeeded"),
        pod("no-ip", ""),
        pod("stranger", "10.244.2.7", labels={"app": "db"}),
    ]
    subsets = compute_subsets(Service.decode(svc()), [Pod.decode(p) for p in pods])
    assert subsets == [
        {
            "addresses": [
                {
                    "ip": "10.244.1.2",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"},
                },
                {
                    "ip": "10.244.1.3",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"},
                },
            ],
            "notReadyAddresses": [
                {
                    "ip": "10.244.2.2",
                    "nodeName": "n2",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "nr", "uid": "uid-nr"},
                }
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        },
        {
            "addresses": [
                {
                    "ip": "10.244.2.3",
                    "nodeName": "n1",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "other-port", "uid": "uid-other-port"},
                }
            ],
            "ports": [{"name": "http", "port": 9000, "protocol": "TCP"}],
        },
    ]


def test_publish_not_ready_addresses() -> None:
    subsets = compute_subsets(
        Service.decode(svc(publishNotReadyAddresses=True)), [Pod.decode(pod("nr", "10.244.1.2", ready=False))]
    )
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.1.2"]


def test_slices_conditions_and_chunking() -> None:
    pods = [pod(f"p{i:03d}", f"10.244.{i // 200 + 1}.{i % 200 + 1}") for i in range(150)]
    pods.append(pod("dying", "10.244.9.9", deleting=True))
    pods.append(pod("nr", "10.244.9.8", ready=False))
    chunks = compute_slice_contents(Service.decode(svc()), [Pod.decode(p) for p in pods])
    assert [len(eps) for _, eps in chunks] == [100, 52]
    by_name = {e["targetRef"]["name"]: e for _, eps in chunks for e in eps}
    assert by_name["dying"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert by_name["nr"]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert by_name["p000"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert by_name["p000"]["nodeName"] == "n1"


def test_sync_writes_endpoints_and_slices(cluster: FakeCluster) -> None:
    ctx = cluster.context()
    ep_ctl, sl_ctl = EndpointsController(ctx), EndpointSliceController(ctx)
    cluster.seed(SERVICES, svc())
    cluster.seed(PODS, pod("a", "10.244.1.2"))
    for ctl in (ep_ctl, sl_ctl):
        ctl.sync("default/web")
    ep = cluster.obj(ENDPOINTS, "web")
    assert ep is not None and ep["subsets"][0]["addresses"][0]["ip"] == "10.244.1.2"
    assert TRIGGER_TIME in ep["metadata"]["annotations"]
    slices = cluster.all(ENDPOINTSLICES)
    assert len(slices) == 1
    sl = slices[0]
    assert sl["metadata"]["labels"][SERVICE_NAME_LABEL] == "web"
    assert sl["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    owner = sl["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Service", "web", True)
    assert sl["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert TRIGGER_TIME in sl["metadata"]["annotations"]
    # converged: no writes
    n = len(cluster.calls)
    ep_ctl.sync("default/web")
    sl_ctl.sync("default/web")
    assert len(cluster.calls) == n
    # pod becomes not ready → moves to notReadyAddresses / ready false
    cluster.set_pod_state("a", ready=False, ip="10.244.1.2")
    ep_ctl.sync("default/web")
    sl_ctl.sync("default/web")
    ep = cluster.obj(ENDPOINTS, "web")
    assert ep is not None and "addresses" not in ep["subsets"][0]
    assert cluster.all(ENDPOINTSLICES)[0]["endpoints"][0]["conditions"]["ready"] is False
    # service deleted → endpoints and slices go
    cluster.delete(SERVICES, "web", "default")
    ep_ctl.sync("default/web")
    sl_ctl.sync("default/web")
    assert cluster.obj(ENDPOINTS, "web") is None and cluster.all(ENDPOINTSLICES) == []


def test_services_without_selector_and_kubernetes_left_alone(cluster: FakeCluster) -> None:
    ctx = cluster.context()
    ep_ctl, sl_ctl = EndpointsController(ctx), EndpointSliceController(ctx)
    cluster.seed(SERVICES, svc(selector={}, name="external"))
    k = svc(name="kubernetes")
    cluster.seed(SERVICES, k)
    cluster.seed(
        ENDPOINTS,
        {"metadata": {"name": "external", "namespace": "default"}, "subsets": [{"addresses": [{"ip": "192.0.2.1"}]}]},
    )
    for ctl in (ep_ctl, sl_ctl):
        ctl.sync("default/external")
        ctl.sync("default/kubernetes")
    assert cluster.obj(ENDPOINTS, "external")["subsets"][0]["addresses"][0]["ip"] == "192.0.2.1"  # type: ignore[index]
    assert cluster.obj(ENDPOINTS, "kubernetes") is None
    assert cluster.all(ENDPOINTSLICES) == []


def test_pod_events_enqueue_selecting_services(cluster: FakeCluster) -> None:
    ctl = EndpointsController(cluster.context())
    cluster.seed(SERVICES, svc())
    cluster.seed(SERVICES, svc(name="db", selector={"app": "db"}))
    cluster.queues["endpoints"].drain()
    cluster.seed(PODS, pod("a", "10.244.1.2"))
    assert cluster.queues["endpoints"].drain() == ["default/web"]
    assert ctl.take_trigger("default/web") <= cluster.clock.now()
