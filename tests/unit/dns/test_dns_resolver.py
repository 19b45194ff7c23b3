"""The cluster DNS resolver (controlplane/dns/resolver.py), pure: objects in, DNS messages out."""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from controlplane.api.models import EndpointSlice, Service
from controlplane.dns import resolver

Obj = dict[str, Any]


def svc(name: str, ns: str = "default", **spec: Any) -> Service:
    return Service.decode({"metadata": {"name": name, "namespace": ns}, "spec": spec})


def eslice(service: str, endpoints: list[Obj], ports: list[Obj], ns: str = "default", name: str = "") -> EndpointSlice:
    return EndpointSlice.decode(
        {
            "metadata": {
                "name": name or f"{service}-abc",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }
    )


SERVICES = [
    svc(
        "web",
        clusterIP="10.96.0.20",
        clusterIPs=["10.96.0.20"],
        ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 9000, "protocol": "TCP"}],
    ),
    svc("db", clusterIP="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
    svc("empty", clusterIP="None"),
    svc("ext", type="ExternalName", externalName="example.org"),
    svc("alias", type="ExternalName", externalName="web.default.svc.cluster.local"),
    svc("loop1", type="ExternalName", externalName="loop2.default.svc.cluster.local"),
    svc("loop2", type="ExternalName", externalName="loop1.default.svc.cluster.local"),
    svc("kube-dns", "kube-system", clusterIP="10.96.0.10", ports=[{"name": "dns", "port": 53, "protocol": "UDP"}]),
    svc("eager", clusterIP="None", publishNotReadyAddresses=True),
]
SLICES = [
    eslice(
        "db",
        [
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": True}},
            {"addresses": ["10.244.2.7"], "hostname": "db-1"},  # ready absent: ready
            {"addresses": ["10.244.2.9"], "conditions": {"ready": True}},  # no hostname
            {"addresses": ["10.244.1.8"], "hostname": "db-2", "conditions": {"ready": False}},
        ],
        [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    ),
    eslice("eager", [{"addresses": ["10.244.3.3"], "conditions": {"ready": False}}], []),
    # a slice for web: a ClusterIP service answers with its VIP, never the endpoints
    eslice("web", [{"addresses": ["10.244.1.2"]}], [{"name": "http", "port": 8080, "protocol": "TCP"}]),
]


@pytest.fixture(scope="module")
def view() -> resolver.View:
    return resolver.build_view(
        SERVICES, SLICES, dns_service_ip="10.96.0.10", reverse_cidrs=["10.96.0.0/12", "10.244.0.0/16"]
    )


def ask(view: resolver.View, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return resolver.answer(view, query)


def texts(msg: dns.message.Message, rdtype: str = "A", section: str = "answer") -> set[str]:
    rrsets: list[dns.rrset.RRset] = getattr(msg, section)
    t = dns.rdatatype.from_text(rdtype)
    return {rd.to_text() for rrs in rrsets if rrs.rdtype == t for rd in rrs}


def test_clusterip_service_a_record_is_the_vip(view: resolver.View) -> None:
    msg = ask(view, "web.default.svc.cluster.local.")
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.flags & dns.flags.AA and not msg.flags & dns.flags.RA
    assert texts(msg) == {"10.96.0.20"}
    assert msg.answer[0].ttl == resolver.DEFAULT_TTL


def test_headless_service_answers_its_ready_endpoints(view: resolver.View) -> None:
    msg = ask(view, "db.default.svc.cluster.local")
    assert texts(msg) == {"10.244.1.5", "10.244.2.7", "10.244.2.9"}  # not the not-ready 10.244.1.8


def test_publish_not_ready_addresses_publishes_every_endpoint(view: resolver.View) -> None:
    assert texts(ask(view, "eager.default.svc.cluster.local")) == {"10.244.3.3"}


def test_headless_service_without_endpoints_is_nodata_not_nxdomain(view: resolver.View) -> None:
    msg = ask(view, "empty.default.svc.cluster.local")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer
    assert msg.authority[0].rdtype == dns.rdatatype.SOA


def test_endpoint_hostname_records(view: resolver.View) -> None:
    assert texts(ask(view, "db-0.db.default.svc.cluster.local")) == {"10.244.1.5"}
    assert texts(ask(view, "db-1.db.default.svc.cluster.local")) == {"10.244.2.7"}
    # an endpoint without hostname is named by its dashed IP (as CoreDNS does)
    assert texts(ask(view, "10-244-2-9.db.default.svc.cluster.local")) == {"10.244.2.9"}
    # the not-ready endpoint has no record
    assert ask(view, "db-2.db.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_srv_for_a_clusterip_service_named_port(view: resolver.View) -> None:
    msg = ask(view, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert texts(msg, "SRV") == {"0 100 80 web.default.svc.cluster.local."}
    assert texts(msg, "A", "additional") == {"10.96.0.20"}
    # the unnamed port has no SRV record; a wrong protocol is a name that does not exist
    assert ask(view, "_http._udp.web.default.svc.cluster.local", "SRV").rcode() == dns.rcode.NXDOMAIN
    # SRV at the service name lists the named ports
    assert texts(ask(view, "web.default.svc.cluster.local", "SRV"), "SRV") == {
        "0 100 80 web.default.svc.cluster.local."
    }


def test_srv_for_a_headless_service_one_per_endpoint_with_the_endpoint_port(view: resolver.View) -> None:
    msg = ask(view, "_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert texts(msg, "SRV") == {
        "0 33 5432 db-0.db.default.svc.cluster.local.",
        "0 33 5432 db-1.db.default.svc.cluster.local.",
        "0 33 5432 10-244-2-9.db.default.svc.cluster.local.",
    }
    assert texts(msg, "A", "additional") == {"10.244.1.5", "10.244.2.7", "10.244.2.9"}


def test_ptr_for_service_ips_and_headless_endpoints(view: resolver.View) -> None:
    assert texts(ask(view, "20.0.96.10.in-addr.arpa", "PTR"), "PTR") == {"web.default.svc.cluster.local."}
    assert texts(ask(view, "10.0.96.10.in-addr.arpa.", "PTR"), "PTR") == {"kube-dns.kube-system.svc.cluster.local."}
    assert texts(ask(view, "5.1.244.10.in-addr.arpa", "PTR"), "PTR") == {"db-0.db.default.svc.cluster.local."}
    # an address in our networks that nobody holds: NXDOMAIN; outside them: not ours, REFUSED
    assert ask(view, "99.0.96.10.in-addr.arpa", "PTR").rcode() == dns.rcode.NXDOMAIN
    assert ask(view, "8.8.8.8.in-addr.arpa", "PTR").rcode() == dns.rcode.REFUSED


def test_pod_records_from_the_dashed_address(view: resolver.View) -> None:
    assert texts(ask(view, "10-244-1-7.default.pod.cluster.local")) == {"10.244.1.7"}
    assert texts(ask(view, "10-244-1-7.any-ns.pod.cluster.local")) == {"10.244.1.7"}
    assert ask(view, "not-an-ip.default.pod.cluster.local").rcode() == dns.rcode.NXDOMAIN
    assert ask(view, "10-244-1-7.default.pod.cluster.local", "AAAA").rcode() == dns.rcode.NOERROR


def test_external_name_is_a_cname_not_followed_outside_the_zone(view: resolver.View) -> None:
    msg = ask(view, "ext.default.svc.cluster.local")
    assert msg.rcode() == dns.rcode.NOERROR
    assert [rrs.rdtype for rrs in msg.answer] == [dns.rdatatype.CNAME]
    assert texts(msg, "CNAME") == {"example.org."}


def test_cname_inside_the_zone_is_followed(view: resolver.View) -> None:
    msg = ask(view, "alias.default.svc.cluster.local")
    assert texts(msg, "CNAME") == {"web.default.svc.cluster.local."}
    assert texts(msg) == {"10.96.0.20"}
    assert ask(view, "loop1.default.svc.cluster.local").rcode() == dns.rcode.SERVFAIL


def test_missing_names_are_nxdomain_with_the_soa(view: resolver.View) -> None:
    for name in (
        "nope.default.svc.cluster.local",
        "web.other.svc.cluster.local",
        # what a resolver tries first with ndots:5 and the search path
        "web.default.svc.cluster.local.default.svc.cluster.local",
        "x.cluster.local",
    ):
        msg = ask(view, name)
        assert msg.rcode() == dns.rcode.NXDOMAIN, name
        assert msg.flags & dns.flags.AA
        (soa,) = msg.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.name == dns.name.from_text("cluster.local.")


def test_existing_name_without_that_type_and_empty_non_terminals_are_nodata(view: resolver.View) -> None:
    for name, rdtype in (
        ("web.default.svc.cluster.local", "AAAA"),
        ("web.default.svc.cluster.local", "TXT"),
        ("default.svc.cluster.local", "A"),
        ("svc.cluster.local", "A"),
        ("_tcp.web.default.svc.cluster.local", "SRV"),
    ):
        msg = ask(view, name, rdtype)
        assert msg.rcode() == dns.rcode.NOERROR and not msg.answer, (name, rdtype)
        assert msg.authority[0].rdtype == dns.rdatatype.SOA


def test_names_outside_the_zone_are_refused_never_forwarded(view: resolver.View) -> None:
    for name in ("example.org", "google.com.", "local", "cluster.local.evil.com", "web.default.svc.cluster.locals"):
        msg = ask(view, name)
        assert msg.rcode() == dns.rcode.REFUSED, name
        assert not msg.answer and not msg.flags & dns.flags.AA


def test_case_insensitive_and_the_owner_is_spelled_as_asked(view: resolver.View) -> None:
    msg = ask(view, "WeB.DeFault.SVC.Cluster.Local.")
    assert texts(msg) == {"10.96.0.20"}
    assert msg.answer[0].name.to_text() == "WeB.DeFault.SVC.Cluster.Local."


def test_trailing_dot_optional_in_lookup(view: resolver.View) -> None:
    with_dot = resolver.lookup(view, "web.default.svc.cluster.local.", dns.rdatatype.A)
    without = resolver.lookup(view, "web.default.svc.cluster.local", dns.rdatatype.A)
    assert with_dot.rcode == without.rcode == dns.rcode.NOERROR
    assert [r.to_text() for r in with_dot.answer] == [r.to_text() for r in without.answer]


def test_zone_apex_soa_ns_and_version(view: resolver.View) -> None:
    assert texts(ask(view, "cluster.local", "NS"), "NS") == {"ns.dns.cluster.local."}
    assert texts(ask(view, "ns.dns.cluster.local")) == {"10.96.0.10"}
    soa = texts(ask(view, "cluster.local", "SOA"), "SOA")
    assert len(soa) == 1 and next(iter(soa)).startswith("ns.dns.cluster.local. hostmaster.cluster.local.")
    assert texts(ask(view, "dns-version.cluster.local", "TXT"), "TXT") == {'"1.1.0"'}


def test_custom_zone() -> None:
    v = resolver.build_view([svc("web", clusterIP="10.96.0.20")], [], zone="lab.example")
    assert texts(ask(v, "web.default.svc.lab.example")) == {"10.96.0.20"}
    assert ask(v, "web.default.svc.cluster.local").rcode() == dns.rcode.REFUSED


def test_bad_objects_are_skipped_not_fatal() -> None:
    v = resolver.build_view(
        [
            svc("", clusterIP="10.96.0.1"),
            svc("bad", clusterIP="not-an-ip"),
            Service.decode({"spec": {}}),  # no metadata at all
            svc("ok", clusterIP="10.96.0.3"),
        ],
        [eslice("x", [{"addresses": ["garbage"]}], [])],
    )
    assert texts(ask(v, "ok.default.svc.cluster.local")) == {"10.96.0.3"}
    assert ask(v, "bad.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_slices_of_one_service_are_merged_and_duplicates_dropped() -> None:
    v = resolver.build_view(
        [svc("h", clusterIP="None")],
        [
            eslice("h", [{"addresses": ["10.244.1.1"]}], [], name="h-1"),
            eslice("h", [{"addresses": ["10.244.1.2"]}, {"addresses": ["10.244.1.1"]}], [], name="h-2"),
            eslice("h", [{"addresses": ["10.244.9.9"]}], [], ns="other", name="h-3"),  # other namespace
        ],
    )
    msg = ask(v, "h.default.svc.cluster.local")
    assert texts(msg) == {"10.244.1.1", "10.244.1.2"}
    assert len(msg.answer[0]) == 2


# --- wire level ---------------------------------------------------------------------------------


def test_resolve_wire_round_trip_keeps_the_id(view: resolver.View) -> None:
    q = dns.message.make_query("web.default.svc.cluster.local", "A")
    out = resolver.resolve_wire(view, q.to_wire(), max_size=512)
    assert out is not None
    r = dns.message.from_wire(out)
    assert r.id == q.id and r.flags & dns.flags.QR
    assert texts(r) == {"10.96.0.20"}


def test_garbage_gets_formerr_or_nothing(view: resolver.View) -> None:
    assert resolver.resolve_wire(view, b"\x01\x02", max_size=512) is None
    bad = b"\x12\x34\x01\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xff\xff"  # a question cut short
    out = resolver.resolve_wire(view, bad, max_size=512)
    assert out is not None and out[:2] == b"\x12\x34"
    r = dns.message.from_wire(out)
    assert r.rcode() == dns.rcode.FORMERR
    # a response is never answered (no reflection loops)
    resp = dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local", "A"))
    assert resolver.resolve_wire(view, resp.to_wire(), max_size=512) is None


def test_notify_and_other_opcodes_are_notimp(view: resolver.View) -> None:
    q = dns.message.make_query("cluster.local", "SOA")
    q.set_opcode(dns.opcode.NOTIFY)
    assert resolver.answer(view, q).rcode() == dns.rcode.NOTIMP


def test_big_udp_answers_are_truncated_and_complete_over_tcp() -> None:
    eps = [{"addresses": [f"10.244.{i // 250}.{i % 250 + 1}"]} for i in range(100)]
    v = resolver.build_view([svc("big", clusterIP="None")], [eslice("big", eps, [])])
    q = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=False)
    udp = resolver.resolve_wire(v, q.to_wire(), max_size=512)
    assert udp is not None and len(udp) <= 512
    r = dns.message.from_wire(udp)
    assert r.flags & dns.flags.TC
    tcp = resolver.resolve_wire(v, q.to_wire(), max_size=None)
    assert tcp is not None
    assert len(texts(dns.message.from_wire(tcp))) == 100
    # with EDNS the client's payload size is honoured
    qe = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=0, payload=4096)
    big = resolver.resolve_wire(v, qe.to_wire(), max_size=512)
    assert big is not None and 512 < len(big) <= 4096
    assert not dns.message.from_wire(big).flags & dns.flags.TC


def test_tcp_framing() -> None:
    a, b = b"\x01" * 3, b"\x02" * 300
    stream = resolver.frame(a) + resolver.frame(b)
    assert resolver.frame(a) == b"\x00\x03" + a
    assert resolver.split_frames(stream) == ([a, b], b"")
    # a message split across reads waits for the rest
    msgs, rest = resolver.split_frames(stream[:10])
    assert msgs == [a] and rest == stream[5:10]
    msgs, rest = resolver.split_frames(rest + stream[10:])
    assert msgs == [b] and rest == b""
    assert resolver.split_frames(b"\x00") == ([], b"\x00")
    with pytest.raises(ValueError, match="65535"):
        resolver.frame(b"x" * 65536)


def test_dashed_and_undashed() -> None:
    assert resolver.dashed("10.244.1.5") == "10-244-1-5"
    assert resolver.undashed("10-244-1-5") == "10.244.1.5"
    assert resolver.undashed("fd00--1") == "fd00::1"
    assert resolver.undashed("web") is None
    assert resolver.undashed("10-244-1") is None
