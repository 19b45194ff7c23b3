"""The cluster DNS resolver: Services and EndpointSlices in, DNS answers out — no sockets, no clock.

Role: the pure core of ``kubelab dns`` (CoreDNS' ``kubernetes`` plugin in the shape of the
Kubernetes DNS specification, schema 1.1.0). ``build_view(services, slices)`` turns the objects
(typed read models, ``controlplane.api.models``, as the server's informer views hold them) into
an immutable ``View``: a table of records keyed by lower-case owner name. ``answer(view, query)``
and ``resolve_wire(view, bytes)`` look a question up in it and build the response with dnspython.
Records (zone ``cluster.local``, TTL 5 s)::

    <svc>.<ns>.svc.cluster.local            A      ClusterIP                  (ClusterIP/NodePort/LB)
                                            A      each ready endpoint's IP   (headless: clusterIP None)
                                            CNAME  spec.externalName          (ExternalName)
                                            SRV    one per named port (as for the _port._proto name)
    <host>.<svc>.<ns>.svc.cluster.local     A      endpoint IP (host = its hostname, else a-b-c-d)
    _<port>._<proto>.<svc>.<ns>.svc…        SRV    0 w <port> <svc>.<ns>.svc… (headless: one per endpoint,
                                                   target <host>.<svc>…, port from the slice)
    <d.c.b.a>.in-addr.arpa                  PTR    <svc>.<ns>.svc… for ClusterIPs;
                                                   <host>.<svc>.<ns>.svc… for headless endpoints
    <a-b-c-d>.<ns>.pod.cluster.local        A      a.b.c.d (CoreDNS' "pods insecure": not checked
                                                   against pods, like kube-dns; no pod informer needed)
    cluster.local                           SOA, NS (ns.dns.cluster.local → the DNS service's IP)
    dns-version.cluster.local               TXT    "1.1.0"

Answers: a name with records of the asked type → NOERROR, AA, the records (owner spelled as asked:
0x20-randomising resolvers check it); a name that exists with none of that type, or an empty
non-terminal (``svc.cluster.local``, ``<ns>.svc…``, ``_tcp.<svc>…``) → NOERROR with no answer and
the zone's SOA in authority (NODATA); anything else under the zone, or a reverse name inside the
cluster's CIDRs we know nothing about → NXDOMAIN with the SOA. A CNAME to a name inside the zone is
followed (at most 8 links). Every other name → REFUSED: this server is authoritative only, it never
recurses or forwards — the lab's rule is that no packet leaves the machine, and a forwarder would
send pods' queries for outside names to the host's upstream resolvers. Opcodes other than QUERY →
NOTIMP; a query without exactly one question → FORMERR; undecodable bytes → FORMERR if the header
can be read, else no answer. UDP answers larger than 512 bytes (or the client's EDNS payload) are
truncated with TC set, so the client retries over TCP.

Invariants: ``View`` is immutable once built (the server swaps whole views, so a query sees one
consistent snapshot); every owner name and target is absolute; lookups are case-insensitive and
accept names with or without the trailing dot; endpoint readiness follows the EndpointSlice rules
(``ready`` absent means ready; ``publishNotReadyAddresses`` publishes every endpoint; terminating
endpoints are never published unless the service publishes not-ready ones).

Concurrency: everything here is pure; a ``View`` may be read from any number of threads.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.reversename
import dns.rrset

from controlplane.api import models

Obj = dict[str, Any]

DEFAULT_ZONE = "cluster.local"
DEFAULT_TTL = 5  # CoreDNS' kubernetes plugin default: clients see changes within seconds
SCHEMA_VERSION = "1.1.0"
UDP_DEFAULT_PAYLOAD = 512
MAX_CNAME_CHAIN = 8
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

IN = dns.rdataclass.IN
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
CNAME = dns.rdatatype.CNAME
NS = dns.rdatatype.NS
PTR = dns.rdatatype.PTR
SOA = dns.rdatatype.SOA
SRV = dns.rdatatype.SRV
TXT = dns.rdatatype.TXT
ANY = dns.rdatatype.ANY


# dnspython's rdata constructors are untyped: build them in one typed place.
def _rd_a(ip: str) -> dns.rdata.Rdata:
    return dns.rdtypes.IN.A.A(IN, A, ip)  # type: ignore[no-untyped-call]


def _rd_aaaa(ip: str) -> dns.rdata.Rdata:
    return dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, ip)  # type: ignore[no-untyped-call]


def _rd_cname(target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, target)  # type: ignore[no-untyped-call]


def _rd_ptr(target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.PTR.PTR(IN, PTR, target)  # type: ignore[no-untyped-call]


def _rd_ns(target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.ANY.NS.NS(IN, NS, target)  # type: ignore[no-untyped-call]


def _rd_srv(priority: int, weight: int, port: int, target: dns.name.Name) -> dns.rdata.Rdata:
    return dns.rdtypes.IN.SRV.SRV(IN, SRV, priority, weight, port, target)  # type: ignore[no-untyped-call]


def _key(name: str | dns.name.Name) -> str:
    """The table key of a name: lower case, no trailing dot (``Web.Default.SVC.`` → ``web.default.svc``)."""
    text = name.to_text(omit_final_dot=True) if isinstance(name, dns.name.Name) else name
    return text.rstrip(".").lower()


def _abs(name: str) -> dns.name.Name:
    return dns.name.from_text(name.rstrip(".") + ".")


def dashed(ip: str) -> str:
    """``10.244.1.5`` → ``10-244-1-5`` (pod names and generated endpoint host names; IPv6 ``:`` → ``-``)."""
    return ip.replace(".", "-").replace(":", "-")


def undashed(label: str) -> str | None:
    """``10-244-1-5`` → ``10.244.1.5``; None when the label is not a dashed IP address."""
    for candidate in (label.replace("-", "."), label.replace("-", ":")):
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def _reverse_name(ip: str) -> str:
    """``10.96.0.20`` → ``20.0.96.10.in-addr.arpa`` (string work: dnspython's is 20× slower)."""
    if "." in ip and ":" not in ip:
        return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"
    return dns.reversename.from_address(ip).to_text(omit_final_dot=True)


def _address(ip: str) -> dns.rdata.Rdata | None:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 4:
        return _rd_a(str(addr))
    return _rd_aaaa(str(addr))


@dataclass(frozen=True)
class Endpoint:
    """One published address of a service (from an EndpointSlice)."""

    ip: str
    hostname: str  # spec's hostname, or the dashed IP when the endpoint has none
    ports: tuple[tuple[str, int, str], ...]  # (name, port, protocol) of its slice


@dataclass
class View:
    """An immutable snapshot: owner key → rdtype → rdatas, plus the names that exist without records."""

    zone: str = DEFAULT_ZONE
    ttl: int = DEFAULT_TTL
    serial: int = 1
    records: dict[str, dict[int, list[dns.rdata.Rdata]]] = field(default_factory=dict)
    # names that exist only because longer names do (RFC 8020: they must not be NXDOMAIN)
    empty_non_terminals: frozenset[str] = frozenset()
    # reverse zones we are authoritative for (NXDOMAIN inside, REFUSED outside)
    reverse_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def rdatas(self, key: str, rdtype: int) -> list[dns.rdata.Rdata]:
        return self.records.get(key, {}).get(rdtype, [])

    def exists(self, key: str) -> bool:
        return key in self.records or key in self.empty_non_terminals


def _ready(ep: models.Endpoint, publish_not_ready: bool) -> bool:
    # ``ready`` absent (nil) means ready, per the EndpointSlice API
    return publish_not_ready or ep.conditions.ready is not False


def _slice_ports(sl: models.EndpointSlice) -> tuple[tuple[str, int, str], ...]:
    return tuple((p.name, p.port, p.protocol) for p in sl.ports if p.port)


class _Records:
    """The record table being built: owner key → rdtype → rdatas, without duplicates.

    Duplicates are recognised by a cheap identity (rdtype + what the record says), never by
    hashing rdatas: dnspython hashes an rdata by rendering it to wire format (10× slower).
    """

    def __init__(self) -> None:
        self.records: dict[str, dict[int, list[dns.rdata.Rdata]]] = {}
        self._seen: set[tuple[str, int, object]] = set()

    def add(
        self, owner: str, rdtype: int, ident: object, make: dns.rdata.Rdata | Callable[[], dns.rdata.Rdata]
    ) -> None:
        """``make``: the rdata, or a function building it (called only if the record is new)."""
        k = _key(owner)
        if (k, rdtype, ident) in self._seen:
            return
        self._seen.add((k, rdtype, ident))
        rd = make if isinstance(make, dns.rdata.Rdata) else make()
        self.records.setdefault(k, {}).setdefault(rdtype, []).append(rd)

    def exists(self, owner: str) -> None:
        """The name exists (NODATA, not NXDOMAIN) even with no records."""
        self.records.setdefault(_key(owner), {})


def _add_external_name(out: _Records, fqdn: str, svc: models.Service) -> None:
    ext = svc.spec.external_name
    if not ext:
        return
    try:
        cname = _rd_cname(_abs(ext))
    except dns.exception.DNSException:
        return
    out.add(fqdn, CNAME, ext, cname)


def _add_cluster_ip(out: _Records, fqdn: str, svc: models.Service, cluster_ips: list[str]) -> None:
    """A ClusterIP service: its VIPs, their PTRs, and an SRV per named port."""
    target = _abs(fqdn)
    for ip in cluster_ips:
        rd = _address(ip)
        if rd is None:
            continue
        out.add(fqdn, rd.rdtype, ip, rd)
        out.add(_reverse_name(ip), PTR, fqdn, functools.partial(_rd_ptr, target))
    for p in svc.spec.ports:
        if not p.name or not p.port:
            continue
        srv = _rd_srv(0, 100, p.port, target)
        ident = (p.port, fqdn)
        out.add(f"_{p.name.lower()}._{p.protocol.lower()}.{fqdn}", SRV, ident, srv)
        out.add(fqdn, SRV, ident, srv)


def _add_headless(out: _Records, fqdn: str, svc: models.Service, slices: list[models.EndpointSlice]) -> None:
    """A headless service: each published endpoint's address, hostname, PTR and SRVs."""
    publish_all = svc.spec.publish_not_ready_addresses
    endpoints: list[tuple[Endpoint, dns.rdata.Rdata]] = []
    for sl in slices:
        sports = _slice_ports(sl)
        for ep in sl.endpoints:
            if not _ready(ep, publish_all):
                continue
            for ip in ep.addresses:
                addr = _address(ip)
                if addr is None:
                    continue
                endpoints.append((Endpoint(ip, (ep.hostname or dashed(ip)).lower(), sports), addr))
    weight = max(1, 100 // max(1, len(endpoints)))
    for e, rd in endpoints:
        host_fqdn = f"{e.hostname}.{fqdn}"
        host_name = _abs(host_fqdn)
        out.add(fqdn, rd.rdtype, e.ip, rd)
        out.add(host_fqdn, rd.rdtype, e.ip, rd)
        out.add(_reverse_name(e.ip), PTR, host_fqdn, functools.partial(_rd_ptr, host_name))
        for pname, pnum, proto in e.ports:
            if not pname:
                continue
            srv = _rd_srv(0, weight, pnum, host_name)
            ident = (pnum, host_fqdn)
            out.add(f"_{pname.lower()}._{proto.lower()}.{fqdn}", SRV, ident, srv)
            out.add(fqdn, SRV, ident, srv)
    if not endpoints:
        out.exists(fqdn)  # the service exists: its name must answer NODATA, not NXDOMAIN


def _empty_non_terminals(zone: str, owners: Iterable[str]) -> frozenset[str]:
    """Every proper ancestor of an owner name inside the zone exists (RFC 8020)."""
    ents: set[str] = {f"svc.{zone}", f"pod.{zone}"}
    suffix = "." + zone
    for owner in owners:
        if not owner.endswith(suffix):
            continue
        labels = owner[: -len(suffix)].split(".")
        for i in range(1, len(labels)):
            ents.add(".".join(labels[i:]) + suffix)
    return frozenset(ents)


def build_view(
    services: Iterable[models.Service],
    slices: Iterable[models.EndpointSlice],
    *,
    zone: str = DEFAULT_ZONE,
    ttl: int = DEFAULT_TTL,
    serial: int = 1,
    dns_service_ip: str | None = None,
    reverse_cidrs: Iterable[str] = (),
) -> View:
    """The record table for these objects. Objects that make no sense (no name, a bad IP) are skipped."""
    zone = _key(zone)
    out = _Records()
    # slices by (namespace, service name); the service-name label ties a slice to its service
    by_service: dict[tuple[str, str], list[models.EndpointSlice]] = {}
    for sl in slices:
        if sl.service_name and sl.metadata.namespace:
            by_service.setdefault((sl.metadata.namespace, sl.service_name), []).append(sl)
    for svc in services:
        name, ns = svc.metadata.name, svc.metadata.namespace
        if not name or not ns:
            continue
        fqdn = f"{name}.{ns}.svc.{zone}"
        if svc.spec.type == "ExternalName":
            _add_external_name(out, fqdn, svc)
            continue
        cluster_ips = [ip for ip in svc.spec.cluster_ips or (svc.spec.cluster_ip,) if ip]
        if cluster_ips and cluster_ips[0] != "None":
            _add_cluster_ip(out, fqdn, svc, cluster_ips)
        else:
            _add_headless(out, fqdn, svc, by_service.get((ns, name), []))
    # the zone apex and its name server (CoreDNS answers these the same way)
    apex_ns = f"ns.dns.{zone}"
    out.add(zone, SOA, None, lambda: _soa(zone, serial, ttl))
    out.add(zone, NS, None, lambda: _rd_ns(_abs(apex_ns)))
    if dns_service_ip:
        ns_rd = _address(dns_service_ip)
        if ns_rd is not None:
            out.add(apex_ns, ns_rd.rdtype, None, ns_rd)
    out.add(f"dns-version.{zone}", TXT, None, lambda: dns.rdtypes.ANY.TXT.TXT(IN, TXT, [SCHEMA_VERSION]))
    return View(
        zone=zone,
        ttl=ttl,
        serial=serial,
        records=out.records,
        empty_non_terminals=_empty_non_terminals(zone, out.records) - set(out.records),
        reverse_networks=tuple(ipaddress.ip_network(c, strict=False) for c in reverse_cidrs),
    )


def _soa(zone: str, serial: int, ttl: int) -> dns.rdata.Rdata:
    # refresh/retry/expire as CoreDNS; minimum (negative-caching TTL) = the record TTL
    return dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
        IN, SOA, _abs(f"ns.dns.{zone}"), _abs(f"hostmaster.{zone}"), serial, 7200, 1800, 86400, ttl
    )


# --- lookups ------------------------------------------------------------------------------------


@dataclass
class Lookup:
    """What one question yields: an rcode, answer RRsets, the SOA for authority, additional records."""

    rcode: dns.rcode.Rcode
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)


def _rrset(owner: dns.name.Name, ttl: int, rdatas: Iterable[dns.rdata.Rdata]) -> dns.rrset.RRset:
    rds = list(rdatas)
    rrs = dns.rrset.RRset(owner, IN, rds[0].rdtype)
    for rd in rds:
        rrs.add(rd, ttl)
    return rrs


def _in_zone(key: str, zone: str) -> bool:
    return key == zone or key.endswith("." + zone)


def _reverse_ip(key: str) -> str | None:
    """The address a reverse name stands for (full names only), or None."""
    try:
        return str(dns.reversename.to_address(_abs(key)))
    except (dns.exception.DNSException, ValueError):
        return None


def authoritative_for(view: View, key: str) -> bool:
    """Is this name ours: the cluster zone, or a reverse name of an address in our networks?"""
    if _in_zone(key, view.zone):
        return True
    if key.endswith(".in-addr.arpa") or key.endswith(".ip6.arpa"):
        if key in view.records:
            return True
        ip = _reverse_ip(key)
        if ip is None:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in view.reverse_networks)
    return False


def _pod_record(view: View, key: str) -> dns.rdata.Rdata | None:
    """``a-b-c-d.<ns>.pod.<zone>`` → A a.b.c.d (any namespace label; not checked against pods)."""
    suffix = f".pod.{view.zone}"
    if not key.endswith(suffix):
        return None
    labels = key[: -len(suffix)].split(".")
    if len(labels) != 2:
        return None
    ip = undashed(labels[0])
    return _address(ip) if ip else None


def lookup(view: View, qname: str | dns.name.Name, qtype: int) -> Lookup:
    """Answer one question from the view (the owner names in the answer are spelled as asked)."""
    owner = qname if isinstance(qname, dns.name.Name) else _abs(qname)
    key = _key(owner)
    if not authoritative_for(view, key):
        return Lookup(dns.rcode.REFUSED)
    soa = _rrset(_abs(view.zone), view.ttl, [_soa(view.zone, view.serial, view.ttl)])
    out = Lookup(dns.rcode.NOERROR)
    for _ in range(MAX_CNAME_CHAIN):
        table = view.records.get(key)
        if table is None:
            pod = _pod_record(view, key)
            if pod is not None:
                table = {pod.rdtype: [pod]}
        if table is None:
            # RFC 6604: after a CNAME the rcode speaks of the last name in the chain
            out.rcode = dns.rcode.NOERROR if view.exists(key) else dns.rcode.NXDOMAIN
            out.authority = [soa]
            return out
        cname = table.get(CNAME)
        if cname and qtype not in (CNAME, ANY):
            out.answer.append(_rrset(owner, view.ttl, cname))
            target = cname[0].target  # type: ignore[attr-defined]
            tkey = _key(target)
            if not _in_zone(tkey, view.zone):
                return out  # the client resolves an outside name itself (we never recurse)
            owner, key = target, tkey
            continue
        wanted = list(table) if qtype == ANY else [qtype]
        found = False
        for t in wanted:
            rds = table.get(t)
            if rds:
                out.answer.append(_rrset(owner, view.ttl, rds))
                found = True
        if not found:
            out.authority = [soa]
        if qtype in (SRV, ANY):
            out.additional = _srv_additional(view, out.answer)
        return out
    out.rcode = dns.rcode.SERVFAIL  # a CNAME loop inside the zone
    return out


def _srv_additional(view: View, answer: list[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """The SRV targets' addresses (saves the client a round trip)."""
    extra: list[dns.rrset.RRset] = []
    done: set[str] = set()
    for rrs in answer:
        if rrs.rdtype != SRV:
            continue
        for rd in rrs:
            target = rd.target  # type: ignore[attr-defined]
            tkey = _key(target)
            if tkey in done:
                continue
            done.add(tkey)
            for t in (A, AAAA):
                rds = view.rdatas(tkey, t)
                if rds:
                    extra.append(_rrset(target, view.ttl, rds))
    return extra


# --- messages -------------------------------------------------------------------------------------


def answer(view: View, query: dns.message.Message) -> dns.message.Message:
    """The response message for a decoded query."""
    response = dns.message.make_response(query)
    response.flags &= ~dns.flags.RA  # we never recurse
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    q = query.question[0]
    if q.rdclass not in (IN, dns.rdataclass.ANY):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    result = lookup(view, q.name, q.rdtype)
    response.set_rcode(result.rcode)
    if result.rcode != dns.rcode.REFUSED:
        response.flags |= dns.flags.AA
    response.answer.extend(result.answer)
    response.authority.extend(result.authority)
    response.additional.extend(result.additional)
    return response


def _formerr(wire: bytes) -> bytes | None:
    """A bare FORMERR for bytes whose header we can read (RFC 1035 4.1.1); None: not even a header."""
    if len(wire) < 12:
        return None
    flags = int.from_bytes(wire[2:4], "big")
    if flags & dns.flags.QR:
        return None  # never answer a response (no reflection loops)
    out_flags = dns.flags.QR | (flags & dns.flags.RD) | (flags & 0x7800) | dns.rcode.FORMERR
    return wire[0:2] + out_flags.to_bytes(2, "big") + bytes(8)


def resolve_wire(view: View, wire: bytes, *, max_size: int | None = None) -> bytes | None:
    """Bytes in, bytes out. ``max_size``: the UDP limit (None over TCP: up to 65535 bytes).

    Over UDP the limit is 512 bytes or the query's EDNS payload size, whichever is larger; a longer
    answer goes out truncated with TC set. Returns None when nothing should be sent back.
    """
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return _formerr(wire)
    except Exception:  # dnspython raises plain ValueError/IndexError on some garbage
        return _formerr(wire)
    if query.flags & dns.flags.QR:
        return None
    response = answer(view, query)
    if max_size is None:
        limit = 65535
    else:
        limit = max(max_size, query.payload if query.edns >= 0 else UDP_DEFAULT_PAYLOAD)
        limit = min(limit, 65535)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit)


# --- TCP framing (RFC 1035 4.2.2: a two-byte length before every message) --------------------------


def frame(message: bytes) -> bytes:
    if len(message) > 65535:
        raise ValueError(f"a DNS message over TCP is at most 65535 bytes, not {len(message)}")
    return len(message).to_bytes(2, "big") + message


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The complete messages at the start of ``buffer`` and the incomplete rest (kept for more bytes)."""
    messages: list[bytes] = []
    pos = 0
    while len(buffer) - pos >= 2:
        n = int.from_bytes(buffer[pos : pos + 2], "big")
        if len(buffer) - pos - 2 < n:
            break
        messages.append(buffer[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return messages, buffer[pos:]


def view_from_mappings(
    services: Mapping[str, models.Service], slices: Mapping[str, models.EndpointSlice], **kw: Any
) -> View:
    """``build_view`` over informer-style key → object maps (convenience for the server)."""
    return build_view(services.values(), slices.values(), **kw)
