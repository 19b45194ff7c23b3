"""Named network namespaces for pod sandboxes (``ip netns add/del``, through ``CommandRunner``).

The names come from ``noded.names.netns_name`` so ``ip netns list`` shows which pod is which.
``ip netns add`` makes a fresh namespace whatever namespace noded itself runs in, and the bind
mount under /var/run/netns lives in the host's mount namespace as long as noded shares it (run
noded with ``nsenter --net=...``, not ``ip netns exec``, which gives it a private mount namespace).
Delete is idempotent (a missing namespace is success).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from noded.host.exec import CommandRunner, SubprocessRunner

NETNS_DIR = Path("/var/run/netns")


class Netns(Protocol):
    def path(self, name: str) -> str: ...
    def exists(self, name: str) -> bool: ...
    def create(self, name: str) -> str: ...
    def delete(self, name: str) -> None: ...
    def list(self, prefix: str = "") -> list[str]: ...


class NetnsManager:
    def __init__(self, runner: CommandRunner | None = None) -> None:
        self.runner = runner or SubprocessRunner()

    def path(self, name: str) -> str:
        return str(NETNS_DIR / name)

    def exists(self, name: str) -> bool:
        return (NETNS_DIR / name).exists()

    def create(self, name: str) -> str:
        self.runner.run(["ip", "netns", "add", name])
        self.runner.run(["ip", "-n", name, "link", "set", "lo", "up"])
        return self.path(name)

    def delete(self, name: str) -> None:
        if self.exists(name) or os.path.islink(NETNS_DIR / name):
            self.runner.run(["ip", "netns", "del", name], check=False)

    def list(self, prefix: str = "") -> list[str]:
        if not NETNS_DIR.is_dir():
            return []
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


class FakeNetns:
    """In-memory stand-in for ``NetnsManager`` (unit tests)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def path(self, name: str) -> str:
        return f"/var/run/netns/{name}"

    def exists(self, name: str) -> bool:
        return name in self.names

    def create(self, name: str) -> str:
        if name in self.names:
            raise RuntimeError(f"netns {name} exists")
        self.names.add(name)
        return self.path(name)

    def delete(self, name: str) -> None:
        self.names.discard(name)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.names if n.startswith(prefix))
