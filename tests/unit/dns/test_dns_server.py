"""The DNS socket shell (controlplane/dns/server.py) on 127.0.0.1 with a fixed view, and the
kube-dns Service keeper (controlplane/dns/cli.py) against a small in-memory fake API client."""

from __future__ import annotations

import argparse
import asyncio
import copy
import socket
from typing import Any

import dns.message
import dns.query
import dns.rcode
import pytest

from controlplane.api import errors
from controlplane.api.models import Service
from controlplane.api.registry import ENDPOINTS, ENDPOINTSLICES, SERVICES, Resource
from controlplane.dns import cli, resolver
from controlplane.dns.server import DnsServer

VIEW = resolver.build_view(
    [Service.decode({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.20"}})], []
)


def run_with_server(check: Any) -> None:
    """Start a DnsServer on a kernel-picked port, run the blocking ``check(port)`` in a thread."""

    async def main() -> None:
        server = DnsServer(lambda: VIEW, "127.0.0.1", 0)
        await server.start()
        try:
            await asyncio.wait_for(asyncio.to_thread(check, server.port), timeout=10)
        finally:
            await server.close()

    asyncio.run(main())


def test_udp_and_tcp_on_one_port() -> None:
    def check(port: int) -> None:
        q = dns.message.make_query("web.default.svc.cluster.local", "A")
        for r in (
            dns.query.udp(q, "127.0.0.1", port=port, timeout=2),
            dns.query.tcp(q, "127.0.0.1", port=port, timeout=2),
        ):
            assert r.id == q.id and r.answer[0][0].to_text() == "10.96.0.20"

    run_with_server(check)


def test_tcp_pipelined_queries_in_one_write_and_a_frame_split_across_writes() -> None:
    def check(port: int) -> None:
        q1 = dns.message.make_query("web.default.svc.cluster.local", "A")
        q2 = dns.message.make_query("nope.default.svc.cluster.local", "A")
        q3 = dns.message.make_query("example.org", "A")
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(resolver.frame(q1.to_wire()) + resolver.frame(q2.to_wire()))
            f3 = resolver.frame(q3.to_wire())
            s.sendall(f3[:1])  # half of the length prefix
            s.sendall(f3[1:7])
            s.sendall(f3[7:])
            buf = b""
            msgs: list[bytes] = []
            while len(msgs) < 3:
                chunk = s.recv(4096)
                assert chunk, "server closed the connection early"
                buf += chunk
                got, buf = resolver.split_frames(buf)
                msgs += got
        r1, r2, r3 = (dns.message.from_wire(m) for m in msgs)
        assert (r1.id, r1.rcode()) == (q1.id, dns.rcode.NOERROR)
        assert (r2.id, r2.rcode()) == (q2.id, dns.rcode.NXDOMAIN)
        assert (r3.id, r3.rcode()) == (q3.id, dns.rcode.REFUSED)

    run_with_server(check)


def test_udp_garbage_is_ignored_and_the_server_keeps_answering() -> None:
    def check(port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x00", ("127.0.0.1", port))
        q = dns.message.make_query("web.default.svc.cluster.local", "A")
        assert dns.query.udp(q, "127.0.0.1", port=port, timeout=2).rcode() == dns.rcode.NOERROR

    run_with_server(check)


# --- the kube-dns keeper --------------------------------------------------------------------------


class FakeClient:
    """Just enough of ApiClient: get/create/update on a dict, with the API's NotFound/AlreadyExists."""

    def __init__(self) -> None:
        self.objs: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes = 0

    def _k(self, res: Resource, name: str, ns: str | None) -> tuple[str, str, str]:
        return (res.plural, ns or "", name)

    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objs[self._k(res, name, namespace)])
        except KeyError:
            raise errors.not_found(res.plural, name) from None

    def create(self, res: Resource, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        k = self._k(res, obj["metadata"]["name"], namespace)
        if k in self.objs:
            raise errors.AlreadyExists(f"{k} exists")
        self.objs[k] = copy.deepcopy(obj)
        self.writes += 1
        return obj

    def update(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        self.objs[self._k(res, obj["metadata"]["name"], obj["metadata"]["namespace"])] = copy.deepcopy(obj)
        self.writes += 1
        return obj


def test_ensure_creates_then_is_a_no_op_then_repairs_drift() -> None:
    c = FakeClient()
    done = cli.ensure_objects(c, "10.96.0.10", "192.168.56.10", 53)  # type: ignore[arg-type]
    assert done == {"service": "created", "endpoints": "created", "endpointslice": "created"}
    svc = c.get(SERVICES, "kube-dns", "kube-system")
    assert svc["spec"]["clusterIP"] == "10.96.0.10" and "selector" not in svc["spec"]
    assert {(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        ("dns", 53, "UDP"),
        ("dns-tcp", 53, "TCP"),
    }
    writes = c.writes
    assert set(cli.ensure_objects(c, "10.96.0.10", "192.168.56.10", 53).values()) == {"ok"}  # type: ignore[arg-type]
    assert c.writes == writes
    # someone edits the slice and adds a selector to the service: both are put back
    sl = c.get(ENDPOINTSLICES, "kube-dns", "kube-system")
    sl["endpoints"][0]["addresses"] = ["10.0.0.1"]
    c.update(ENDPOINTSLICES, sl)
    svc["spec"]["selector"] = {"k8s-app": "kube-dns"}
    c.update(SERVICES, svc)
    done = cli.ensure_objects(c, "10.96.0.10", "192.168.56.10", 53)  # type: ignore[arg-type]
    assert done["service"] == "updated" and done["endpointslice"] == "updated" and done["endpoints"] == "ok"
    assert c.get(ENDPOINTSLICES, "kube-dns", "kube-system")["endpoints"][0]["addresses"] == ["192.168.56.10"]
    assert "selector" not in c.get(SERVICES, "kube-dns", "kube-system")["spec"]
    # the server moves: the endpoints follow
    cli.ensure_objects(c, "10.96.0.10", "192.168.56.10", 5353)  # type: ignore[arg-type]
    assert c.get(ENDPOINTS, "kube-dns", "kube-system")["subsets"][0]["ports"][0]["port"] == 5353


def test_a_kube_dns_service_with_another_cluster_ip_is_reported_not_replaced() -> None:
    c = FakeClient()
    other = cli.desired_service("10.96.0.99")
    c.create(SERVICES, other, "kube-system")
    assert cli.ensure_service(c, "10.96.0.10") == "conflict"  # type: ignore[arg-type]
    assert c.get(SERVICES, "kube-dns", "kube-system")["spec"]["clusterIP"] == "10.96.0.99"


@pytest.mark.parametrize("bad", ["nowhere", "1.2.3.4", "1.2.3.4:99999", "host:53", ":53"])
def test_listen_must_be_an_address_and_port(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--listen"):
        cli.parse_listen(bad)


def test_listen_parses_v4_and_v6() -> None:
    assert cli.parse_listen("192.168.56.10:53") == ("192.168.56.10", 53)
    assert cli.parse_listen("[::1]:5353") == ("::1", 5353)


def test_several_servers_publishing_the_same_addresses_agree() -> None:
    """An HA control plane: three DNS servers, each given every address, write once and then agree."""
    c = FakeClient()
    addrs = ["192.168.56.21", "192.168.56.22", "192.168.56.23"]
    cli.ensure_objects(c, "10.96.0.10", addrs, 53)  # type: ignore[arg-type]
    writes = c.writes
    for _ in range(3):  # the other two servers, then the first again
        assert set(cli.ensure_objects(c, "10.96.0.10", addrs, 53).values()) == {"ok"}  # type: ignore[arg-type]
    assert c.writes == writes
    sl = c.get(ENDPOINTSLICES, "kube-dns", "kube-system")
    assert [e["addresses"] for e in sl["endpoints"]] == [[a] for a in addrs]
    assert [a["ip"] for a in c.get(ENDPOINTS, "kube-dns", "kube-system")["subsets"][0]["addresses"]] == addrs
