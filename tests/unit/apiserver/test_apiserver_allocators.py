"""ClusterIP/NodePort allocation: uniqueness, honoured requests, release, rebuild from the store."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlplane.api import errors, registry
from controlplane.apiserver.allocators import ServiceAllocators
from controlplane.storage.memory import MemoryStore


def svc(name: str, type_: str = "ClusterIP", ip: str | None = None, node_port: int | None = None) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 80, "protocol": "TCP"}
    if node_port is not None:
        port["nodePort"] = node_port
    spec: dict[str, Any] = {"type": type_, "ports": [port]}
    if ip is not None:
        spec["clusterIP"] = ip
    return {"metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_allocates_unique_ips_in_range_skipping_network_address() -> None:
    a = ServiceAllocators("10.96.0.0/29", "30000-30002")
    ips = []
    for i in range(6):  # .1 … .6 usable in a /29
        s = svc(f"s{i}")
        a.allocate_service(s, None)(True)
        ips.append(s["spec"]["clusterIP"])
        assert s["spec"]["clusterIPs"] == [s["spec"]["clusterIP"]]
    assert len(set(ips)) == 6
    assert "10.96.0.0" not in ips and "10.96.0.7" not in ips
    with pytest.raises(errors.Invalid, match="range is full"):
        a.allocate_service(svc("full"), None)


def test_requested_ip_taken_or_out_of_range_is_422() -> None:
    a = ServiceAllocators("10.96.0.0/12", "30000-32767")
    a.allocate_service(svc("a", ip="10.96.0.10"), None)(True)
    with pytest.raises(errors.Invalid) as e:
        a.allocate_service(svc("b", ip="10.96.0.10"), None)
    assert e.value.causes[0].field == "spec.clusterIPs" and "already allocated" in e.value.causes[0].message
    with pytest.raises(errors.Invalid, match="not in the valid range"):
        a.allocate_service(svc("c", ip="192.168.1.1"), None)


def test_failed_write_gives_allocations_back() -> None:
    a = ServiceAllocators("10.96.0.0/12", "30000-32767")
    s = svc("a", "NodePort", ip="10.96.0.20", node_port=30080)
    a.allocate_service(s, None)(False)  # the store refused the create
    again = svc("b", "NodePort", ip="10.96.0.20", node_port=30080)
    a.allocate_service(again, None)(True)
    assert again["spec"]["ports"][0]["nodePort"] == 30080


def test_node_ports_allocated_honoured_and_released() -> None:
    a = ServiceAllocators("10.96.0.0/12", "30000-30001")
    s1 = svc("a", "NodePort")
    a.allocate_service(s1, None)(True)
    assert 30000 <= s1["spec"]["ports"][0]["nodePort"] <= 30001
    with pytest.raises(errors.Invalid, match="not in the valid range"):
        a.allocate_service(svc("b", "NodePort", node_port=40000), None)
    taken = s1["spec"]["ports"][0]["nodePort"]
    with pytest.raises(errors.Invalid, match="already allocated") as e:
        a.allocate_service(svc("c", "NodePort", node_port=taken), None)
    assert e.value.causes[0].field == "spec.ports[0].nodePort"
    a.release_service(s1)
    a.allocate_service(svc("d", "NodePort", node_port=taken), None)(True)


def test_update_keeps_ip_and_node_port_and_type_change_releases() -> None:
    a = ServiceAllocators("10.96.0.0/12", "30000-32767")
    old = svc("a", "NodePort")
    a.allocate_service(old, None)(True)
    new = svc("a", "NodePort")  # a re-apply without the allocated values
    a.allocate_service(new, old)(True)
    assert new["spec"]["clusterIP"] == old["spec"]["clusterIP"]
    assert new["spec"]["ports"][0]["nodePort"] == old["spec"]["ports"][0]["nodePort"]
    as_cip = svc("a", "ClusterIP")
    a.allocate_service(as_cip, new)(True)
    assert "nodePort" not in as_cip["spec"]["ports"][0]
    assert old["spec"]["ports"][0]["nodePort"] not in a.ports.allocated()
    changed = svc("a", ip="10.96.0.99")
    with pytest.raises(errors.Invalid, match="immutable"):
        a.allocate_service(changed, as_cip)


def test_headless_and_external_name_get_no_ip() -> None:
    a = ServiceAllocators("10.96.0.0/12", "30000-32767")
    h = svc("h", ip="None")
    a.allocate_service(h, None)(True)
    assert h["spec"]["clusterIP"] == "None"
    e = svc("e", "ExternalName")
    a.allocate_service(e, None)(True)
    assert "clusterIP" not in e["spec"]
    assert a.ips.allocated() == set()


def test_rebuild_from_store() -> None:
    store = MemoryStore()
    for s in (svc("a", "NodePort", ip="10.96.0.5", node_port=30005), svc("b", ip="10.96.0.6")):
        store.create(registry.SERVICES.storage_key(s["metadata"]["name"], "default"), orjson.dumps(s))
    a = ServiceAllocators("10.96.0.0/12", "30000-32767")
    a.rebuild(store)
    assert a.ips.allocated() == {"10.96.0.5", "10.96.0.6"}
    assert a.ports.allocated() == {30005}
    with pytest.raises(errors.Invalid):
        a.allocate_service(svc("c", ip="10.96.0.5"), None)
