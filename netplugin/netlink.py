"""The netlink seam of the bridge plugin: domain verbs, typed errors, the ``Link`` value.

Three layers (code-models §3.6): the plugin's orchestration (``bridge.py``) talks to a
``Netlink`` (this protocol); ``rtnl.RtNetlink`` is the real driver (a small stdlib rtnetlink
client; see its docstring for why not pyroute2), ``fake_netlink.FakeNetlink`` the stateful fake.
``tests/contract/netplugin/`` runs one suite against both.

Conventions every implementation keeps:
- ``netns`` is a namespace *path* (``/var/run/netns/x``, ``/proc/<pid>/ns/net``) or None for the
  namespace the plugin runs in; a path that does not exist raises ``NetnsNotFound``;
- errors are translated once, here at the boundary: ENODEV → ``LinkNotFound``, EEXIST →
  ``LinkExists``, anything else → ``NetlinkError(errno, what)``;
- ensure/add verbs treat "already there" as success; ``delete_link`` treats "not there" as success
  (returns False).
"""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from typing import Protocol


class NetOpError(Exception):
    """Base of the netlink errors."""


class NetlinkError(NetOpError):
    def __init__(self, errno: int, what: str) -> None:
        import os

        super().__init__(f"{what}: {os.strerror(errno)} (errno {errno})")
        self.errno = errno
        self.what = what


class LinkNotFound(NetOpError):
    pass


class LinkExists(NetOpError):
    pass


class NetnsNotFound(NetOpError):
    pass


class Link:
    """What the plugin needs to know about an interface."""

    __slots__ = ("hairpin", "index", "kind", "mac", "master", "mtu", "name", "promisc", "up")

    def __init__(
        self,
        name: str,
        index: int,
        kind: str = "",
        mtu: int = 1500,
        mac: str = "",
        master: int = 0,
        up: bool = False,
        promisc: bool = False,
        hairpin: bool = False,
    ) -> None:
        self.name = name
        self.index = index
        self.kind = kind
        self.mtu = mtu
        self.mac = mac
        self.master = master
        self.up = up
        self.promisc = promisc
        self.hairpin = hairpin

    def __repr__(self) -> str:
        return f"Link({self.name!r}, index={self.index}, kind={self.kind!r}, master={self.master}, up={self.up})"


class Route:
    __slots__ = ("dst", "gw", "oif", "priority")

    def __init__(self, dst: str, gw: str | None, oif: int, priority: int = 0) -> None:
        self.dst = dst  # CIDR text, "0.0.0.0/0" for the default route
        self.gw = gw
        self.oif = oif
        self.priority = priority

    def __repr__(self) -> str:
        return f"Route({self.dst} via {self.gw} oif {self.oif})"


if TYPE_CHECKING:

    class Netlink(Protocol):
        def get_link(self, name: str, netns: str | None = None) -> Link | None: ...

        def ensure_bridge(self, name: str, mtu: int | None = None, promisc: bool = False) -> Link: ...

        def create_veth(
            self, host_name: str, peer_name: str, peer_netns: str, mtu: int | None, master: int
        ) -> None: ...

        def set_hairpin(self, ifname: str, on: bool) -> None: ...

        def get_hairpin(self, ifname: str, netns: str | None = None) -> bool: ...

        def add_address(self, ifname: str, cidr: str, netns: str | None = None) -> None: ...

        def addresses(self, ifname: str, netns: str | None = None) -> list[str]: ...

        def add_route(self, dst: str, gw: str | None, ifname: str, netns: str | None = None) -> None: ...

        def routes(self, netns: str | None = None) -> list[Route]: ...

        def delete_link(self, name: str, netns: str | None = None) -> bool: ...

        def set_sysctl(self, key: str, value: str, netns: str | None = None) -> None: ...

        def get_sysctl(self, key: str, netns: str | None = None) -> str: ...

        def netns_exists(self, netns: str) -> bool: ...

        def close(self) -> None: ...
