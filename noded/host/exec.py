"""The one place noded runs other programs (runc, skopeo, mount, ip, CNI plugins).

Role: ``CommandRunner`` is the seam between noded's logic and the host: every driver builds an
argv list and hands it here, so tests can swap in ``ScriptedRunner`` (kube's fakeexec analogue)
and the real runner stays tiny. A failing command becomes ``CommandError(argv, rc, stderr)`` once,
here, so callers never parse ``CalledProcessError``.

Invariants: no shell is ever involved (argv lists only); stdin is /dev/null unless ``input`` is
given, so no child inherits noded's stdin; a timeout kills the child and raises ``CommandError``.
Concurrency: thread-safe (no shared state).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    duration: float = 0.0

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class CommandError(Exception):
    """A command exited non-zero (or timed out); carries argv, exit code and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, stdout: str = "") -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.stdout = stdout
        super().__init__(
            f"{' '.join(self.argv[:4])}{' ...' if len(self.argv) > 4 else ''} exited {returncode}: {self.stderr}"
        )


class CommandRunner(Protocol):
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        stdout_fd: int | None = None,
        stderr_fd: int | None = None,
    ) -> Completed: ...


class SubprocessRunner:
    """Runs commands with ``subprocess.run``.

    ``stdout_fd``/``stderr_fd`` hand the child a file instead of a pipe: used for ``runc create``,
    whose container inherits runc's stdio. A container holding our pipe would make us wait for
    its exit (machine-facts.md), so those calls must never capture output.
    """

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        stdout_fd: int | None = None,
        stderr_fd: int | None = None,
    ) -> Completed:
        start = time.monotonic()
        try:
            res = subprocess.run(
                list(argv),
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                stdout=stdout_fd if stdout_fd is not None else subprocess.PIPE,
                stderr=stderr_fd if stderr_fd is not None else subprocess.PIPE,
                timeout=timeout,
                env=dict(env) if env is not None else None,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandError(argv, -1, f"timed out after {timeout}s") from exc
        except FileNotFoundError as exc:
            raise CommandError(argv, 127, f"{argv[0]}: not found") from exc
        done = Completed(tuple(argv), res.returncode, res.stdout or b"", res.stderr or b"", time.monotonic() - start)
        if check and res.returncode != 0:
            raise CommandError(argv, res.returncode, done.stderr.decode(errors="replace"), done.text)
        return done


Handler = Callable[[Sequence[str], bytes | None], Completed | tuple[int, bytes, bytes]]


@dataclass
class ScriptedRunner:
    """A fake runner: each argv is matched by prefix against ``handlers``; calls are recorded."""

    handlers: list[tuple[tuple[str, ...], Handler]] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def on(self, prefix: Sequence[str], handler: Handler) -> None:
        self.handlers.append((tuple(prefix), handler))

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = None,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        stdout_fd: int | None = None,
        stderr_fd: int | None = None,
    ) -> Completed:
        argv_t = tuple(argv)
        self.calls.append(argv_t)
        for prefix, handler in reversed(self.handlers):
            if argv_t[: len(prefix)] == prefix:
                out = handler(argv_t, input)
                res = out if isinstance(out, Completed) else Completed(argv_t, *out)
                if check and res.returncode != 0:
                    raise CommandError(argv_t, res.returncode, res.stderr.decode(errors="replace"))
                return res
        raise CommandError(argv_t, 127, f"ScriptedRunner: no handler for {argv_t}")
