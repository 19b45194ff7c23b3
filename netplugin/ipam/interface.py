"""The IPAM store interface: where reservations live (host-local's ``backend.Store``).

Implementations: ``DiskStore`` (``disk.py``, host-local's files, the real one) and ``MemoryStore``
(``store.py``, the stateful fake for unit tests). Semantics both keep: ``reserve`` is atomic and
fails (returns False) when the address is taken, releases are idempotent, and the store used as
a context manager holds the store-wide exclusive lock (not re-entrant).

This module imports ``typing``, so the plugin's exec path imports it only for annotations
(``netplugin/fast/README.md``: no ``typing`` at run time there).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from netplugin.fast.ipnet import IP


class Store(Protocol):
    def __enter__(self) -> Store: ...  # takes the store-wide exclusive lock

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None: ...

    def reserve(self, container_id: str, ifname: str, ip: IP, range_set: int) -> bool: ...

    def last_reserved_ip(self, range_set: int) -> IP | None: ...

    def get_by_id(self, container_id: str, ifname: str) -> list[IP]: ...

    def release_by_id(self, container_id: str, ifname: str) -> list[IP]: ...

    def reservations(self) -> list[tuple[IP, str, str]]: ...  # (ip, container_id, ifname or "")

    def reserved_ips(self) -> list[IP]: ...

    def release(self, ip: IP) -> None: ...
