"""host-local's allocation logic, pure: ranges, range sets, the round-robin iterator, the allocator.

Role: the planner layer of the IPAM plugin. ``parse_ipam_config`` turns host-local's keys into
``RangeSet``s (validating and defaulting exactly as host-local's ``Canonicalize``), and
``IPAllocator`` hands out, checks and releases addresses through a ``Store`` (``interface.py``; the
disk store in ``disk.py``, a memory store for tests).

Invariants (the hypothesis tests check them):
- an address is never given out twice, never the gateway, never outside ``rangeStart..rangeEnd``;
- allocation is round-robin: it resumes after ``last_reserved_ip.<set index>`` and wraps, so a
  crash-looping pod does not get the address it just released until the range came round;
- one attachment (container ID, ifname) holds at most one address per range set;
- release frees exactly that attachment's addresses (and legacy ID-only reservations of the ID).

Concurrency: callers hold the store's lock around each ``get``/``release``/``gc`` (the store's
reserve is also atomic on its own: O_EXCL on disk).
"""

from __future__ import annotations

from netplugin.fast.ipnet import IP, IPNet
from netplugin.skel import DUPLICATE_ALLOCATION, INVALID_CONFIG, TRY_AGAIN, CniError

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from netplugin.ipam.interface import Store


class Range:
    """One host-local range: ``subnet`` plus optional ``rangeStart``/``rangeEnd``/``gateway``."""

    __slots__ = ("end", "gateway", "start", "subnet")

    def __init__(self, subnet: IPNet, start: IP, end: IP, gateway: IP | None) -> None:
        self.subnet = subnet
        self.start = start
        self.end = end
        self.gateway = gateway

    @classmethod
    def from_conf(cls, raw: Any, where: str) -> Range:
        if not isinstance(raw, dict):
            raise CniError(INVALID_CONFIG, f"{where} must be an object with a 'subnet'")
        if not raw.get("subnet"):
            raise CniError(INVALID_CONFIG, f"{where}: missing required key 'subnet'")
        try:
            subnet = IPNet.parse(raw["subnet"])
        except ValueError as exc:
            raise CniError(INVALID_CONFIG, f"{where}.subnet: {exc}") from None
        # host-local masks the subnet ("10.0.0.5/24" means 10.0.0.0/24).
        subnet = IPNet(subnet.network, subnet.prefix)
        bits = 32 if subnet.family == 4 else 128
        if subnet.prefix > bits - 2:
            raise CniError(INVALID_CONFIG, f"{where}: Network {subnet} too small to allocate from")

        def addr(key: str) -> IP | None:
            val = raw.get(key)
            if val in (None, ""):
                return None
            try:
                ip = IP.parse(val)
            except ValueError as exc:
                raise CniError(INVALID_CONFIG, f"{where}.{key}: {exc}") from None
            if not subnet.contains(ip):
                raise CniError(INVALID_CONFIG, f"{where}.{key} {ip} not in network {subnet}")
            return ip

        gateway = addr("gateway") or subnet.network + 1
        last = subnet.last if subnet.family == 6 else subnet.last + -1
        start = addr("rangeStart") or subnet.network + 1
        end = addr("rangeEnd") or last
        if start.value > end.value:
            raise CniError(INVALID_CONFIG, f"{where}: rangeStart {start} is after rangeEnd {end}")
        return cls(subnet, start, end, gateway)

    def contains(self, ip: IP) -> bool:
        return ip.family == self.subnet.family and self.start.value <= ip.value <= self.end.value

    def overlaps(self, other: Range) -> bool:
        return (
            self.subnet.family == other.subnet.family
            and self.start.value <= other.end.value
            and other.start.value <= self.end.value
        )

    def size(self) -> int:
        n = self.end.value - self.start.value + 1
        if self.gateway is not None and self.contains(self.gateway):
            n -= 1
        return n

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class RangeSet:
    """A list of ranges of one family; an attachment gets one address from each set."""

    __slots__ = ("index", "ranges")

    def __init__(self, index: int, ranges: list[Range]) -> None:
        self.index = index
        self.ranges = ranges

    def contains(self, ip: IP) -> bool:
        return any(r.contains(ip) for r in self.ranges)

    def range_for(self, ip: IP) -> Range | None:
        for r in self.ranges:
            if r.contains(ip):
                return r
        return None

    def size(self) -> int:
        return sum(r.size() for r in self.ranges)

    def iterate(self, last_reserved: IP | None) -> Iterator[tuple[IP, Range]]:
        """Every candidate once, starting just after ``last_reserved`` (round-robin), gateway skipped."""
        start_r, start_ip = 0, self.ranges[0].start
        if last_reserved is not None:
            for i, r in enumerate(self.ranges):
                if r.contains(last_reserved):
                    if last_reserved.value < r.end.value:
                        start_r, start_ip = i, last_reserved + 1
                    else:
                        start_r = (i + 1) % len(self.ranges)
                        start_ip = self.ranges[start_r].start
                    break
        n = len(self.ranges)
        # Walk from the start point to each range's end, then wrap round to it.
        for k in range(n + 1):
            r = self.ranges[(start_r + k) % n]
            if k == 0:
                lo, hi = start_ip.value, r.end.value
            elif k == n:
                lo, hi = r.start.value, start_ip.value - 1
            else:
                lo, hi = r.start.value, r.end.value
            for v in range(lo, hi + 1):
                ip = IP(r.subnet.family, v)
                if r.gateway is not None and ip == r.gateway:
                    continue
                yield ip, r

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


class IpamConfig:
    __slots__ = ("data_dir", "dns", "name", "range_sets", "routes")

    def __init__(
        self, name: str, range_sets: list[RangeSet], routes: list[dict[str, Any]], data_dir: str, dns: dict[str, Any]
    ) -> None:
        self.name = name
        self.range_sets = range_sets
        self.routes = routes
        self.data_dir = data_dir
        self.dns = dns


DEFAULT_DATA_DIR = "/var/lib/cni/networks"


def parse_ipam_config(conf: dict[str, Any]) -> IpamConfig:
    """host-local's keys under ``ipam``: ``ranges`` (list of range sets) or the legacy top-level
    ``subnet``/``rangeStart``/``rangeEnd``/``gateway``; ``routes``; ``dataDir``; ``resolvConf``."""
    name = conf.get("name")
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise CniError(INVALID_CONFIG, f"invalid network 'name' {name!r}: a non-empty file name is needed")
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise CniError(INVALID_CONFIG, "network configuration is missing the 'ipam' object")
    raw_sets: Any = ipam.get("ranges")
    if ipam.get("subnet"):
        legacy = {k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}
        raw_sets = [[legacy], *(raw_sets or [])]
    if not raw_sets:
        raise CniError(INVALID_CONFIG, "ipam: no IP ranges specified (set 'ranges' or 'subnet')")
    if not isinstance(raw_sets, list):
        raise CniError(INVALID_CONFIG, "ipam.ranges must be a list of range sets (lists of ranges)")
    sets: list[RangeSet] = []
    for i, raw_set in enumerate(raw_sets):
        if not isinstance(raw_set, list) or not raw_set:
            raise CniError(INVALID_CONFIG, f"ipam.ranges[{i}] must be a non-empty list of ranges")
        ranges = [Range.from_conf(r, f"ipam.ranges[{i}][{j}]") for j, r in enumerate(raw_set)]
        fams = {r.subnet.family for r in ranges}
        if len(fams) > 1:
            raise CniError(INVALID_CONFIG, f"ipam.ranges[{i}]: mixed address families in one range set")
        for a in range(len(ranges)):
            for b in range(a + 1, len(ranges)):
                if ranges[a].overlaps(ranges[b]):
                    raise CniError(INVALID_CONFIG, f"ipam.ranges[{i}]: ranges {ranges[a]} and {ranges[b]} overlap")
        for other in sets:
            for r in ranges:
                for o in other.ranges:
                    if r.overlaps(o):
                        raise CniError(INVALID_CONFIG, f"ipam.ranges[{i}]: range {r} overlaps range set {other.index}")
        sets.append(RangeSet(i, ranges))
    routes = ipam.get("routes") or []
    if not isinstance(routes, list):
        raise CniError(INVALID_CONFIG, "ipam.routes must be a list of {dst, gw}")
    for k, rt in enumerate(routes):
        if not isinstance(rt, dict) or not isinstance(rt.get("dst"), str):
            raise CniError(INVALID_CONFIG, f"ipam.routes[{k}] needs a 'dst' CIDR")
        try:
            IPNet.parse(rt["dst"])
            if rt.get("gw"):
                IP.parse(rt["gw"])
        except ValueError as exc:
            raise CniError(INVALID_CONFIG, f"ipam.routes[{k}]: {exc}") from None
    data_dir = ipam.get("dataDir") or DEFAULT_DATA_DIR
    if not isinstance(data_dir, str):
        raise CniError(INVALID_CONFIG, "ipam.dataDir must be a path")
    dns: dict[str, Any] = {}
    if isinstance(ipam.get("resolvConf"), str):
        dns = parse_resolv_conf(ipam["resolvConf"])
    return IpamConfig(name, sets, [dict(r) for r in routes], data_dir, dns)


def parse_resolv_conf(path: str) -> dict[str, Any]:
    """host-local's ``resolvConf``: nameserver, domain, search and options lines into a DNS block."""
    dns: dict[str, Any] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise CniError(INVALID_CONFIG, f"ipam.resolvConf {path!r}: {exc.strerror}") from None
    for line in lines:
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        key, vals = parts[0], parts[1:]
        if key == "nameserver":
            dns.setdefault("nameservers", []).extend(vals)
        elif key == "domain" and vals:
            dns["domain"] = vals[0]
        elif key == "search":
            dns["search"] = vals
        elif key == "options":
            dns.setdefault("options", []).extend(vals)
    return dns


class IPAllocator:
    """Allocate from one range set through a store (host-local's ``IPAllocator``)."""

    def __init__(self, range_set: RangeSet, store: Store) -> None:
        self.rs = range_set
        self.store = store

    def get(self, container_id: str, ifname: str) -> tuple[IP, Range]:
        for ip in self.store.get_by_id(container_id, ifname):
            if self.rs.contains(ip):
                raise CniError(
                    DUPLICATE_ALLOCATION,
                    f"{ip} has been allocated to {container_id}, duplicate allocation is not allowed",
                )
        last = self.store.last_reserved_ip(self.rs.index)
        for ip, r in self.rs.iterate(last if last is not None and self.rs.contains(last) else None):
            if self.store.reserve(container_id, ifname, ip, self.rs.index):
                return ip, r
        raise CniError(TRY_AGAIN, f"no IP addresses available in range set: {self.rs}")

    def find(self, container_id: str, ifname: str) -> IP | None:
        for ip in self.store.get_by_id(container_id, ifname):
            if self.rs.contains(ip):
                return ip
        return None

    def free_count(self) -> int:
        used = sum(1 for ip in self.store.reserved_ips() if self.rs.contains(ip))
        return self.rs.size() - used
