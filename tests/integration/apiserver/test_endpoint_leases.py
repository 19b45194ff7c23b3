"""Two real API servers on one etcd with ``--endpoint-reconciler-type=lease``: ``default/kubernetes``
(Endpoints and EndpointSlice) lists both; one killed (no clean shutdown) drops out after its TTL;
one stopped cleanly drops out at once."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.etcd import start_etcd
from tests.helpers.wait import wait_for

TTL = 3.0


def _addresses(srv: RunningApiServer) -> tuple[list[str], list[str]]:
    with srv.http() as c:
        ep = c.get("/api/v1/namespaces/default/endpoints/kubernetes").json()
        eps = c.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes").json()
    ep_ips = [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses", [])]
    slice_ips = [a for e in eps.get("endpoints") or [] for a in e["addresses"]]
    return ep_ips, slice_ips


def test_every_live_apiserver_is_an_endpoint_of_the_kubernetes_service(tmp_path: Path) -> None:
    etcd = start_etcd(tmp_path)
    servers: list[RunningApiServer] = []
    try:
        for i, ip in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4")):
            args = ["--advertise-address", ip, "--endpoint-reconciler-ttl", f"{TTL:g}s"]
            servers.append(
                start_apiserver(tmp_path / f"s{i}", store="etcd", etcd_endpoints=[etcd.endpoint], extra_args=args)
            )
        a, b, c = servers
        everyone = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        wait_for(lambda: _addresses(a) == (everyone, everyone), timeout=3 * TTL, message="all three listed")

        b.kill()  # no clean shutdown: its record expires
        wait_for(
            lambda: _addresses(a) == (["127.0.0.2", "127.0.0.4"],) * 2,
            timeout=3 * TTL,
            message="the killed API server removed after its TTL",
        )
        c.stop()  # SIGTERM: it removes its own record on the way out
        assert _addresses(a) == (["127.0.0.2"], ["127.0.0.2"])
    finally:
        for s in servers:
            s.stop()
        etcd.stop()
