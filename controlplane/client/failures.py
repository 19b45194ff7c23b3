"""Failure reporting for control loops: one clear line per distinct error, a count, a back-off.

Role: a loop whose core work fails (the proxy's sync when ``nft`` is missing, noded's runtime
check, the network agent's route sync) must neither print a traceback per attempt nor go quiet.
``FailureLog`` is the one home of that discipline for every component:

- ``failure(err)`` logs ONE line the first time an error text is seen, and afterwards at most
  once per ``interval`` (a minute) with how many times it happened meanwhile
  ("... (repeated 41 times in the last 60s)"); a *different* error is logged at once;
- it returns the delay before the next attempt: exponential back-off from ``initial`` doubling
  up to ``cap`` (client-go's ``wait.Backoff``), reset by ``success()``;
- ``success()`` logs one "recovered" line when there were failures, and clears ``last_error``;
- ``last_error`` / ``last_error_time`` / ``consecutive`` feed the component's health endpoint.

``describe(exc)`` turns an exception into that one line: a program missing from ``$PATH`` reads as
Go's ``exec: "nft": executable file not found in $PATH`` (what kubelet and kube-proxy print) plus how
to fix it ("install the nftables package"); an ``OSError`` names its syscall target and errno.

Invariants: never raises; the dict of recently logged errors is bounded (``MAX_KEYS``).
Concurrency: thread-safe (one lock); the clock is injectable for tests (``clock``: monotonic
seconds, ``wall``: epoch seconds for display).
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# The Debian package that provides each program the node agents execute, for the fix in the error
# line. lab/programs.txt (the project's one manifest, which lab/deps.sh installs from) is the source
# of truth; tests/unit/client/test_client_failures.py checks that these hints agree with it.
PROGRAM_PACKAGES = {
    "nft": "nftables",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "iptables-restore": "iptables",
    "iptables-nft": "iptables",
    "iptables-nft-save": "iptables",
    "iptables-nft-restore": "iptables",
    "iptables-legacy": "iptables",
    "iptables-legacy-save": "iptables",
    "iptables-legacy-restore": "iptables",
    "conntrack": "conntrack",
    "runc": "runc",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
    "cc": "gcc",
    "gcc": "gcc",
}

MAX_KEYS = 64


class ProgramNotFound(FileNotFoundError):
    """A program could not be executed because it is not on ``$PATH`` (or not executable)."""

    def __init__(self, program: str, path: str = "") -> None:
        super().__init__(errno.ENOENT, "executable file not found in $PATH", program)
        self.program = program
        self.path = path

    def __str__(self) -> str:
        return missing_program(self.program)


def missing_program(program: str) -> str:
    """Go's exec error for a missing program, and the fix."""
    name = program.rsplit("/", 1)[-1]
    pkg = PROGRAM_PACKAGES.get(name)
    fix = f"install the {pkg} package" if pkg else f"install the package that provides {name}"
    if "/" in program:
        return f"fork/exec {program}: no such file or directory ({fix})"
    return f'exec: "{program}": executable file not found in $PATH ({fix})'


def describe(exc: BaseException | str) -> str:
    """One line saying what failed: the program or syscall target, the error, the fix if known."""
    if isinstance(exc, str):
        return exc
    if isinstance(exc, ProgramNotFound):
        return str(exc)
    if isinstance(exc, FileNotFoundError) and exc.filename and "/" not in str(exc.filename):
        # subprocess raises this with the bare argv[0] when the program is not on $PATH.
        return missing_program(str(exc.filename))
    if isinstance(exc, PermissionError) and exc.filename and "/" not in str(exc.filename):
        return f'exec: "{exc.filename}": permission denied (is it executable? are we root?)'
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        target = f" {exc.filename}" if exc.filename else ""
        code = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{type(exc).__name__}{target}: {exc.strerror} ({code})"
    text = str(exc).strip() or type(exc).__name__
    return text


@dataclass
class _Seen:
    last_logged: float
    suppressed: int = 0


class FailureLog:
    """See the module docstring."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = 60.0,
        initial: float = 1.0,
        cap: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self.initial = initial
        self.cap = max(cap, initial)
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._seen: dict[str, _Seen] = {}
        self.consecutive = 0
        self.total = 0
        self.last_error: str | None = None
        self.last_error_time: float | None = None  # wall clock
        self.last_success_time: float | None = None  # wall clock

    def delay(self) -> float:
        """The back-off before the next attempt after ``consecutive`` failures."""
        with self._lock:
            return self._delay()

    def _delay(self) -> float:
        if self.consecutive <= 0:
            return 0.0
        return float(min(self.cap, self.initial * 2.0 ** min(self.consecutive - 1, 62)))

    def failure(self, err: BaseException | str, *, level: int = logging.ERROR, traceback: bool = False) -> float:
        """Record a failed attempt; log it if due; return the back-off before the next one.

        ``traceback``: attach the exception's traceback to the first line of this error only (for
        errors that are bugs, not conditions of the host)."""
        text = describe(err)
        now = self.clock()
        line: str | None = None
        first = False
        with self._lock:
            self.consecutive += 1
            self.total += 1
            self.last_error = text
            self.last_error_time = self.wall()
            seen = self._seen.get(text)
            if seen is None:
                if len(self._seen) >= MAX_KEYS:  # forget the oldest: it is logged again if it recurs
                    del self._seen[min(self._seen, key=lambda k: self._seen[k].last_logged)]
                self._seen[text] = _Seen(now)
                line = f"{self.what} failed: {text}"
                first = True
            elif now - seen.last_logged >= self.interval:
                count = seen.suppressed + 1
                line = f"{self.what} failed: {text} (repeated {count} times in the last {now - seen.last_logged:.0f}s)"
                seen.last_logged, seen.suppressed = now, 0
            else:
                seen.suppressed += 1
            delay = self._delay()
        if line is not None:
            exc_info = err if traceback and first and isinstance(err, BaseException) else None
            self.logger.log(level, "%s; retrying with back-off (next in %.1fs)", line, delay, exc_info=exc_info)
        return delay

    def success(self) -> None:
        """Record a successful attempt: reset the back-off, say once that it recovered."""
        with self._lock:
            failed, self.consecutive = self.consecutive, 0
            self.last_error = None
            self._seen.clear()
            self.last_success_time = self.wall()
        if failed:
            self.logger.info("%s recovered after %d failed attempt%s", self.what, failed, "" if failed == 1 else "s")
