"""The lease endpoint reconciler (controlplane/apiserver/endpointreconciler.py) on a memory store with
a fake clock: live records listed sorted, expired ones removed by whoever sees them, a renewed one
kept, a clean removal at once."""

from __future__ import annotations

from controlplane.apiserver.endpointreconciler import (
    PREFIX,
    LeaseEndpointReconciler,
    endpoints_objects,
    record,
    split_live,
)
from controlplane.storage.interface import KeyValue
from controlplane.storage.memory import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reconciler(store: MemoryStore, clock: Clock, ip: str, written: dict[str, list[str]]) -> LeaseEndpointReconciler:
    return LeaseEndpointReconciler(store, lambda ips: written.__setitem__(ip, ips), ip, 6443, ttl=15, clock=clock)


def test_split_live_sorts_numerically_and_reports_expired_and_garbage() -> None:
    kvs = [
        KeyValue(PREFIX + "192.168.56.23", record("192.168.56.23", 6443, 100, 15), 1, 1),
        KeyValue(PREFIX + "192.168.56.3", record("192.168.56.3", 6443, 100, 15), 2, 2),
        KeyValue(PREFIX + "192.168.56.21", record("192.168.56.21", 6443, 80, 15), 3, 3),
        KeyValue(PREFIX + "junk", b"not json", 4, 4),
    ]
    live, expired = split_live(kvs, now=110)
    assert live == ["192.168.56.3", "192.168.56.23"]
    assert [kv.key for kv in expired] == [PREFIX + "192.168.56.21", PREFIX + "junk"]


def test_endpoints_objects_list_every_address_or_none() -> None:
    ep, eps = endpoints_objects(["10.0.0.1", "10.0.0.2"], 6443)
    assert ep["subsets"] == [
        {
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        }
    ]
    assert [e["addresses"] for e in eps["endpoints"]] == [["10.0.0.1"], ["10.0.0.2"]]
    assert eps["metadata"]["labels"] == {"kubernetes.io/service-name": "kubernetes"}
    ep, eps = endpoints_objects([], 6443)
    assert ep["subsets"] == [] and eps["endpoints"] == []


def test_two_servers_see_each_other_until_one_stops_renewing() -> None:
    store, clock, written = MemoryStore(), Clock(), {}
    a = _reconciler(store, clock, "192.168.56.21", written)
    b = _reconciler(store, clock, "192.168.56.22", written)
    assert a.reconcile() == ["192.168.56.21"]
    assert b.reconcile() == ["192.168.56.21", "192.168.56.22"]
    clock.now += 10
    assert a.reconcile() == ["192.168.56.21", "192.168.56.22"]  # b's record 10 s old: alive
    clock.now += 10  # b last renewed 20 s ago (> ttl 15): a drops it and deletes its record
    assert a.reconcile() == ["192.168.56.21"]
    assert store.get(PREFIX + "192.168.56.22") is None
    assert written["192.168.56.21"] == ["192.168.56.21"]
    assert b.reconcile() == ["192.168.56.21", "192.168.56.22"]  # b back: listed again


def test_clean_shutdown_removes_at_once() -> None:
    store, clock, written = MemoryStore(), Clock(), {}
    a = _reconciler(store, clock, "192.168.56.21", written)
    b = _reconciler(store, clock, "192.168.56.22", written)
    a.reconcile()
    b.reconcile()
    b.remove()
    assert written["192.168.56.22"] == ["192.168.56.21"]
    assert a.reconcile() == ["192.168.56.21"]
    assert [kv.key for kv in store.list(PREFIX)[0]] == [PREFIX + "192.168.56.21"]
