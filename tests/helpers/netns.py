"""Throwaway network namespaces for privileged tests, with DESIGN.md §3's safety routes held.

``netns_factory`` (a fixture in ``tests/privileged/conftest.py``) hands out namespaces named
``kltest-<pid>-<n>-<label>`` (short: IFNAMSIZ does not matter for netns names, but ``ip netns
list`` stays readable) and removes every one of them at teardown, also when the test failed.
Processes left inside a namespace are killed by pid (``ip netns pids``) before it is deleted.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_counter = itertools.count()


def sh(*argv: str, check: bool = True, netns: str | None = None, timeout: float = 30) -> str:
    """Run a command (inside ``netns`` when given); return stdout; raise with stderr on failure."""
    cmd = list(argv)
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def create_netns(label: str) -> str:
    name = f"kltest-{os.getpid()}-{next(_counter)}-{label}"[:60]
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", netns=name)
    return name


def delete_netns(name: str) -> None:
    pids = sh("ip", "netns", "pids", name, check=False).split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    sh("ip", "netns", "del", name, check=False)


class NetnsFactory:
    def __init__(self) -> None:
        self.created: list[str] = []

    def __call__(self, label: str = "ns") -> str:
        name = create_netns(label)
        self.created.append(name)
        return name

    def cleanup(self) -> None:
        for name in reversed(self.created):
            delete_netns(name)
        self.created.clear()


@contextmanager
def netns_factory() -> Iterator[NetnsFactory]:
    from lab import safety

    with safety.hold(f"test{next(_counter)}"):
        factory = NetnsFactory()
        try:
            yield factory
        finally:
            factory.cleanup()
