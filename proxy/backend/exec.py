"""The proxy's only door to ``subprocess``: run a command, optionally inside a network namespace.

Role: iptables-restore, iptables-save, nft and conntrack all run through ``CommandRunner`` so the
real backends can be pointed at a namespace (``netns=...`` prefixes ``ip netns exec NAME``; the
daemon itself normally runs inside its node's namespace and needs no prefix) and so tests can
script the answers.

Concurrency: stateless; safe from any thread.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass


class CommandError(OSError):
    """A command failed: argv, exit code and stderr (the backends translate it)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited {returncode}: {stderr.strip()}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class CommandRunner:
    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def run(
        self, argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 600
    ) -> Completed:
        full = self.argv(argv)
        res = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise CommandError(full, res.returncode, res.stderr)
        return Completed(res.returncode, res.stdout, res.stderr)
