"""The proxy's only door to ``subprocess``: run a command, optionally inside a network namespace.

Role: iptables-restore, iptables-save, nft and conntrack all run through ``CommandRunner`` so the
real backends can be pointed at a namespace (``netns=...`` prefixes ``ip netns exec NAME``; the
daemon itself normally runs inside its node's namespace and needs no prefix) and so tests can
script the answers.

``start`` runs a command whose input is *streamed*: the caller writes text while it is still
producing it (a full sync renders its rules while ``iptables-restore`` already parses the first
ones, on the other core) and ``close`` waits for the result. ``kill`` abandons it: the tool never
sees the rest of its input (for iptables-restore: no ``COMMIT``, so nothing is applied).
Test runners that script answers can return a ``BufferedFeed``, which collects the input and
hands it to their ``run`` at ``close``.

A program that cannot be executed (not on ``$PATH``) raises ``ToolMissing`` even with
``check=False``: its absence is not an exit status a caller may mistake for "nothing found", and
its message says which package to install (``controlplane.client.failures``). A command that
outlives its timeout is killed and reported as a ``CommandError``, never a bare ``TimeoutExpired``.

Concurrency: ``CommandRunner`` is stateless and safe from any thread; a ``Feed`` belongs to the
thread that started it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from controlplane.client.failures import missing_program


class CommandError(OSError):
    """A command failed: argv, exit code and stderr (the backends translate it)."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited {returncode}: {stderr.strip()}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class ToolMissing(CommandError):
    """The program is not on ``$PATH``: nothing ran. The message names the package to install."""

    def __init__(self, argv: Sequence[str]) -> None:
        OSError.__init__(self, missing_program(argv[0]))
        self.argv = list(argv)
        self.returncode = 127
        self.stderr = missing_program(argv[0])
        self.program = argv[0]


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
        try:
            res = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        except (FileNotFoundError, PermissionError) as exc:
            raise ToolMissing(full) from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandError(full, -1, f"timed out after {timeout:.0f}s") from exc
        if check and res.returncode != 0:
            raise CommandError(full, res.returncode, res.stderr)
        return Completed(res.returncode, res.stdout, res.stderr)

    def start(self, argv: Sequence[str], *, check: bool = True) -> Feed:
        """Start ``argv`` with its input streamed (see ``Feed``)."""
        return PipeFeed(self.argv(argv), check=check)


class Feed(Protocol):
    """A running command fed its input piece by piece (see the module docstring)."""

    def write(self, text: str) -> None:
        """Send more input; raises ``BrokenPipeError`` once the command has stopped reading."""
        ...

    def close(self) -> Completed:
        """End the input and wait; raises ``CommandError`` on failure when started with check."""
        ...

    def kill(self) -> None:
        """Stop the command without ending its input normally (nothing half-written is applied)."""
        ...


class PipeFeed:
    """A real process reading a pipe. Its output goes to anonymous in-memory files (memfd),
    never to pipes we would have to drain while writing (a chatty failure could otherwise block
    both sides); memfds, unlike ``tempfile``, need no temporary directory to be found first."""

    def __init__(self, argv: list[str], *, check: bool = True) -> None:
        self.argv = argv
        self.check = check
        # Closed by close()/kill(): they outlive this call by design.
        self._out: IO[bytes] = os.fdopen(os.memfd_create("feed-stdout"), "w+b")
        self._err: IO[bytes] = os.fdopen(os.memfd_create("feed-stderr"), "w+b")
        try:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=self._out, stderr=self._err)
        except (FileNotFoundError, PermissionError) as exc:
            self._out.close()
            self._err.close()
            raise ToolMissing(argv) from exc
        assert self._proc.stdin is not None
        self._stdin: IO[bytes] = self._proc.stdin
        try:
            # A roomy pipe (1 MiB instead of 64 KiB): the writer can run ahead of the reader
            # instead of waking up for every few kilobytes the reader takes.
            fcntl.fcntl(self._stdin.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass  # above /proc/sys/fs/pipe-max-size for this user: the default size works too

    def write(self, text: str) -> None:
        self._stdin.write(text.encode())

    def close(self) -> Completed:
        try:
            self._stdin.close()
        except BrokenPipeError:
            pass  # it stopped reading early (a failed line): its exit status says why
        # No timeout: Popen.wait(timeout) polls with sleeps of up to 50 ms, which alone cost a
        # small restore's whole duration. The tools end once their input does (``-w`` waits
        # for the xtables lock, as it would in ``run``).
        return self._result(self._proc.wait())

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for f in (self._stdin, self._out, self._err):
            try:
                f.close()
            except BrokenPipeError:
                pass

    def _result(self, code: int) -> Completed:
        self._out.seek(0)
        self._err.seek(0)
        res = Completed(code, self._out.read().decode(errors="replace"), self._err.read().decode(errors="replace"))
        self._out.close()
        self._err.close()
        if self.check and code != 0:
            raise CommandError(self.argv, code, res.stderr)
        return res


class BufferedFeed:
    """Collects the input and runs ``runner.run(argv, input=...)`` at ``close`` (for scripted
    runners in tests, which answer whole commands)."""

    def __init__(self, runner: CommandRunner, argv: Sequence[str], *, check: bool = True) -> None:
        self.runner = runner
        self.argv = list(argv)
        self.check = check
        self.parts: list[str] = []
        self.killed = False

    def write(self, text: str) -> None:
        self.parts.append(text)

    def close(self) -> Completed:
        return self.runner.run(self.argv, input="".join(self.parts), check=self.check)

    def kill(self) -> None:
        self.killed = True
