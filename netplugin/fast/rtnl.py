"""The real ``Netlink`` driver: a small rtnetlink client on the stdlib alone.

Why not pyroute2: it could do every message here, but ``import pyroute2`` costs ~270 ms while a
whole reference ADD takes ~12 ms, and the plugin is exec'd once per pod. The plugin needs only a
handful of messages (RTM_NEWLINK for a bridge and a veth pair with IFLA_NET_NS_FD, RTM_SETLINK
for flags and the bridge port's hairpin mode, RTM_NEWADDR, RTM_NEWROUTE, RTM_DELLINK and a few
GET/dumps for CHECK), so a ~250-line encoder is the cheaper tool. The long-lived node agent, where
import cost does not matter, uses pyroute2 (``agent.py``).

Wire format (rtnetlink(7)): a message is ``nlmsghdr`` (len u32, type u16, flags u16, seq u32,
pid u32) + a family header (``ifinfomsg``/``ifaddrmsg``/``rtmsg``) + attributes (len u16,
type u16, payload padded to 4 bytes; nested attributes carry NLA_F_NESTED). Every non-dump
request asks for an ACK, so each call returns only after the kernel applied it (or raised).

Namespaces: one socket per namespace, created while the process is switched into it with
``setns(2)`` (called through ``_ctypes``: Python 3.11 has no ``os.setns`` and ``ctypes`` proper
costs ~5 ms to import); a netlink socket stays bound to the namespace it was created in, so the
process switches back at once. ``/proc/sys/net`` is per namespace of the *reader*, so sysctls of
another namespace are written while switched into it. This is safe only in a single-threaded
process, which the plugin is (CNI's ``pkg/ns`` README explains the hazards for threaded ones).
"""

from __future__ import annotations

import _socket
import os
import struct

from netplugin.netlink import Link, LinkExists, LinkNotFound, NetlinkError, NetnsNotFound, Route

NETLINK_ROUTE = 0
AF_NETLINK = 16
AF_BRIDGE = 7
CLONE_NEWNET = 0x40000000

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
NLA_F_NESTED = 0x8000

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_PROTINFO, IFLA_LINKINFO, IFLA_NET_NS_FD = 12, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFLA_BRPORT_MODE = 4  # the bridge port's hairpin mode
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
IFF_UP, IFF_PROMISC = 0x1, 0x100
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
FAMILY = {4: _socket.AF_INET, 6: _socket.AF_INET6}
ENODEV, EEXIST, ENOENT = 19, 17, 2

_HDR = struct.Struct("IHHII")
_IFINFO = struct.Struct("BxHiII")
_IFADDR = struct.Struct("BBBBi")
_RTMSG = struct.Struct("BBBBBBBBI")


def _setns_func() -> object:
    import _ctypes

    class c_int(_ctypes._SimpleCData):  # type: ignore[misc,name-defined,type-arg]
        _type_ = "i"

    class CFunc(_ctypes.CFuncPtr):  # type: ignore[misc,name-defined]
        _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
        _restype_ = c_int

    class Libc:
        _handle = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]

    return CFunc(("setns", Libc()))  # type: ignore[arg-type]


_setns_cached: object = None


def setns(fd: int, what: str) -> None:
    global _setns_cached
    if _setns_cached is None:
        _setns_cached = _setns_func()
    if _setns_cached(fd, CLONE_NEWNET) != 0:  # type: ignore[operator]
        import _ctypes

        raise NetlinkError(_ctypes.get_errno(), f"setns into {what}")


def attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("HH", n, kind) + payload + b"\0" * (-n % 4)


def nested(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def parse_attrs(data: bytes, off: int = 0) -> dict[int, bytes]:
    out = {}
    while off + 4 <= len(data):
        n, kind = struct.unpack_from("HH", data, off)
        if n < 4:
            break
        out[kind & 0x3FFF] = data[off + 4 : off + n]
        off += (n + 3) & ~3
    return out


def _u32(b: bytes) -> int:
    return int(struct.unpack("I", b[:4])[0])


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode()


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _ip_family(text: str) -> int:
    return 6 if ":" in text else 4


def _packed(text: str) -> bytes:
    return _socket.inet_pton(FAMILY[_ip_family(text)], text)


def _ntop(family: int, raw: bytes) -> str:
    return _socket.inet_ntop(family, raw)


class _Netns:
    """Switch this (single-threaded) process into a namespace and back."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.own = -1

    def __enter__(self) -> _Netns:
        try:
            target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NetnsNotFound(f"netns path {self.path!r} does not exist") from None
        self.own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target, self.path)
        except BaseException:
            os.close(self.own)
            raise
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            setns(self.own, "the plugin's own namespace")
        finally:
            os.close(self.own)


def parse_link(payload: bytes) -> Link:
    _fam, _typ, index, flags, _chg = _IFINFO.unpack_from(payload)
    a = parse_attrs(payload, _IFINFO.size)
    kind = ""
    if IFLA_LINKINFO in a:
        info = parse_attrs(a[IFLA_LINKINFO])
        kind = _cstr(info.get(IFLA_INFO_KIND, b""))
    return Link(
        name=_cstr(a.get(IFLA_IFNAME, b"")),
        index=index,
        kind=kind,
        mtu=_u32(a[IFLA_MTU]) if IFLA_MTU in a else 0,
        mac=_mac(a.get(IFLA_ADDRESS, b"")),
        master=_u32(a[IFLA_MASTER]) if IFLA_MASTER in a else 0,
        up=bool(flags & IFF_UP),
        promisc=bool(flags & IFF_PROMISC),
    )


class RtNetlink:
    """``Netlink`` over raw rtnetlink sockets (see the module docstring)."""

    def __init__(self, host_netns: str | None = None) -> None:
        # ``host_netns``: the namespace that ``netns=None`` means (default: the one we run in);
        # lets tests drive a throwaway "host" namespace from a process that stays outside it.
        self.host_netns = host_netns
        self._socks: dict[str, _socket.socket] = {}
        self._seq = 0

    # -- plumbing ---------------------------------------------------------------------------
    def _sock(self, netns: str | None) -> _socket.socket:
        netns = netns or self.host_netns
        key = netns or ""
        s = self._socks.get(key)
        if s is None:
            if netns:
                with _Netns(netns):
                    s = _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            else:
                s = _socket.socket(AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, NETLINK_ROUTE)
            s.bind((0, 0))
            self._socks[key] = s
        return s

    def _request(self, netns: str | None, msg_type: int, flags: int, body: bytes, what: str) -> list[bytes]:
        """Send one request; return the payloads of the replies (dump parts or a GET answer)."""
        s = self._sock(netns)
        self._seq += 1
        seq = self._seq
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        if not dump:
            flags |= NLM_F_ACK
        s.send(_HDR.pack(_HDR.size + len(body), msg_type, flags | NLM_F_REQUEST, seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = s.recv(1 << 17)
            off = 0
            while off + _HDR.size <= len(data):
                n, typ, _f, rseq, _pid = _HDR.unpack_from(data, off)
                payload = data[off + _HDR.size : off + n]
                off += (n + 3) & ~3
                if rseq != seq:
                    continue  # a late answer to an earlier request
                if typ == NLMSG_ERROR:
                    err = -int(struct.unpack_from("i", payload)[0])
                    if err == 0:
                        return out
                    if err == ENODEV:
                        raise LinkNotFound(what)
                    if err == EEXIST:
                        raise LinkExists(what)
                    raise NetlinkError(err, what)
                if typ == NLMSG_DONE:
                    return out
                out.append(payload)

    @staticmethod
    def _ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
        return _IFINFO.pack(family, 0, index, flags, change)

    # -- links ------------------------------------------------------------------------------
    def netns_exists(self, netns: str) -> bool:
        return os.path.exists(netns)

    def get_link(self, name: str, netns: str | None = None) -> Link | None:
        body = self._ifinfo() + attr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            replies = self._request(netns, RTM_GETLINK, 0, body, f"get link {name}")
        except LinkNotFound:
            return None
        return parse_link(replies[0])

    def get_hairpin(self, ifname: str, netns: str | None = None) -> bool:
        index = self._index(ifname, netns)
        # Bridge port options come only from an AF_BRIDGE dump (IFLA_PROTINFO of each port).
        for payload in self._request(netns, RTM_GETLINK, NLM_F_DUMP, self._ifinfo(family=AF_BRIDGE), "bridge ports"):
            _fam, _t, idx, _fl, _c = _IFINFO.unpack_from(payload)
            if idx == index:
                proto = parse_attrs(payload, _IFINFO.size).get(IFLA_PROTINFO)
                if proto is not None:
                    mode = parse_attrs(proto).get(IFLA_BRPORT_MODE)
                    return bool(mode and mode[0])
        return False

    def ensure_bridge(self, name: str, mtu: int | None = None, promisc: bool = False) -> Link:
        link = self.get_link(name)
        if link is None:
            flags = IFF_UP | (IFF_PROMISC if promisc else 0)
            body = self._ifinfo(flags=flags, change=flags) + attr(IFLA_IFNAME, name.encode() + b"\0")
            if mtu:
                body += attr(IFLA_MTU, struct.pack("I", mtu))
            body += nested(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge\0"))
            try:
                self._request(None, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create bridge {name}")
            except LinkExists:
                pass  # a parallel ADD made it first
            link = self.get_link(name)
            if link is None:
                raise LinkNotFound(f"bridge {name} vanished after creation")
        if link.kind != "bridge":
            raise LinkExists(f"{name} already exists but is a {link.kind or 'non-bridge'} device, not a bridge")
        want = IFF_UP | (IFF_PROMISC if promisc else 0)
        if not link.up or link.promisc != promisc:
            body = self._ifinfo(link.index, want, IFF_UP | IFF_PROMISC)
            self._request(None, RTM_NEWLINK, 0, body, f"set bridge {name} up")
            link.up, link.promisc = True, promisc
        return link

    def create_veth(self, host_name: str, peer_name: str, peer_netns: str, mtu: int | None, master: int) -> None:
        try:
            fd = os.open(peer_netns, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NetnsNotFound(f"netns path {peer_netns!r} does not exist") from None
        try:
            mtu_attr = attr(IFLA_MTU, struct.pack("I", mtu)) if mtu else b""
            # The peer is created down: asking for IFF_UP on a peer placed in another namespace
            # fails with ENOTCONN on this kernel; it is brought up there right after.
            peer = (
                self._ifinfo()
                + attr(IFLA_IFNAME, peer_name.encode() + b"\0")
                + mtu_attr
                + attr(IFLA_NET_NS_FD, struct.pack("I", fd))
            )
            body = (
                self._ifinfo(flags=IFF_UP, change=IFF_UP)
                + attr(IFLA_IFNAME, host_name.encode() + b"\0")
                + mtu_attr
                + (attr(IFLA_MASTER, struct.pack("I", master)) if master else b"")
                + nested(
                    IFLA_LINKINFO,
                    attr(IFLA_INFO_KIND, b"veth\0"),
                    nested(IFLA_INFO_DATA, nested(VETH_INFO_PEER, peer)),
                )
            )
            self._request(
                None, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create veth {host_name} <-> {peer_name}"
            )
        finally:
            os.close(fd)
        up = self._ifinfo(flags=IFF_UP, change=IFF_UP) + attr(IFLA_IFNAME, peer_name.encode() + b"\0")
        self._request(peer_netns, RTM_SETLINK, 0, up, f"set {peer_name} up in {peer_netns}")

    def set_hairpin(self, ifname: str, on: bool) -> None:
        link = self.get_link(ifname)
        if link is None:
            raise LinkNotFound(f"link {ifname} not found")
        body = self._ifinfo(link.index, family=AF_BRIDGE) + nested(
            IFLA_PROTINFO, attr(IFLA_BRPORT_MODE, bytes([1 if on else 0]))
        )
        self._request(None, RTM_SETLINK, 0, body, f"set hairpin on {ifname}")

    def delete_link(self, name: str, netns: str | None = None) -> bool:
        if netns and not os.path.exists(netns):
            return False
        body = self._ifinfo() + attr(IFLA_IFNAME, name.encode() + b"\0")
        try:
            self._request(netns, RTM_DELLINK, 0, body, f"delete link {name}")
        except LinkNotFound:
            return False
        return True

    # -- addresses and routes ---------------------------------------------------------------
    def _index(self, ifname: str, netns: str | None) -> int:
        link = self.get_link(ifname, netns)
        if link is None:
            raise LinkNotFound(f"link {ifname} not found")
        return link.index

    def add_address(self, ifname: str, cidr: str, netns: str | None = None) -> None:
        ip, _, plen = cidr.partition("/")
        fam = _ip_family(ip)
        prefix = int(plen)
        idx = self._index(ifname, netns)
        body = (
            _IFADDR.pack(FAMILY[fam], prefix, 0, 0, idx) + attr(IFA_LOCAL, _packed(ip)) + attr(IFA_ADDRESS, _packed(ip))
        )
        if fam == 4 and prefix < 31:
            value = int.from_bytes(_packed(ip), "big") | ((1 << (32 - prefix)) - 1)
            body += attr(IFA_BROADCAST, value.to_bytes(4, "big"))
        try:
            self._request(netns, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"add address {cidr} to {ifname}")
        except LinkExists:
            pass  # already there: the ensure semantics

    def addresses(self, ifname: str, netns: str | None = None) -> list[str]:
        idx = self._index(ifname, netns)
        out = []
        for payload in self._request(netns, RTM_GETADDR, NLM_F_DUMP, _IFADDR.pack(0, 0, 0, 0, 0), "list addresses"):
            fam, prefix, _fl, _scope, index = _IFADDR.unpack_from(payload)
            if index != idx:
                continue
            a = parse_attrs(payload, _IFADDR.size)
            raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
            if raw:
                out.append(f"{_ntop(fam, raw)}/{prefix}")
        return out

    def add_route(self, dst: str, gw: str | None, ifname: str, netns: str | None = None) -> None:
        net, _, plen = dst.partition("/")
        fam = _ip_family(net)
        idx = self._index(ifname, netns)
        scope = RT_SCOPE_UNIVERSE if gw else RT_SCOPE_LINK
        body = _RTMSG.pack(FAMILY[fam], int(plen), 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, scope, RTN_UNICAST, 0)
        if int(plen):
            body += attr(RTA_DST, _packed(net))
        if gw:
            body += attr(RTA_GATEWAY, _packed(gw))
        body += attr(RTA_OIF, struct.pack("I", idx))
        try:
            self._request(
                netns, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"add route {dst} via {gw} dev {ifname}"
            )
        except LinkExists:
            pass

    def routes(self, netns: str | None = None) -> list[Route]:
        out = []
        for payload in self._request(
            netns, RTM_GETROUTE, NLM_F_DUMP, _RTMSG.pack(0, 0, 0, 0, 0, 0, 0, 0, 0), "list routes"
        ):
            fam, dst_len, _s, _t, table, _p, _sc, typ, _f = _RTMSG.unpack_from(payload)
            a = parse_attrs(payload, _RTMSG.size)
            if RTA_TABLE in a:
                table = _u32(a[RTA_TABLE])
            if table != RT_TABLE_MAIN or typ != RTN_UNICAST:
                continue
            zero = "0.0.0.0" if fam == _socket.AF_INET else "::"
            dst = f"{_ntop(fam, a[RTA_DST]) if RTA_DST in a else zero}/{dst_len}"
            gw = _ntop(fam, a[RTA_GATEWAY]) if RTA_GATEWAY in a else None
            out.append(Route(dst, gw, _u32(a[RTA_OIF]) if RTA_OIF in a else 0, _u32(a.get(RTA_PRIORITY, b"\0\0\0\0"))))
        return out

    # -- sysctls ----------------------------------------------------------------------------
    def set_sysctl(self, key: str, value: str, netns: str | None = None) -> None:
        path = "/proc/sys/" + key.replace(".", "/") if "/" not in key else "/proc/sys/" + key
        netns = netns or self.host_netns
        if netns:
            with _Netns(netns):
                _write(path, value)
        else:
            _write(path, value)

    def get_sysctl(self, key: str, netns: str | None = None) -> str:
        path = "/proc/sys/" + key.replace(".", "/") if "/" not in key else "/proc/sys/" + key
        netns = netns or self.host_netns
        if netns:
            with _Netns(netns):
                return _read(path)
        return _read(path)

    def close(self) -> None:
        for s in self._socks.values():
            s.close()
        self._socks.clear()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()
