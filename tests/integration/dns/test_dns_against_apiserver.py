"""`kubelab dns` against a real API server, queried with dnspython over UDP and TCP on 127.0.0.1.

The server process keeps kube-system/kube-dns (10.96.0.10) and its endpoints pointing at itself,
follows Service/EndpointSlice changes, and refuses names outside cluster.local.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from controlplane.api import errors
from controlplane.api.registry import ENDPOINTS, ENDPOINTSLICES, SERVICES
from controlplane.client.rest import ApiClient
from tests.helpers.apiserver import REPO, RunningApiServer, start_apiserver
from tests.helpers.wait import wait_for


def free_udp_tcp_port() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no port free for both UDP and TCP")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path_factory.mktemp("dns-api"), store="memory")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: RunningApiServer) -> Iterator[ApiClient]:
    c = ApiClient.from_kubeconfig(server.kubeconfig)
    yield c
    c.close()


class DnsProcess:
    def __init__(self, kubeconfig: Path, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lab", "dns", "--kubeconfig", str(kubeconfig), "--listen", f"127.0.0.1:{port}"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def dns_server(server: RunningApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsProcess]:
    port = free_udp_tcp_port()
    p = DnsProcess(server.kubeconfig, port, tmp_path_factory.mktemp("dns") / "dns.log")
    try:
        wait_for(lambda: _answers(port), timeout=20, message="kubelab dns to answer")
        yield p
    finally:
        p.stop()
        if p.proc.returncode not in (0, None):
            print(p.log.read_text(errors="replace")[-3000:])


def _answers(port: int) -> bool:
    try:
        query("cluster.local", "SOA", port, timeout=0.5)
    except (OSError, dns.exception.Timeout):
        return False
    return True


def query(name: str, rdtype: str, port: int, *, tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=timeout)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)


def addresses(msg: dns.message.Message, rdtype: str = "A") -> set[str]:
    t = dns.rdatatype.from_text(rdtype)
    return {rd.to_text() for rrs in msg.answer if rrs.rdtype == t for rd in rrs}


def resolves(name: str, port: int, want: set[str], rdtype: str = "A", tcp: bool = False) -> bool:
    return addresses(query(name, rdtype, port, tcp=tcp), rdtype) == want


def test_kube_dns_service_and_endpoints_point_at_the_server(client: ApiClient, dns_server: DnsProcess) -> None:
    def published() -> bool:
        try:
            svc = client.get(SERVICES, "kube-dns", "kube-system")
            sl = client.get(ENDPOINTSLICES, "kube-dns", "kube-system")
            ep = client.get(ENDPOINTS, "kube-dns", "kube-system")
        except errors.NotFound:
            return False
        ports = {(p["name"], p["port"], p["protocol"]) for p in sl["ports"]}
        return (
            svc["spec"]["clusterIP"] == "10.96.0.10"
            and svc["metadata"]["labels"]["k8s-app"] == "kube-dns"
            and not svc["spec"].get("selector")
            and sl["metadata"]["labels"]["kubernetes.io/service-name"] == "kube-dns"
            and sl["endpoints"][0]["addresses"] == ["127.0.0.1"]
            and ports == {("dns", dns_server.port, "UDP"), ("dns-tcp", dns_server.port, "TCP")}
            and ep["subsets"][0]["addresses"][0]["ip"] == "127.0.0.1"
        )

    wait_for(published, timeout=20, message="kube-system/kube-dns with its endpoints")
    port = dns_server.port
    wait_for(lambda: resolves("kube-dns.kube-system.svc.cluster.local", port, {"10.96.0.10"}), timeout=10)
    # the API server's own service, over UDP and TCP
    assert resolves("kubernetes.default.svc.cluster.local.", port, {"10.96.0.1"})
    assert resolves("kubernetes.default.svc.cluster.local", port, {"10.96.0.1"}, tcp=True)
    srv = query("_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV", port, tcp=True)
    assert addresses(srv, "SRV") == {"0 100 53 kube-dns.kube-system.svc.cluster.local."}


def test_a_deleted_kube_dns_service_is_recreated(client: ApiClient, dns_server: DnsProcess) -> None:
    wait_for(lambda: _exists(client, ENDPOINTSLICES), timeout=20, message="the kube-dns slice")
    client.delete(SERVICES, "kube-dns", "kube-system")
    client.delete(ENDPOINTSLICES, "kube-dns", "kube-system")
    wait_for(
        lambda: _exists(client, SERVICES) and _exists(client, ENDPOINTSLICES),
        timeout=15, message="kube-dns recreated by the DNS server",
    )  # fmt: skip
    assert client.get(SERVICES, "kube-dns", "kube-system")["spec"]["clusterIP"] == "10.96.0.10"


def _exists(client: ApiClient, res: Any) -> bool:
    try:
        client.get(res, "kube-dns", "kube-system")
    except errors.NotFound:
        return False
    return True


def test_services_and_endpoints_are_followed(client: ApiClient, dns_server: DnsProcess) -> None:
    port = dns_server.port
    web = client.create(
        SERVICES,
        {"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        "default",
    )
    vip = web["spec"]["clusterIP"]
    wait_for(lambda: resolves("web.default.svc.cluster.local", port, {vip}), timeout=10, message="web's VIP")
    assert addresses(query(f"{'.'.join(reversed(vip.split('.')))}.in-addr.arpa", "PTR", port), "PTR") == {
        "web.default.svc.cluster.local."
    }
    client.create(
        SERVICES,
        {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
        "default",
    )
    client.create(
        ENDPOINTSLICES,
        {
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": True}},
                {"addresses": ["10.244.2.6"], "hostname": "db-1", "conditions": {"ready": False}},
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        },
        "default",
    )
    wait_for(
        lambda: resolves("db.default.svc.cluster.local", port, {"10.244.1.5"}, tcp=True),
        timeout=10, message="the headless service's ready endpoint",
    )  # fmt: skip
    assert resolves("db-0.db.default.svc.cluster.local", port, {"10.244.1.5"})
    srv = query("_pg._tcp.db.default.svc.cluster.local", "SRV", port)
    assert addresses(srv, "SRV") == {"0 100 5432 db-0.db.default.svc.cluster.local."}
    # the endpoint turns ready: it appears
    sl = client.get(ENDPOINTSLICES, "db-1", "default")
    sl["endpoints"][1]["conditions"]["ready"] = True
    client.update(ENDPOINTSLICES, sl)
    wait_for(
        lambda: resolves("db.default.svc.cluster.local", port, {"10.244.1.5", "10.244.2.6"}),
        timeout=10, message="both endpoints",
    )  # fmt: skip
    client.delete(SERVICES, "web", "default")
    wait_for(
        lambda: query("web.default.svc.cluster.local", "A", port).rcode() == dns.rcode.NXDOMAIN,
        timeout=10, message="NXDOMAIN after the service is deleted",
    )  # fmt: skip
    nx = query("web.default.svc.cluster.local", "A", port, tcp=True)
    assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority[0].rdtype == dns.rdatatype.SOA
    client.delete(SERVICES, "db", "default")
    client.delete(ENDPOINTSLICES, "db-1", "default")


def test_outside_names_are_refused_over_udp_and_tcp(dns_server: DnsProcess) -> None:
    for tcp in (False, True):
        assert query("example.org", "A", dns_server.port, tcp=tcp).rcode() == dns.rcode.REFUSED


def test_several_queries_on_one_tcp_connection(dns_server: DnsProcess) -> None:
    with socket.create_connection(("127.0.0.1", dns_server.port), timeout=3) as s:
        for name in ("kubernetes.default.svc.cluster.local", "nope.default.svc.cluster.local"):
            q = dns.message.make_query(name, "A")
            dns.query.send_tcp(s, q)
            r, _ = dns.query.receive_tcp(s, expiration=None)
            assert r.id == q.id
        assert r.rcode() == dns.rcode.NXDOMAIN


def test_bad_listen_address_is_a_clear_error(server: RunningApiServer) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lab", "dns", "--kubeconfig", str(server.kubeconfig), "--listen", "nowhere"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "ADDR:PORT" in res.stderr
