"""The ``kubernetes`` Service's endpoints by lease (kube-apiserver's ``--endpoint-reconciler-type=lease``).

Role: with several API servers on one store, ``default/kubernetes`` (Endpoints and EndpointSlice)
must list every live API server and no dead one. As in Kubernetes (pkg/controlplane/reconcilers/
lease.go), each API server keeps a record of its own address under ``/masterleases/<ip>`` with a
time to live, renews it every ``interval``, and after each renewal writes the Endpoints and the
EndpointSlice with the addresses of every unexpired record. One that stops renewing (killed,
cut off) drops out within ``ttl + interval``; one that shuts down cleanly deletes its record and
rewrites the endpoints at once (Kubernetes' pre-shutdown ``RemoveEndpoints``).

Difference from Kubernetes, and why: etcd expires Kubernetes' records by an etcd lease; our store
interface has no TTLs (SQLite has none), so a record carries its ``renewTime`` and ``ttlSeconds``
and readers treat it as expired by the clock; the reconciler that sees an expired record deletes
it (compare-and-delete on its revision, so a record renewed meanwhile is kept). The API servers of
one lab share one clock.

Invariants: the written address list is sorted, so API servers that see the same records write the
same objects and never flap; a write happens only when the list changed (``ensure`` compares).
The records live outside ``/registry/``: no watch cache or client ever sees them.

Concurrency: ``reconcile``/``remove`` are blocking (store calls) and run on the API server's
thread pool; ``run`` is the periodic coroutine. Two API servers writing at once is safe: the last
writer wins and both write the same list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from controlplane.storage.interface import ConflictError, KeyExistsError, KeyNotFoundError, KeyValue, Store, StoreError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PREFIX = "/masterleases/"
DEFAULT_TTL = 15.0  # Kubernetes' DefaultEndpointReconcilerTTL
DEFAULT_INTERVAL = 10.0  # Kubernetes' DefaultEndpointReconcilerInterval


def record(ip: str, port: int, now: float, ttl: float) -> bytes:
    return orjson.dumps({"ip": ip, "port": port, "renewTime": now, "ttlSeconds": ttl})


def split_live(kvs: list[KeyValue], now: float) -> tuple[list[str], list[KeyValue]]:
    """(sorted live addresses, expired or unreadable records) of the ``/masterleases/`` records."""
    live: set[str] = set()
    expired: list[KeyValue] = []
    for kv in kvs:
        try:
            doc = orjson.loads(kv.value)
            ip = str(doc["ip"])
            alive = float(doc["renewTime"]) + float(doc["ttlSeconds"]) > now
        except (ValueError, KeyError, TypeError):
            expired.append(kv)
            continue
        if alive:
            live.add(ip)
        else:
            expired.append(kv)
    return sorted(live, key=_ip_key), expired


def _ip_key(ip: str) -> tuple[int, ...] | tuple[str]:
    try:
        return tuple(int(p) for p in ip.split("."))
    except ValueError:
        return (ip,)


def endpoints_objects(ips: list[str], port: int) -> tuple[Obj, Obj]:
    """``default/kubernetes`` Endpoints and EndpointSlice listing ``ips`` (what kube-apiserver writes)."""
    ep: Obj = {
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": [
            {
                "addresses": [{"ip": ip} for ip in ips],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            }
        ]
        if ips
        else [],
    }
    # kube-proxy style consumers read EndpointSlices; the API server owns this one too (the
    # endpointslice controller leaves selector-less Services alone).
    eps: Obj = {
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    return ep, eps


class LeaseEndpointReconciler:
    """One API server's lease record and its share of writing ``default/kubernetes``.

    ``write(ips)`` writes the Endpoints and EndpointSlice (the API server's ``_ensure`` on both:
    create, or update when they differ).
    """

    def __init__(
        self,
        store: Store,
        write: Callable[[list[str]], None],
        ip: str,
        port: int,
        *,
        ttl: float = DEFAULT_TTL,
        interval: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.write = write
        self.ip = ip
        self.port = port
        self.ttl = ttl
        self.interval = interval if interval is not None else min(DEFAULT_INTERVAL, ttl * 2 / 3)
        self.clock = clock
        self.key = PREFIX + ip
        self.last: list[str] = []

    def renew(self) -> None:
        value = record(self.ip, self.port, self.clock(), self.ttl)
        for _ in range(5):
            kv = self.store.get(self.key)
            try:
                if kv is None:
                    self.store.create(self.key, value)
                else:
                    self.store.update(self.key, value, kv.mod_revision)
                return
            except (KeyExistsError, ConflictError, KeyNotFoundError):
                continue  # another writer (a restarted twin) moved it: read again
        raise StoreError(f"could not renew {self.key}: it keeps changing")

    def live(self) -> list[str]:
        kvs, _ = self.store.list(PREFIX)
        ips, expired = split_live(kvs, self.clock())
        for kv in expired:
            try:
                self.store.delete(kv.key, kv.mod_revision)
                log.info("API server %s stopped renewing its endpoint lease: removed", kv.key[len(PREFIX) :])
            except (ConflictError, KeyNotFoundError):
                pass  # renewed or removed meanwhile
        return ips

    def reconcile(self) -> list[str]:
        """Renew our record, then write the endpoints of every live API server; returns them."""
        self.renew()
        ips = self.live()
        if self.ip not in ips:  # our own record is fresh by construction
            ips = sorted({*ips, self.ip}, key=_ip_key)
        self.write(ips)
        if ips != self.last:
            log.info("kubernetes Service endpoints: %s", ", ".join(ips))
        self.last = ips
        return ips

    def remove(self) -> None:
        """On shutdown: drop our record and write the endpoints without us (best effort)."""
        try:
            kv = self.store.get(self.key)
            if kv is not None:
                self.store.delete(self.key, kv.mod_revision)
            self.write([ip for ip in self.live() if ip != self.ip])
        except Exception as exc:
            log.warning("could not remove this API server from the kubernetes endpoints: %s", exc)

    async def run(self, call: Callable[[Callable[[], Any]], Awaitable[Any]]) -> None:
        """Reconcile every ``interval`` until cancelled; ``call`` runs a blocking function off the loop."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await call(self.reconcile)
            except StoreError as exc:
                log.warning("endpoint lease reconcile failed: %s", exc)
            except Exception:
                log.exception("endpoint lease reconcile failed")
