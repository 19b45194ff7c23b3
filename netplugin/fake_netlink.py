"""``FakeNetlink``: a stateful in-memory ``Netlink`` for unit tests (no root, no kernel).

It keeps, per namespace path (``None`` = the plugin's own), links, addresses, routes and sysctls
in dicts, follows the kernel's rules that the plugin relies on (names unique per namespace, a
veth pair dies with either end or with its namespace, a connected route per address, EEXIST and
ENODEV semantics) and raises the same exceptions as ``rtnl.RtNetlink``. Tests check outcomes
("the container has 10.244.1.2/24 and a default route"), not call sequences; the contract suite
in ``tests/contract/netplugin/`` keeps it honest against the real driver.

``fail_on`` injects a failure into a named verb (e.g. ``{"add_route"}``) to test the undo path.
"""

from __future__ import annotations

from netplugin.netlink import Link, LinkExists, LinkNotFound, NetlinkError, NetnsNotFound, Route


class _Ns:
    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.addrs: dict[str, list[str]] = {}
        self.routes: list[Route] = []
        self.sysctls: dict[str, str] = {}


class FakeNetlink:
    def __init__(self) -> None:
        self.ns: dict[str | None, _Ns] = {None: _Ns()}
        self.peers: dict[tuple[str | None, str], tuple[str | None, str]] = {}
        self.next_index = 2
        self.fail_on: set[str] = set()
        self.closed = False

    # -- test helpers --
    def add_netns(self, path: str) -> None:
        self.ns[path] = _Ns()

    def remove_netns(self, path: str) -> None:
        """Like deleting a namespace: its links go, and the peers of its veths with them."""
        space = self.ns.pop(path)
        for name in list(space.links):
            peer = self.peers.pop((path, name), None)
            if peer is not None:
                self.peers.pop(peer, None)
                self._drop(peer[0], peer[1])

    def _space(self, netns: str | None) -> _Ns:
        if netns not in self.ns:
            raise NetnsNotFound(f"netns path {netns!r} does not exist")
        return self.ns[netns]

    def _maybe_fail(self, verb: str) -> None:
        if verb in self.fail_on:
            raise NetlinkError(5, f"injected failure in {verb}")

    def _new_link(self, netns: str | None, name: str, kind: str, mtu: int | None) -> Link:
        space = self._space(netns)
        if name in space.links:
            raise LinkExists(f"link {name} exists")
        link = Link(
            name,
            self.next_index,
            kind,
            mtu or 1500,
            f"02:00:00:00:{self.next_index >> 8:02x}:{self.next_index & 255:02x}",
        )
        self.next_index += 1
        space.links[name] = link
        return link

    def _drop(self, netns: str | None, name: str) -> None:
        space = self.ns.get(netns)
        if space is None or name not in space.links:
            return
        idx = space.links.pop(name).index
        space.addrs.pop(name, None)
        space.routes = [r for r in space.routes if r.oif != idx]

    # -- Netlink --
    def netns_exists(self, netns: str) -> bool:
        return netns in self.ns

    def get_link(self, name: str, netns: str | None = None) -> Link | None:
        return self._space(netns).links.get(name)

    def ensure_bridge(self, name: str, mtu: int | None = None, promisc: bool = False) -> Link:
        self._maybe_fail("ensure_bridge")
        link = self._space(None).links.get(name)
        if link is None:
            link = self._new_link(None, name, "bridge", mtu)
        if link.kind != "bridge":
            raise LinkExists(f"{name} already exists but is a {link.kind or 'non-bridge'} device, not a bridge")
        link.up, link.promisc = True, promisc
        return link

    def create_veth(self, host_name: str, peer_name: str, peer_netns: str, mtu: int | None, master: int) -> None:
        self._maybe_fail("create_veth")
        peer_space = self._space(peer_netns)
        if host_name in self._space(None).links or peer_name in peer_space.links:
            raise LinkExists(f"create veth {host_name} <-> {peer_name}")
        host = self._new_link(None, host_name, "veth", mtu)
        host.master, host.up = master, True
        peer = self._new_link(peer_netns, peer_name, "veth", mtu)
        peer.up = True
        self.peers[(None, host_name)] = (peer_netns, peer_name)
        self.peers[(peer_netns, peer_name)] = (None, host_name)

    def set_hairpin(self, ifname: str, on: bool) -> None:
        self._maybe_fail("set_hairpin")
        link = self.get_link(ifname)
        if link is None:
            raise LinkNotFound(f"link {ifname} not found")
        link.hairpin = on

    def get_hairpin(self, ifname: str, netns: str | None = None) -> bool:
        link = self._space(netns).links.get(ifname)
        if link is None:
            raise LinkNotFound(f"link {ifname} not found")
        return link.hairpin

    def delete_link(self, name: str, netns: str | None = None) -> bool:
        self._maybe_fail("delete_link")
        if netns is not None and netns not in self.ns:
            return False
        if name not in self.ns[netns].links:
            return False
        self._drop(netns, name)
        peer = self.peers.pop((netns, name), None)
        if peer is not None:
            self.peers.pop(peer, None)
            self._drop(*peer)
        return True

    def add_address(self, ifname: str, cidr: str, netns: str | None = None) -> None:
        self._maybe_fail("add_address")
        space = self._space(netns)
        link = space.links.get(ifname)
        if link is None:
            raise LinkNotFound(f"link {ifname} not found")
        lst = space.addrs.setdefault(ifname, [])
        if cidr not in lst:
            lst.append(cidr)
            from netplugin.fast.ipnet import IPNet

            net = IPNet.parse(cidr)
            space.routes.append(Route(str(net), None, link.index))  # the kernel's connected route

    def addresses(self, ifname: str, netns: str | None = None) -> list[str]:
        space = self._space(netns)
        if ifname not in space.links:
            raise LinkNotFound(f"link {ifname} not found")
        return list(space.addrs.get(ifname, []))

    def add_route(self, dst: str, gw: str | None, ifname: str, netns: str | None = None) -> None:
        self._maybe_fail("add_route")
        space = self._space(netns)
        link = space.links.get(ifname)
        if link is None:
            raise LinkNotFound(f"link {ifname} not found")
        if gw is not None:
            from netplugin.fast.ipnet import IP, IPNet

            g = IP.parse(gw)
            if not any(IPNet.parse(a).contains(g) for a in space.addrs.get(ifname, [])):
                raise NetlinkError(101, f"add route {dst} via {gw} dev {ifname}")  # ENETUNREACH
        if any(r.dst == dst and r.gw == gw for r in space.routes):
            return
        space.routes.append(Route(dst, gw, link.index))

    def routes(self, netns: str | None = None) -> list[Route]:
        return list(self._space(netns).routes)

    def set_sysctl(self, key: str, value: str, netns: str | None = None) -> None:
        self._space(netns).sysctls[key] = value

    def get_sysctl(self, key: str, netns: str | None = None) -> str:
        return self._space(netns).sysctls.get(key, "0")

    def close(self) -> None:
        self.closed = True
