"""``FakeRuntime``: an in-memory, stateful ``ContainerRuntime`` for unit tests.

It keeps sandboxes and containers in dicts, enforces the same rules as the runc runtime (ids are
deterministic, duplicates raise ``AlreadyExists``, containers need a ready sandbox, stop/remove of
something missing succeed) and lets tests drive processes: ``exit(cid, code)`` makes a running
container exit, ``fail_start[name] = message`` makes starting a container of that name fail like a
missing binary, ``oom[name] = True`` makes it exit OOMKilled when started. ``calls`` records verbs.
Time comes from an injectable ``clock`` (``time.time`` by default).

Streams: ``exec`` answers from ``exec_results`` (by argv); a session with stdin holds its output
back until stdin is closed, so a client's stdin and resize messages are all seen first (they are
recorded in ``sessions``). ``attach`` behaves like a container running ``cat`` (with a terminal
if its spec says ``tty: true``): what is written to its stdin comes back as stdout, until the
session detaches or the container exits.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from noded import names
from noded.runtime.interface import (
    AlreadyExists,
    AttachUnavailable,
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    CreateContainerError,
    ExecResult,
    NotFound,
    SandboxConfig,
    SandboxState,
    SandboxStatus,
    StartError,
)


class FakeExecSession:
    def __init__(self, result: ExecResult, stdin: bool = False, tty: bool = False) -> None:
        self.result = result
        self.tty = tty
        self.stdin = b""
        self.resizes: list[tuple[int, int]] = []
        self.stdin_closed = threading.Event()
        if not stdin:
            self.stdin_closed.set()

    def write_stdin(self, data: bytes) -> None:
        self.stdin += data

    def close_stdin(self) -> None:
        self.stdin_closed.set()

    def resize(self, width: int, height: int) -> None:
        self.resizes.append((width, height))

    def output(self) -> Iterator[tuple[int, bytes]]:
        self.stdin_closed.wait(10)
        if self.result.stdout:
            yield 1, self.result.stdout
        if self.result.stderr:
            yield 1 if self.tty else 2, self.result.stderr

    def wait(self) -> int:
        return self.result.exit_code

    def kill(self) -> None:
        pass


class FakeAttachSession:
    """An attach to a fake container that behaves like ``cat``."""

    def __init__(self, tty: bool, stdin: bool) -> None:
        self.tty, self.stdin = tty, stdin
        self.resizes: list[tuple[int, int]] = []
        self.closed = False
        self._q: queue.Queue[tuple[int, bytes] | None] = queue.Queue()

    def write_stdin(self, data: bytes) -> None:
        if self.stdin:
            self._q.put((1, data))

    def close_stdin(self) -> None:
        pass

    def resize(self, width: int, height: int) -> None:
        if self.tty:
            self.resizes.append((width, height))

    def output(self) -> Iterator[tuple[int, bytes]]:
        while (item := self._q.get()) is not None:
            yield item

    def detach(self) -> None:
        self._q.put(None)

    def close(self) -> None:
        self.closed = True


class FakeRuntime:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.sandboxes: dict[str, SandboxStatus] = {}
        self.containers: dict[str, ContainerStatus] = {}
        self.configs: dict[str, ContainerConfig] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_start: dict[str, str] = {}
        self.fail_sandbox: str | None = None
        self.oom: dict[str, bool] = {}
        self.exec_results: dict[tuple[str, ...], ExecResult] = {}
        self.sessions: list[FakeExecSession | FakeAttachSession] = []
        self._attached: dict[str, list[FakeAttachSession]] = {}
        self._next_pid = 1000
        self._lock = threading.RLock()

    def _pid(self) -> int:
        self._next_pid += 1
        return self._next_pid

    def run_pod_sandbox(self, config: SandboxConfig) -> str:
        with self._lock:
            sid = names.sandbox_id(config.namespace, config.name, config.uid, config.attempt)
            self.calls.append(("run_pod_sandbox", sid))
            if sid in self.sandboxes:
                raise AlreadyExists(f"sandbox {sid} exists")
            if self.fail_sandbox:
                raise CreateContainerError(self.fail_sandbox)
            self.sandboxes[sid] = SandboxStatus(
                id=sid,
                name=config.name,
                namespace=config.namespace,
                uid=config.uid,
                attempt=config.attempt,
                state=SandboxState.READY,
                created_at=self.clock(),
                netns_path=config.netns_path,
                pid=self._pid(),
                labels=dict(config.labels),
            )
            return sid

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            self.calls.append(("stop_pod_sandbox", sandbox_id))
            for c in self.list_containers(sandbox_id):
                self.stop_container(c.id, 0)
            if sandbox_id in self.sandboxes:
                self.sandboxes[sandbox_id].state = SandboxState.NOTREADY
                self.sandboxes[sandbox_id].pid = 0

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        with self._lock:
            self.calls.append(("remove_pod_sandbox", sandbox_id))
            for c in self.list_containers(sandbox_id):
                self.remove_container(c.id)
            self.sandboxes.pop(sandbox_id, None)

    def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]:
        with self._lock:
            return [replace(s) for s in self.sandboxes.values() if pod_uid in (None, s.uid)]

    def create_container(self, sandbox_id: str, config: ContainerConfig) -> str:
        with self._lock:
            sb = self.sandboxes.get(sandbox_id)
            if sb is None or sb.state != SandboxState.READY:
                raise CreateContainerError(f"sandbox {sandbox_id} is not running")
            cid = names.container_id(sandbox_id, config.name, config.attempt)
            self.calls.append(("create_container", cid))
            if cid in self.containers:
                raise AlreadyExists(f"container {cid} exists")
            self.containers[cid] = ContainerStatus(
                id=cid,
                sandbox_id=sandbox_id,
                name=config.name,
                attempt=config.attempt,
                state=ContainerState.CREATED,
                created_at=self.clock(),
                image=config.image,
                image_id=config.image_id,
                log_path=config.log_path,
                labels=dict(config.labels),
            )
            self.configs[cid] = config
            return cid

    def start_container(self, container_id: str) -> None:
        with self._lock:
            self.calls.append(("start_container", container_id))
            c = self._get(container_id)
            if c.state != ContainerState.CREATED:
                raise StartError(f"container {container_id} is not in created state")
            now = self.clock()
            if c.name in self.fail_start:
                c.state, c.exit_code, c.reason = ContainerState.EXITED, 128, "StartError"
                c.message, c.finished_at = self.fail_start[c.name], now
                raise StartError(self.fail_start[c.name])
            c.state, c.started_at, c.pid = ContainerState.RUNNING, now, self._pid()
            if self.oom.get(c.name):
                self._exit(c, 137, "OOMKilled")

    def _exit(self, c: ContainerStatus, code: int, reason: str | None = None) -> None:
        c.state, c.exit_code, c.finished_at, c.pid = ContainerState.EXITED, code, self.clock(), 0
        c.reason = reason or ("Completed" if code == 0 else "Error")

    def exit(self, container_id: str, code: int) -> None:
        """Test hook: the container's process exits with ``code``."""
        with self._lock:
            c = self._get(container_id)
            if c.state == ContainerState.RUNNING:
                self._exit(c, code)
            for a in self._attached.pop(container_id, []):
                a.detach()

    def stop_container(self, container_id: str, timeout: float) -> None:
        with self._lock:
            self.calls.append(("stop_container", container_id))
            c = self.containers.get(container_id)
            if c is not None and c.state in (ContainerState.RUNNING, ContainerState.CREATED):
                self._exit(c, 137 if c.state == ContainerState.RUNNING else 0)

    def remove_container(self, container_id: str) -> None:
        with self._lock:
            self.calls.append(("remove_container", container_id))
            self.containers.pop(container_id, None)
            self.configs.pop(container_id, None)

    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]:
        with self._lock:
            return [replace(c) for c in self.containers.values() if sandbox_id in (None, c.sandbox_id)]

    def _get(self, cid: str) -> ContainerStatus:
        c = self.containers.get(cid)
        if c is None:
            raise NotFound(f"container {cid} not found")
        return c

    def container_status(self, container_id: str) -> ContainerStatus:
        with self._lock:
            return replace(self._get(container_id))

    def exec_sync(self, container_id: str, argv: Sequence[str], timeout: float) -> ExecResult:
        with self._lock:
            c = self._get(container_id)
            if c.state != ContainerState.RUNNING:
                return ExecResult(126, b"", b"container not running")
            return self.exec_results.get(tuple(argv), ExecResult(0, b"", b""))

    def exec(self, container_id: str, argv: Sequence[str], stdin: bool, tty: bool = False) -> FakeExecSession:
        session = FakeExecSession(self.exec_sync(container_id, argv, 10), stdin, tty)
        with self._lock:
            self.sessions.append(session)
        return session

    def attach(self, container_id: str, stdin: bool, tty: bool) -> FakeAttachSession:
        with self._lock:
            c = self._get(container_id)
            if c.state != ContainerState.RUNNING:
                raise AttachUnavailable(f"container {container_id} is not running")
            spec = self.configs[container_id].container
            session = FakeAttachSession(bool(spec.get("tty")), stdin and bool(spec.get("stdin")))
            self.sessions.append(session)
            self._attached.setdefault(container_id, []).append(session)
            return session
