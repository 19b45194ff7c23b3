"""RuncRuntime terminals and stdin against real runc: ``exec`` with a tty, containers created with
``tty``/``stdin``/``stdinOnce`` and attached to through their shim.

The runtime root is deliberately long (longer than a unix socket path may be) to prove the console
and attach sockets do not depend on its length. Everything is removed at teardown, also on failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from noded.images.store import Image, ImageStore
from noded.runtime.interface import AttachSession, ContainerConfig, ContainerState, ExecSession, SandboxConfig
from noded.runtime.runc import RuncRuntime
from tests.helpers.netns import NetnsFactory
from tests.helpers.registry import Registry
from tests.helpers.wait import wait_for


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuncRuntime]:
    rt = RuncRuntime(tmp_path / ("r" * 100))  # bundle paths far beyond sun_path's 108 bytes
    try:
        yield rt
    finally:
        rt.remove_everything()


@pytest.fixture
def busybox(tmp_path: Path, registry: Registry) -> tuple[ImageStore, Image]:
    store = ImageStore(tmp_path / "images", insecure_registries=[registry.address])
    return store, store.ensure(f"{registry.address}/kubelab/busybox:latest")


@pytest.fixture
def sandbox(runtime: RuncRuntime, netns: NetnsFactory, tmp_path: Path) -> str:
    ns = netns("pod")
    return runtime.run_pod_sandbox(
        SandboxConfig(
            name="tty",
            namespace="default",
            uid=str(uuid.uuid4()),
            attempt=0,
            hostname="tty",
            netns_path=f"/var/run/netns/{ns}",
            log_dir=str(tmp_path / "logs"),
        )
    )


def _start(
    rt: RuncRuntime,
    sid: str,
    busybox: tuple[ImageStore, Image],
    tmp_path: Path,
    name: str,
    argv: list[str],
    **spec: bool,
) -> str:
    store, img = busybox
    cfg = ContainerConfig(
        name=name,
        attempt=0,
        image=img.ref,
        image_id=img.image_id,
        argv=argv,
        env=["PATH=/bin:/usr/bin"],
        working_dir="/",
        mounts=[],
        log_path=str(tmp_path / "logs" / name / "0.log"),
        container={"name": name, **spec},
        layers=[str(p) for p in store.rootfs_layers(img)],
        image_config=img.config,
    )
    cid = rt.create_container(sid, cfg)
    rt.start_container(cid)
    assert rt.container_status(cid).state == ContainerState.RUNNING
    return cid


class Reader:
    """Collects a session's output on a thread so tests can wait for text in it."""

    def __init__(self, session: ExecSession | AttachSession) -> None:
        import threading

        self.chunks: list[tuple[int, bytes]] = []
        self.done = threading.Event()

        def run() -> None:
            try:
                self.chunks.extend(session.output())
            finally:
                self.done.set()

        # list.extend consumes the generator item by item, so chunks grow as output arrives.
        threading.Thread(target=run, daemon=True).start()

    def text(self, ch: int = 1) -> str:
        return b"".join(d for c, d in list(self.chunks) if c == ch).decode(errors="replace")

    def wait_text(self, needle: str, ch: int = 1, timeout: float = 10) -> str:
        return wait_for(lambda: needle in (t := self.text(ch)) and t, timeout, message=f"{needle!r} in output")


def test_exec_with_tty_sees_a_terminal_resizes_and_exit_code(
    runtime: RuncRuntime, sandbox: str, busybox: tuple[ImageStore, Image], tmp_path: Path
) -> None:
    cid = _start(runtime, sandbox, busybox, tmp_path, "app", ["sleep", "1000"])
    session = runtime.exec(cid, ["sh"], stdin=True, tty=True)
    out = Reader(session)
    session.resize(100, 40)
    session.write_stdin(b"tty; stty size; echo $((6*7))\n")
    out.wait_text("42\r\n")
    text = out.text()
    assert "/dev/pts/" in text and "40 100\r\n" in text
    session.resize(132, 50)
    session.write_stdin(b"stty size; exit 3\n")
    out.wait_text("50 132\r\n")
    assert session.wait() == 3
    assert out.done.wait(5)
    assert not list(runtime._dir(cid).glob("exec-*"))  # the session's socket and pid file are gone

    # The session ends with its process even if a background job still holds the terminal.
    bg = runtime.exec(cid, ["sh", "-c", "sleep 1000 & echo started"], stdin=False, tty=True)
    bg_out = Reader(bg)
    assert bg.wait() == 0
    assert bg_out.done.wait(5) and "started" in bg_out.text()

    # A command that does not exist: runc's own error reaches the terminal, and a non-zero code.
    bad = runtime.exec(cid, ["/no/such"], stdin=True, tty=True)
    bad_out = Reader(bad)
    assert bad.wait() != 0
    assert bad_out.done.wait(5) and "/no/such" in bad_out.text()


def test_tty_container_attach_with_stdin_and_resize(
    runtime: RuncRuntime, sandbox: str, busybox: tuple[ImageStore, Image], tmp_path: Path
) -> None:
    cid = _start(runtime, sandbox, busybox, tmp_path, "shell", ["sh"], stdin=True, tty=True, stdinOnce=True)
    first = runtime.attach(cid, stdin=True, tty=True)
    assert first.tty and first.stdin
    out = Reader(first)
    first.resize(90, 30)
    first.write_stdin(b"tty; stty size\n")
    out.wait_text("30 90\r\n")
    assert "/dev/pts/0" in out.text()
    first.detach()
    assert out.done.wait(5)
    first.close()
    # stdinOnce: once the first attach with stdin is gone, nobody gets stdin any more; the
    # terminal and its output are still there.
    second = runtime.attach(cid, stdin=True, tty=True)
    assert second.tty and not second.stdin
    second.close()
    # The container's terminal output went to its CRI log too, as stdout.
    log = Path(runtime.container_status(cid).log_path).read_bytes()
    assert b" stdout F 30 90\r\n" in log
    runtime.stop_container(cid, 0)
    assert runtime.container_status(cid).state == ContainerState.EXITED


def test_stdin_pipe_container_attach_and_stdin_once_eof(
    runtime: RuncRuntime, sandbox: str, busybox: tuple[ImageStore, Image], tmp_path: Path
) -> None:
    argv = ["sh", "-c", "while read line; do echo got-$line; echo err-$line >&2; done; echo eof; exit 7"]
    cid = _start(runtime, sandbox, busybox, tmp_path, "reader", argv, stdin=True, stdinOnce=True)
    session = runtime.attach(cid, stdin=True, tty=False)
    assert session.stdin and not session.tty
    out = Reader(session)
    session.write_stdin(b"one\ntwo\n")
    out.wait_text("got-two\n")
    assert out.text(1) == "got-one\ngot-two\n"
    out.wait_text("err-two\n", ch=2)
    # The client's stdin ends and it detaches: with stdinOnce the container reads EOF.
    session.close_stdin()
    session.detach()
    session.close()
    st = wait_for(lambda: (s := runtime.container_status(cid)).state == ContainerState.EXITED and s, 10)
    assert st.exit_code == 7
    log = Path(st.log_path).read_text()
    assert " stdout F got-one" in log and " stderr F err-two" in log and " stdout F eof" in log


def test_attach_closes_while_a_container_ignores_its_stdin(
    runtime: RuncRuntime, sandbox: str, busybox: tuple[ImageStore, Image], tmp_path: Path
) -> None:
    import threading

    cid = _start(runtime, sandbox, busybox, tmp_path, "deaf", ["sleep", "1000"], stdin=True)
    session = runtime.attach(cid, stdin=True, tty=False)
    # Far more than a pipe holds: the writer waits for room that never comes...
    writer = threading.Thread(target=session.write_stdin, args=(b"x" * (4 << 20),), daemon=True)
    writer.start()
    writer.join(0.5)
    assert writer.is_alive()
    # ...yet the session closes at once, and the writer gives up.
    closer = threading.Thread(target=lambda: (session.detach(), session.close()), daemon=True)
    closer.start()
    closer.join(5)
    writer.join(5)
    assert not closer.is_alive() and not writer.is_alive()
    assert runtime.container_status(cid).state == ContainerState.RUNNING
