"""One contract for both Netlink drivers: FakeNetlink (always) and RtNetlink on a real kernel
(as root, inside throwaway namespaces: a "host" one standing for the plugin's own and a "pod").

Keeps the fake honest: every behaviour the bridge plugin relies on is asserted on both.
Addresses: 10.244.1.0/24 on the bridge side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from netplugin.fake_netlink import FakeNetlink
from netplugin.netlink import LinkExists, NetlinkError, NetnsNotFound

MISSING_NS = "/var/run/netns/kubelab-contract-does-not-exist"


@pytest.fixture(params=["fake", "real"])
def drv(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    if request.param == "fake":
        nl = FakeNetlink()
        nl.add_netns("/run/netns/pod")
        yield nl, "/run/netns/pod"
        return
    if os.geteuid() != 0:
        pytest.skip("the real driver needs root (run `sudo make test`)")
    from netplugin.fast.rtnl import RtNetlink
    from tests.helpers.netns import netns_factory

    with netns_factory() as make:
        host = make("host")
        pod = make("pod")
        real = RtNetlink(host_netns=f"/var/run/netns/{host}")
        try:
            yield real, f"/var/run/netns/{pod}"
        finally:
            real.close()


def test_ensure_bridge_is_idempotent(drv: tuple[Any, str]) -> None:
    nl, _ = drv
    a = nl.ensure_bridge("cni0", 1500, False)
    b = nl.ensure_bridge("cni0", 1500, False)
    assert a.index == b.index and b.kind == "bridge" and b.up


def test_missing_link_is_none(drv: tuple[Any, str]) -> None:
    nl, pod = drv
    assert nl.get_link("nope0") is None and nl.get_link("nope0", pod) is None


def test_veth_into_netns(drv: tuple[Any, str]) -> None:
    nl, pod = drv
    br = nl.ensure_bridge("cni0", None, False)
    nl.create_veth("vethtest0", "eth0", pod, 1400, br.index)
    host = nl.get_link("vethtest0")
    peer = nl.get_link("eth0", pod)
    assert host is not None and peer is not None
    assert host.master == br.index and host.kind == "veth" and host.mtu == 1400
    assert peer.up and peer.mtu == 1400 and nl.get_link("eth0") is None
    with pytest.raises(LinkExists):
        nl.create_veth("vethtest0", "eth1", pod, None, br.index)
    with pytest.raises(NetnsNotFound):
        nl.create_veth("vethtest1", "eth0", MISSING_NS, None, br.index)


def test_bridge_name_taken_by_other_kind(drv: tuple[Any, str]) -> None:
    nl, pod = drv
    nl.create_veth("notabr", "eth9", pod, None, 0)
    with pytest.raises(LinkExists, match="not a bridge"):
        nl.ensure_bridge("notabr")


def test_hairpin(drv: tuple[Any, str]) -> None:
    nl, pod = drv
    br = nl.ensure_bridge("cni0")
    nl.create_veth("vethtest0", "eth0", pod, None, br.index)
    assert nl.get_hairpin("vethtest0") is False
    nl.set_hairpin("vethtest0", True)
    assert nl.get_hairpin("vethtest0") is True


def test_addresses_and_routes(drv: tuple[Any, str]) -> None:
    nl, pod = drv
    br = nl.ensure_bridge("cni0")
    nl.create_veth("vethtest0", "eth0", pod, None, br.index)
    nl.add_address("eth0", "10.244.1.2/24", pod)
    nl.add_address("eth0", "10.244.1.2/24", pod)  # ensure semantics
    assert "10.244.1.2/24" in nl.addresses("eth0", pod)
    nl.add_route("0.0.0.0/0", "10.244.1.1", "eth0", pod)
    nl.add_route("0.0.0.0/0", "10.244.1.1", "eth0", pod)
    eth0 = nl.get_link("eth0", pod)
    assert any(r.dst == "0.0.0.0/0" and r.gw == "10.244.1.1" and r.oif == eth0.index for r in nl.routes(pod))
    assert any(r.dst == "10.244.1.0/24" and r.gw is None for r in nl.routes(pod))  # connected route
    with pytest.raises(NetlinkError):
        nl.add_route("10.0.0.0/8", "192.0.2.1", "eth0", pod)  # gateway not on any link


def test_delete_link_takes_the_peer_and_is_idempotent(drv: tuple[Any, str]) -> None:
    nl, pod = drv
    br = nl.ensure_bridge("cni0")
    nl.create_veth("vethtest0", "eth0", pod, None, br.index)
    assert nl.delete_link("eth0", pod) is True
    assert nl.get_link("vethtest0") is None
    assert nl.delete_link("eth0", pod) is False
    assert nl.delete_link("vethtest0") is False
    assert nl.delete_link("eth0", MISSING_NS) is False


def test_sysctls(drv: tuple[Any, str]) -> None:
    nl, pod = drv
    nl.set_sysctl("net/ipv4/ip_forward", "1")
    assert nl.get_sysctl("net/ipv4/ip_forward") == "1"
    nl.create_veth("vethtest0", "eth0", pod, None, 0)
    nl.set_sysctl("net/ipv4/conf/eth0/arp_notify", "1", pod)
    assert nl.get_sysctl("net/ipv4/conf/eth0/arp_notify", pod) == "1"
