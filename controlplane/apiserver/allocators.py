"""ClusterIP and NodePort allocation for Services.

Role: give every Service that needs one a unique ``spec.clusterIP`` from the service range
(``--service-cluster-ip-range``, default 10.96.0.0/12) and every NodePort/LoadBalancer port a unique
``nodePort`` from ``--service-node-port-range`` (default 30000-32767); honour requested values when
they are free and in range (422 naming the field otherwise); free them when a Service is deleted or
stops needing them.

Invariants:
- The allocated sets equal what the stored Services hold. The server rebuilds them from the store at
  start (``rebuild``), so allocation survives restarts without a separate bitmap object; every
  allocation made for a write is committed or rolled back by ``finish(committed)`` once the store
  has answered.
- The network address and the broadcast address of the range are never handed out.
- Automatic allocation walks the range from a rotating cursor, so a freed IP is not reused at once
  (fewer surprises for clients that cached the old Service).

Concurrency: one lock per allocator; safe from the server's store threads.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import Any

import orjson

from controlplane.api import errors, registry
from controlplane.storage.interface import Store

Obj = dict[str, Any]


class RangeFull(Exception):
    pass


class _Allocator:
    """A set of integers in ``[lo, hi]`` with a rotating cursor."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.used: set[int] = set()
        self._cursor = lo
        self.lock = threading.Lock()

    def contains(self, v: int) -> bool:
        return self.lo <= v <= self.hi

    def take(self, v: int) -> bool:
        with self.lock:
            if v in self.used:
                return False
            self.used.add(v)
            return True

    def next(self) -> int:
        with self.lock:
            size = self.hi - self.lo + 1
            if len(self.used) >= size:
                raise RangeFull()
            v = self._cursor
            for _ in range(size):
                if v > self.hi:
                    v = self.lo
                if v not in self.used:
                    self.used.add(v)
                    self._cursor = v + 1
                    return v
                v += 1
            raise RangeFull()

    def release(self, v: int) -> None:
        with self.lock:
            self.used.discard(v)

    def free_count(self) -> int:
        with self.lock:
            return self.hi - self.lo + 1 - len(self.used)


class ClusterIPAllocator:
    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr, strict=False)
        first = int(self.net.network_address) + 1
        last = int(self.net.broadcast_address) - 1 if self.net.num_addresses > 2 else int(self.net.broadcast_address)
        self._a = _Allocator(first, last)

    def in_range(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return addr.version == self.net.version and self._a.contains(int(addr))

    def take(self, ip: str) -> bool:
        return self._a.take(int(ipaddress.ip_address(ip)))

    def next(self) -> str:
        return str(ipaddress.ip_address(self._a.next()))

    def release(self, ip: str) -> None:
        if self.in_range(ip):
            self._a.release(int(ipaddress.ip_address(ip)))

    def allocated(self) -> set[str]:
        with self._a.lock:
            return {str(ipaddress.ip_address(v)) for v in self._a.used}


class PortAllocator:
    def __init__(self, port_range: str) -> None:
        lo, sep, hi = port_range.partition("-")
        if not sep or not lo.strip().isdigit() or not hi.strip().isdigit() or int(lo) > int(hi):
            raise ValueError(f"invalid port range {port_range!r}: expected LOW-HIGH")
        self._a = _Allocator(int(lo), int(hi))
        self.range = f"{int(lo)}-{int(hi)}"

    def in_range(self, port: int) -> bool:
        return self._a.contains(port)

    def take(self, port: int) -> bool:
        return self._a.take(port)

    def next(self) -> int:
        return self._a.next()

    def release(self, port: int) -> None:
        if self.in_range(port):
            self._a.release(port)

    def allocated(self) -> set[int]:
        with self._a.lock:
            return set(self._a.used)


def _needs_cluster_ip(spec: Obj) -> bool:
    return spec.get("type", "ClusterIP") != "ExternalName" and spec.get("clusterIP") != "None"


def _needs_node_ports(spec: Obj) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _node_ports(svc: Obj | None) -> list[int]:
    if not svc:
        return []
    out = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        if isinstance(p, dict) and isinstance(p.get("nodePort"), int) and p["nodePort"]:
            out.append(p["nodePort"])
    return out


def _cluster_ip(svc: Obj | None) -> str:
    if not svc:
        return ""
    ip = (svc.get("spec") or {}).get("clusterIP")
    return ip if isinstance(ip, str) and ip not in ("", "None") else ""


class ServiceAllocators:
    def __init__(self, cidr: str, node_port_range: str) -> None:
        self.ips = ClusterIPAllocator(cidr)
        self.ports = PortAllocator(node_port_range)

    def rebuild(self, store: Store) -> None:
        """Mark every IP and port held by a stored Service (called once at start)."""
        kvs, _rev = store.list(registry.SERVICES.storage_prefix())
        for kv in kvs:
            svc = orjson.loads(kv.value)
            ip = _cluster_ip(svc)
            if ip and self.ips.in_range(ip):
                self.ips.take(ip)
            for port in _node_ports(svc):
                if self.ports.in_range(port):
                    self.ports.take(port)

    def allocate_service(self, svc: Obj, old: Obj | None) -> Callable[[bool], None]:
        """Fill in ``clusterIP(s)`` and ``nodePort``s of ``svc`` (in place).

        Returns ``finish(committed)``: on False, gives back what this call took; on True, frees
        what ``old`` held that ``svc`` no longer does.
        """
        spec = svc.get("spec")
        if not isinstance(spec, dict):
            return _noop
        name = str((svc.get("metadata") or {}).get("name") or "")
        taken_ips: list[str] = []
        taken_ports: list[int] = []

        def rollback() -> None:
            for ip in taken_ips:
                self.ips.release(ip)
            for p in taken_ports:
                self.ports.release(p)

        try:
            self._cluster_ip(spec, old, name, taken_ips)
            self._node_ports(spec, old, name, taken_ports)
        except BaseException:
            rollback()
            raise

        def finish(committed: bool) -> None:
            if not committed:
                rollback()
                return
            if old is not None:
                if _cluster_ip(old) and _cluster_ip(old) != _cluster_ip(svc):
                    self.ips.release(_cluster_ip(old))
                keep = set(_node_ports(svc))
                for p in _node_ports(old):
                    if p not in keep:
                        self.ports.release(p)

        return finish

    def _cluster_ip(self, spec: Obj, old: Obj | None, name: str, taken: list[str]) -> None:
        old_ip = _cluster_ip(old)
        want = spec.get("clusterIP")
        if old is not None:
            old_raw = (old.get("spec") or {}).get("clusterIP")
            if want in (None, "") and old_raw:
                want = old_raw  # unset in the update: keep what was allocated
                spec["clusterIP"] = want
            elif old_raw and want != old_raw and spec.get("type") != "ExternalName":
                raise errors.invalid(
                    "Service", name, [errors.Cause("spec.clusterIP", f"Invalid value: {want!r}: field is immutable")]
                )
        if not _needs_cluster_ip(spec):
            if spec.get("type") == "ExternalName":
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            else:
                spec["clusterIPs"] = ["None"]
            return
        if want in (None, ""):
            try:
                ip = self.ips.next()
            except RangeFull:
                raise errors.invalid(
                    "Service", name, [errors.Cause("spec.clusterIP", "failed to allocate an IP: the range is full")]
                ) from None
            taken.append(ip)
            spec["clusterIP"] = ip
        elif want != old_ip:
            if not isinstance(want, str) or not self.ips.in_range(want):
                raise errors.invalid(
                    "Service",
                    name,
                    [
                        errors.Cause(
                            "spec.clusterIPs",
                            f"Invalid value: {want!r}: failed to allocate IP {want}: the provided IP ({want}) "
                            f"is not in the valid range. The range of valid IPs is {self.ips.net}",
                        )
                    ],
                )
            if not self.ips.take(want):
                raise errors.invalid(
                    "Service",
                    name,
                    [
                        errors.Cause(
                            "spec.clusterIPs",
                            f"Invalid value: {want!r}: failed to allocate IP {want}: provided IP is already allocated",
                        )
                    ],
                )
            taken.append(want)
        spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")

    def _node_ports(self, spec: Obj, old: Obj | None, name: str, taken: list[int]) -> None:
        ports = spec.get("ports")
        if not isinstance(ports, list):
            return
        old_ports = set(_node_ports(old))
        old_by_port: dict[tuple[Any, Any], int] = {}
        for p in ((old or {}).get("spec") or {}).get("ports") or []:
            if isinstance(p, dict) and p.get("nodePort"):
                old_by_port[(p.get("port"), p.get("protocol", "TCP"))] = p["nodePort"]
        if not _needs_node_ports(spec):
            for p in ports:
                if isinstance(p, dict):
                    p.pop("nodePort", None)
            return
        seen: set[int] = set()
        for i, p in enumerate(ports):
            if not isinstance(p, dict):
                continue
            want = p.get("nodePort")
            field = f"spec.ports[{i}].nodePort"
            if want in (None, 0):
                # an update that omits nodePort keeps the one this port already had
                prev = old_by_port.get((p.get("port"), p.get("protocol", "TCP")))
                if prev is not None and prev not in seen:
                    p["nodePort"] = prev
                    seen.add(prev)
                    continue
                try:
                    port = self.ports.next()
                except RangeFull:
                    raise errors.invalid(
                        "Service", name, [errors.Cause(field, "failed to allocate a node port: the range is full")]
                    ) from None
                taken.append(port)
                p["nodePort"] = port
                seen.add(port)
                continue
            if not isinstance(want, int) or isinstance(want, bool):
                raise errors.invalid(
                    "Service", name, [errors.Cause(field, f"Invalid value: {want!r}: must be an integer")]
                )
            if want in seen:
                raise errors.invalid(
                    "Service", name, [errors.Cause(field, f"Duplicate value: {want}", "FieldValueDuplicate")]
                )
            seen.add(want)
            if want in old_ports:
                continue
            if not self.ports.in_range(want):
                raise errors.invalid(
                    "Service",
                    name,
                    [
                        errors.Cause(
                            field,
                            f"Invalid value: {want}: provided port is not in the valid range. "
                            f"The range of valid ports is {self.ports.range}",
                        )
                    ],
                )
            if not self.ports.take(want):
                raise errors.invalid(
                    "Service", name, [errors.Cause(field, f"Invalid value: {want}: provided port is already allocated")]
                )
            taken.append(want)

    def release_service(self, svc: Obj) -> None:
        ip = _cluster_ip(svc)
        if ip:
            self.ips.release(ip)
        for p in _node_ports(svc):
            self.ports.release(p)


def _noop(committed: bool) -> None:
    return None
