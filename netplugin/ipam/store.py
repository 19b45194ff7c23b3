"""``MemoryStore``: the stateful fake of the IPAM ``Store`` (``interface.py``) for unit tests.

Same semantics as ``DiskStore`` (``disk.py``, host-local's files): ``reserve`` is atomic and fails
(returns False) when the address is taken, releases are idempotent, the lock is not re-entrant.
"""

from __future__ import annotations

from netplugin.fast.ipnet import IP


class MemoryStore:
    """In-memory Store with host-local's semantics (fake for unit tests)."""

    def __init__(self) -> None:
        self.held: dict[IP, tuple[str, str]] = {}
        self.last: dict[int, IP] = {}
        self.locked = False

    def __enter__(self) -> MemoryStore:
        assert not self.locked, "store lock is not re-entrant"
        self.locked = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.locked = False

    def reserve(self, container_id: str, ifname: str, ip: IP, range_set: int) -> bool:
        if ip in self.held:
            return False
        self.held[ip] = (container_id, ifname)
        self.last[range_set] = ip
        return True

    def last_reserved_ip(self, range_set: int) -> IP | None:
        return self.last.get(range_set)

    def get_by_id(self, container_id: str, ifname: str) -> list[IP]:
        return [ip for ip, (c, i) in self.held.items() if c == container_id and i in (ifname, "")]

    def release_by_id(self, container_id: str, ifname: str) -> list[IP]:
        gone = self.get_by_id(container_id, ifname)
        for ip in gone:
            del self.held[ip]
        return gone

    def reservations(self) -> list[tuple[IP, str, str]]:
        return [(ip, c, i) for ip, (c, i) in self.held.items()]

    def reserved_ips(self) -> list[IP]:
        return list(self.held)

    def release(self, ip: IP) -> None:
        self.held.pop(ip, None)
