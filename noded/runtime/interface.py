"""The container runtime seam, shaped like the CRI ``RuntimeService`` but sized for runc.

Role: podsync talks only to ``ContainerRuntime``; ``RuncRuntime`` (runc via subprocess) and
``FakeRuntime`` (in memory, stateful) implement it, and one contract suite runs against both.

Invariants:
- Ids are deterministic (``noded.names``): sandbox ``<ns>_<pod>_<uid8>_<attempt>``, container
  ``<sandbox>_<name>_<restartCount>``; creating an id that exists raises ``AlreadyExists``.
- Every sandbox and container carries its pod identity in ``labels`` (OCI annotations for runc),
  so ``list_*`` rebuilds the node's view after a noded restart.
- Verbs are idempotent where CRI's are: stop/remove of something missing is a success.
Concurrency: implementations are thread-safe; podsync never calls two verbs for one pod at once.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class RuntimeOpError(Exception):
    """A runtime verb failed; ``reason`` is a Kubernetes-style reason for the status."""

    reason = "RuntimeError"


class NotFound(RuntimeOpError):
    reason = "NotFound"


class AlreadyExists(RuntimeOpError):
    reason = "AlreadyExists"


class CreateContainerError(RuntimeOpError):
    reason = "CreateContainerError"


class AttachUnavailable(RuntimeOpError):
    """The container offers no attach endpoint (exited, or started before shims served one)."""

    reason = "AttachUnavailable"


class StartError(RuntimeOpError):
    """The process could not be started (e.g. the command does not exist)."""

    reason = "StartError"


class SandboxState(enum.StrEnum):
    READY = "SANDBOX_READY"
    NOTREADY = "SANDBOX_NOTREADY"


class ContainerState(enum.StrEnum):
    CREATED = "CONTAINER_CREATED"
    RUNNING = "CONTAINER_RUNNING"
    EXITED = "CONTAINER_EXITED"
    UNKNOWN = "CONTAINER_UNKNOWN"


@dataclass(frozen=True)
class Mount:
    host_path: str
    container_path: str
    read_only: bool = False


@dataclass
class SandboxConfig:
    """What ``run_pod_sandbox`` needs (CRI ``PodSandboxConfig``)."""

    name: str
    namespace: str
    uid: str
    attempt: int
    hostname: str
    netns_path: str
    log_dir: str
    labels: dict[str, str] = field(default_factory=dict)
    # The pause image: its layer dirs (top first) and config; empty → the runtime's built-in pause.
    pause_layers: list[str] = field(default_factory=list)
    pause_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContainerConfig:
    """What ``create_container`` needs: a pod's container resolved against its image.

    ``argv``/``env``/``working_dir`` are final (image Entrypoint/Cmd/Env/WorkingDir applied by
    ``oci.resolve_process``); mounts are host paths noded already prepared (volumes, hosts,
    resolv.conf). The PodSpec container's ``stdin``, ``stdinOnce`` and ``tty`` (in ``container``)
    decide whether the container's stdin can be attached to later and whether it gets a terminal."""

    name: str
    attempt: int  # restartCount
    image: str
    image_id: str
    argv: list[str]
    env: list[str]
    working_dir: str
    mounts: list[Mount]
    log_path: str
    labels: dict[str, str] = field(default_factory=dict)
    container: dict[str, Any] = field(default_factory=dict)  # the PodSpec container (resources...)
    pod: dict[str, Any] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)  # unpacked image layers, top first
    image_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class SandboxStatus:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    state: SandboxState
    created_at: float
    netns_path: str
    pid: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    attempt: int
    state: ContainerState
    created_at: float
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image: str = ""
    image_id: str = ""
    log_path: str = ""
    pid: int = 0
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class ExecSession(Protocol):
    """A running ``exec``: write stdin, read (channel, bytes) chunks until EOF, then exit code.

    With a terminal (``tty=True``) every chunk is channel 1 (a terminal has one output),
    ``resize`` sets the terminal's size, ``close_stdin`` types the terminal's end-of-file and
    ``kill`` hangs the terminal up (SIGHUP), as closing a terminal window does."""

    def write_stdin(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def resize(self, width: int, height: int) -> None: ...
    def output(self) -> Iterator[tuple[int, bytes]]: ...  # (1=stdout | 2=stderr, data)
    def wait(self) -> int: ...
    def kill(self) -> None: ...


class AttachSession(Protocol):
    """An attach to a running container's own stdio (``kubectl attach``, ``kubectl run -it``).

    ``tty``: the container has a terminal; ``stdin``: this session may write the container's
    stdin (the container was created with ``stdin: true`` and, if ``stdinOnce``, nobody has
    detached from it yet). ``output`` yields (1=stdout | 2=stderr, bytes) from the moment of
    attaching until the container exits or ``detach`` is called (from any thread). ``close``
    releases everything; with ``stdinOnce`` the first close of a session that had stdin closes
    the container's stdin."""

    tty: bool
    stdin: bool

    def write_stdin(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def resize(self, width: int, height: int) -> None: ...
    def output(self) -> Iterator[tuple[int, bytes]]: ...
    def detach(self) -> None: ...
    def close(self) -> None: ...


class ContainerRuntime(Protocol):
    def run_pod_sandbox(self, config: SandboxConfig) -> str: ...
    def stop_pod_sandbox(self, sandbox_id: str) -> None: ...
    def remove_pod_sandbox(self, sandbox_id: str) -> None: ...
    def list_pod_sandboxes(self, pod_uid: str | None = None) -> list[SandboxStatus]: ...
    def create_container(self, sandbox_id: str, config: ContainerConfig) -> str: ...
    def start_container(self, container_id: str) -> None: ...
    def stop_container(self, container_id: str, timeout: float) -> None: ...
    def remove_container(self, container_id: str) -> None: ...
    def list_containers(self, sandbox_id: str | None = None) -> list[ContainerStatus]: ...
    def container_status(self, container_id: str) -> ContainerStatus: ...
    def exec_sync(self, container_id: str, argv: Sequence[str], timeout: float) -> ExecResult: ...
    def exec(self, container_id: str, argv: Sequence[str], stdin: bool, tty: bool = False) -> ExecSession: ...
    def attach(self, container_id: str, stdin: bool, tty: bool) -> AttachSession: ...
