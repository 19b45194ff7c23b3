"""What the proxy knows about Services and EndpointSlices: small frozen values parsed from JSON.

Role: turn API objects (plain dicts) into the per-service-port values the renderer works on, the
way kube-proxy's ``ServicePortInfo``/``BaseEndpointInfo`` do. Everything here is pure.

Invariants:
- A ``ServicePortName`` is kube-proxy's: ``namespace/name:portname`` (``namespace/name`` when the
  port is unnamed) plus the protocol; its string form feeds the chain-name hashes in ``rules.py``.
- Only what the proxy can program is accepted. A Service port or an EndpointSlice that cannot be
  programmed (port out of range, unknown protocol, malformed IP) raises ``BadObject`` naming what
  is wrong; callers log it and skip that one object, so every other service keeps working.
- IPv4 only (the lab is single-stack IPv4): IPv6 cluster IPs and slices are ignored, not errors.

Concurrency: values are immutable; share them freely between threads.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

PROTOCOLS = ("tcp", "udp", "sctp")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds; Kubernetes' default for sessionAffinityConfig


class BadObject(ValueError):
    """An object the proxy cannot program; the message names the object and the field."""


@dataclass(frozen=True, order=True)
class ServicePortName:
    namespace: str
    name: str
    port: str  # the port's name ("" when unnamed)
    protocol: str  # lower case: tcp, udp, sctp

    @property
    def service(self) -> str:
        """The Service's key ``namespace/name`` (what change trackers are keyed by)."""
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        # kube-proxy's ServicePortName.String(): the protocol is not part of it.
        return f"{self.namespace}/{self.name}:{self.port}" if self.port else f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePort:
    """One port of one Service: everything the renderer needs (kube-proxy's ServicePortInfo)."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    affinity_timeout: int = 0  # > 0 when sessionAffinity is ClientIP
    internal_local: bool = False  # internalTrafficPolicy: Local
    external_local: bool = False  # externalTrafficPolicy: Local
    health_check_node_port: int = 0

    @property
    def protocol(self) -> str:
        return self.name.protocol

    @property
    def externally_accessible(self) -> bool:
        return self.node_port > 0 or bool(self.external_ips) or bool(self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_local or (self.externally_accessible and not self.external_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_local or (self.externally_accessible and self.external_local)


@dataclass(frozen=True)
class Endpoint:
    """One backend of one service port, with the EndpointSlice conditions kube-proxy uses."""

    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"

    def sort_key(self) -> tuple[bytes, int]:
        return (socket.inet_aton(self.ip), self.port)


@dataclass(frozen=True)
class SliceInfo:
    """A parsed EndpointSlice: its service, endpoints per (port name, protocol) sorted by
    address, trigger time."""

    namespace: str
    name: str
    service: str  # "namespace/name" of the Service it belongs to
    ports: Mapping[tuple[str, str], tuple[Endpoint, ...]] = field(default_factory=dict)
    trigger_time: str | None = None


def _port_number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise BadObject(f"{what}: port {value!r} is not an integer in 1..65535")
    return value


def _protocol(value: Any, what: str) -> str:
    proto = "TCP" if value is None else value
    if not isinstance(proto, str) or proto.lower() not in PROTOCOLS:
        raise BadObject(f"{what}: unknown protocol {value!r} (want TCP, UDP or SCTP)")
    return proto.lower()


def _ipv4(value: Any, what: str) -> str:
    # inet_pton accepts exactly the canonical dotted quad (no leading zeros, no shorthand),
    # the form Kubernetes stores; it is ~20× faster than ipaddress for 50k endpoints.
    try:
        socket.inet_pton(socket.AF_INET, value)
        return str(value)
    except (OSError, TypeError):
        raise BadObject(f"{what}: {value!r} is not an IPv4 address") from None


def _is_ipv6(value: Any) -> bool:
    return isinstance(value, str) and ":" in value


def service_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"


def parse_service(svc: Mapping[str, Any]) -> tuple[list[ServicePort], list[str]]:
    """All programmable ports of a Service, and an error message for each one skipped.

    Services the proxy ignores by design (ExternalName, headless, no ClusterIP yet, IPv6) give
    no ports and no errors. A bad port is skipped with an error; the other ports still count.
    """
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    ns, name = meta.get("namespace") or "default", meta.get("name", "")
    key = f"{ns}/{name}"
    if spec.get("type") == "ExternalName":
        return [], []
    cluster_ip = spec.get("clusterIP")
    if not cluster_ip or cluster_ip == "None" or _is_ipv6(cluster_ip):
        return [], []
    errors: list[str] = []
    try:
        vip = _ipv4(cluster_ip, f"Service {key} spec.clusterIP")
    except BadObject as exc:
        return [], [str(exc)]

    def ips(values: Iterable[Any], what: str) -> tuple[str, ...]:
        out = []
        for v in values:
            if _is_ipv6(v):
                continue
            try:
                out.append(_ipv4(v, what))
            except BadObject as exc:
                errors.append(str(exc))
        return tuple(out)

    external_ips = ips(spec.get("externalIPs") or [], f"Service {key} spec.externalIPs")
    lb_ips: tuple[str, ...] = ()
    if spec.get("type") == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = ips(
            [i.get("ip") for i in ingress if isinstance(i, dict) and i.get("ip")],
            f"Service {key} status.loadBalancer.ingress",
        )
    ranges = []
    for r in spec.get("loadBalancerSourceRanges") or []:
        try:
            ranges.append(str(ipaddress.IPv4Network(str(r).strip(), strict=False)))
        except ValueError:
            if not _is_ipv6(r):
                errors.append(f"Service {key} spec.loadBalancerSourceRanges: {r!r} is not an IPv4 CIDR")
    affinity = 0
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        affinity = cfg if isinstance(cfg, int) and not isinstance(cfg, bool) and cfg > 0 else (
            DEFAULT_AFFINITY_TIMEOUT
        )
    external_policy_applies = spec.get("type") in ("NodePort", "LoadBalancer") or bool(external_ips)
    external_local = external_policy_applies and spec.get("externalTrafficPolicy") == "Local"
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    hcnp = spec.get("healthCheckNodePort") or 0
    if external_local and spec.get("type") == "LoadBalancer" and isinstance(hcnp, int):
        health_check = hcnp if 0 < hcnp <= 65535 else 0
    else:
        health_check = 0
    ports: list[ServicePort] = []
    seen: set[tuple[str, str]] = set()
    for i, p in enumerate(spec.get("ports") or []):
        what = f"Service {key} spec.ports[{i}]"
        try:
            if not isinstance(p, dict):
                raise BadObject(f"{what}: not an object")
            proto = _protocol(p.get("protocol"), what)
            port = _port_number(p.get("port"), what)
            node_port = 0
            if spec.get("type") in ("NodePort", "LoadBalancer") and p.get("nodePort"):
                node_port = _port_number(p.get("nodePort"), f"{what}.nodePort")
            pname = p.get("name") or ""
            if (pname, proto) in seen:
                raise BadObject(f"{what}: duplicate port name {pname!r}/{proto}")
            seen.add((pname, proto))
            ports.append(
                ServicePort(
                    name=ServicePortName(ns, name, pname, proto),
                    cluster_ip=vip,
                    port=port,
                    node_port=node_port,
                    external_ips=external_ips,
                    load_balancer_ips=lb_ips,
                    load_balancer_source_ranges=tuple(ranges),
                    affinity_timeout=affinity,
                    internal_local=internal_local,
                    external_local=external_local,
                    health_check_node_port=health_check,
                )
            )
        except BadObject as exc:
            errors.append(str(exc))
    return ports, errors


def _condition(conditions: Mapping[str, Any], name: str, default: bool) -> bool:
    value = conditions.get(name)
    return default if value is None else bool(value)


def parse_endpoint_slice(es: Mapping[str, Any]) -> tuple[SliceInfo | None, list[str]]:
    """A slice's endpoints per (port name, protocol); ``None`` when it is not for us.

    Conditions follow kube-proxy: ``ready`` nil means ready, ``serving`` nil means ``ready``,
    ``terminating`` nil means false. Bad ports are skipped with an error, and so are bad
    addresses; the rest of the slice still counts.
    """
    meta = es.get("metadata") or {}
    ns, name = meta.get("namespace") or "default", meta.get("name", "")
    svc_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not svc_name or es.get("addressType", "IPv4") != "IPv4":
        return None, []
    what = f"EndpointSlice {ns}/{name}"
    errors: list[str] = []
    endpoints: list[tuple[str, Endpoint]] = []  # address without port yet: (ip, template)
    for i, ep in enumerate(es.get("endpoints") or []):
        if not isinstance(ep, dict):
            errors.append(f"{what} endpoints[{i}]: not an object")
            continue
        cond = ep.get("conditions") or {}
        ready = _condition(cond, "ready", True)
        serving = _condition(cond, "serving", ready)
        terminating = _condition(cond, "terminating", False)
        addresses = ep.get("addresses") or []
        if not addresses:
            continue
        try:
            ip = _ipv4(addresses[0], f"{what} endpoints[{i}].addresses[0]")
        except BadObject as exc:
            errors.append(str(exc))
            continue
        endpoints.append(
            (ip, Endpoint(ip, 0, ready, serving, terminating, str(ep.get("nodeName") or "")))
        )
    ports: dict[tuple[str, str], tuple[Endpoint, ...]] = {}
    for i, p in enumerate(es.get("ports") or []):
        pw = f"{what} ports[{i}]"
        try:
            if not isinstance(p, dict):
                raise BadObject(f"{pw}: not an object")
            proto = _protocol(p.get("protocol"), pw)
            number = _port_number(p.get("port"), pw)
        except BadObject as exc:
            errors.append(str(exc))
            continue
        ports[(p.get("name") or "", proto)] = tuple(
            Endpoint(ip, number, e.ready, e.serving, e.terminating, e.node_name) for ip, e in endpoints
        )
    if len(endpoints) > 1:
        # Sorted by address once, when the slice arrives (as kube-proxy's endpointSliceInfo
        # is): merging a Service's only slice at sync time is then no work at all.
        ports = {key: tuple(sorted(eps, key=Endpoint.sort_key)) for key, eps in ports.items()}
    trigger = (meta.get("annotations") or {}).get(TRIGGER_TIME_ANNOTATION)
    return (
        SliceInfo(ns, name, f"{ns}/{svc_name}", ports, trigger if isinstance(trigger, str) else None),
        errors,
    )


def merge_slices(slices: Iterable[SliceInfo]) -> dict[tuple[str, str], tuple[Endpoint, ...]]:
    """One service's endpoints per (port name, protocol), merged over its slices.

    The same ip:port in several slices (a slice being replaced) counts once; the copy that is
    ready wins. Endpoints are sorted by address so rules come out in a stable order.
    """
    slices = list(slices)
    if len(slices) == 1:  # the usual case: already sorted at parse time; only duplicates to drop
        ports = slices[0].ports
        if all(len({(e.ip, e.port) for e in eps}) == len(eps) for eps in ports.values()):
            return dict(ports)
    merged: dict[tuple[str, str], dict[tuple[str, int], Endpoint]] = {}
    for sl in sorted(slices, key=lambda s: s.name):
        for key, eps in sl.ports.items():
            bucket = merged.setdefault(key, {})
            for ep in eps:
                old = bucket.get((ep.ip, ep.port))
                if old is None or (ep.ready and not old.ready):
                    bucket[(ep.ip, ep.port)] = ep
    return {
        key: tuple(sorted(bucket.values(), key=Endpoint.sort_key)) for key, bucket in merged.items()
    }


def node_addresses(node: Mapping[str, Any] | None) -> list[str]:
    """The IPv4 addresses in a Node's status (InternalIP first), for ``--node-ip`` defaults."""
    if not node:
        return []
    addrs = ((node.get("status") or {}).get("addresses")) or []
    order = {"InternalIP": 0, "ExternalIP": 1}
    found = sorted(
        (a for a in addrs if isinstance(a, dict) and a.get("type") in order),
        key=lambda a: order[a["type"]],
    )
    out = []
    for a in found:
        try:
            out.append(str(ipaddress.IPv4Address(a.get("address"))))
        except (ipaddress.AddressValueError, ValueError):
            continue
    return out
