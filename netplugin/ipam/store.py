"""The IPAM store seam: where reservations live (host-local's ``backend.Store``).

``DiskStore`` (``disk.py``) is the real one (host-local's files); ``MemoryStore`` here is the
stateful fake for unit tests, with the same semantics: ``reserve`` is atomic and fails (returns
False) when the address is taken, releases are idempotent, ``lock`` is a context manager.
"""

from __future__ import annotations

from netplugin.ipnet import IP

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Protocol

    class Store(Protocol):
        def __enter__(self) -> Store: ...  # takes the store-wide exclusive lock

        def __exit__(
            self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
        ) -> None: ...

        def reserve(self, container_id: str, ifname: str, ip: IP, range_set: int) -> bool: ...

        def last_reserved_ip(self, range_set: int) -> IP | None: ...

        def get_by_id(self, container_id: str, ifname: str) -> list[IP]: ...

        def release_by_id(self, container_id: str, ifname: str) -> list[IP]: ...

        def reservations(self) -> list[tuple[IP, str, str]]: ...  # (ip, container_id, ifname or "")

        def reserved_ips(self) -> list[IP]: ...

        def release(self, ip: IP) -> None: ...


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
