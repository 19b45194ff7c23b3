"""The kubelet API's exec/attach WebSocket channel protocol (v5/v4.channel.k8s.io), over real TLS with
client certificates, against the stateful FakeRuntime (no root needed).

What a client sends — stdin (0), resize (4, ``{"Width":…,"Height":…}``), stdin EOF (255 0) — must
reach the runtime's session in order, output must come back on the right channel (a terminal has
only channel 1), and the last message must be the channel-3 Status with the exit code.
"""

from __future__ import annotations

import json
import select
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from controlplane.pki import issue_cert, new_ca
from noded.runtime.fake import FakeAttachSession, FakeExecSession, FakeRuntime
from noded.runtime.interface import ContainerConfig, ExecResult, SandboxConfig
from noded.server import KubeletHost, KubeletServer, parse_resize
from tests.helpers.wait import wait_for

UID = "0b6f9c1e-0000-4000-8000-000000000001"


class _Pods:
    def __init__(self, pods: dict[str, dict[str, Any]]) -> None:
        self.pods = pods

    def get(self, key: str) -> dict[str, Any] | None:
        return self.pods.get(key)

    def list(self) -> list[dict[str, Any]]:
        return list(self.pods.values())


class Env:
    def __init__(self, tmp: Path) -> None:
        ca = new_ca()
        (tmp / "ca.crt").write_bytes(ca.cert_pem)
        for name, server in (("kubelet", True), ("client", False)):
            cert, key = issue_cert(ca, f"test-{name}", ips=["127.0.0.1"], client=not server, server=server)
            (tmp / f"{name}.crt").write_bytes(cert)
            (tmp / f"{name}.key").write_bytes(key)
        self.runtime = FakeRuntime()
        sid = self.runtime.run_pod_sandbox(SandboxConfig("p", "default", UID, 0, "p", "/dev/null", str(tmp)))
        self.cids = {}
        for name, spec in (("plain", {}), ("shell", {"stdin": True, "tty": True}), ("pipe", {"stdin": True})):
            cfg = ContainerConfig(name, 0, "img", "", ["sh"], [], "/", [], str(tmp / f"{name}.log"), container=spec)
            cid = self.runtime.create_container(sid, cfg)
            self.runtime.start_container(cid)
            self.cids[name] = cid
        self.server = KubeletServer(
            KubeletHost(
                node_name="n",
                pods=_Pods({"default/p": {"metadata": {"name": "p", "namespace": "default", "uid": UID}}}),
                runtime=self.runtime,
            ),
            tmp / "kubelet.crt",
            tmp / "kubelet.key",
            tmp / "ca.crt",
            host="127.0.0.1",
            port=0,
        )
        self.server.start()
        self.ctx = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
        self.ctx.check_hostname = False
        self.ctx.load_cert_chain(str(tmp / "client.crt"), str(tmp / "client.key"))

    def connect(self, path: str, proto: str = "v5.channel.k8s.io") -> ClientConnection:
        return connect(f"wss://127.0.0.1:{self.server.port}{path}", ssl=self.ctx, subprotocols=[Subprotocol(proto)])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.server.stop()


def _drain(ws: ClientConnection) -> list[bytes]:
    frames: list[bytes] = []
    try:
        while True:
            msg = ws.recv(timeout=10)
            frames.append(msg if isinstance(msg, bytes) else msg.encode())
    except Exception:  # the server closed the stream
        pass
    return frames


def _status(frames: list[bytes]) -> dict[str, Any]:
    [status] = [json.loads(f[1:]) for f in frames if f[0] == 3]
    return dict(status)


def test_exec_with_tty_relays_stdin_resize_and_exit_code(env: Env) -> None:
    env.runtime.exec_results[("sh",)] = ExecResult(3, b"out\r\n", b"err\r\n")
    with env.connect("/exec/default/p/plain?command=sh&stdin=true&stdout=true&tty=true") as ws:
        ws.send(b'\x04{"Width":0,"Height":0}')  # what kubectl sends when it knows no size: ignored
        ws.send(b'\x04{"Width":100,"Height":40}')
        ws.send(b"\x00ls\n")
        ws.send(b'\x04{"Width":132,"Height":50}')
        ws.send(b"\xff\x00")  # v5: stdin reached EOF
        frames = _drain(ws)
    [session] = env.runtime.sessions
    assert isinstance(session, FakeExecSession) and session.tty
    assert session.resizes == [(100, 40), (132, 50)] and session.stdin == b"ls\n"
    # A terminal has one output: everything arrives on channel 1, in order.
    assert [f for f in frames if f[0] in (1, 2)] == [b"\x01out\r\n", b"\x01err\r\n"]
    status = _status(frames)
    assert status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_exec_without_tty_keeps_stderr_apart_and_reports_success(env: Env) -> None:
    env.runtime.exec_results[("sh", "-c", "x")] = ExecResult(0, b"out\n", b"err\n")
    with env.connect(
        "/exec/default/p/plain?command=sh&command=-c&command=x&stdout=true&stderr=true", "v4.channel.k8s.io"
    ) as ws:
        assert ws.subprotocol == "v4.channel.k8s.io"
        frames = _drain(ws)
    assert [f for f in frames if f[0] in (1, 2)] == [b"\x01out\n", b"\x02err\n"]
    assert _status(frames) == {"metadata": {}, "status": "Success"}


def test_attach_with_stdin_and_tty_writes_resizes_and_ends_with_the_container(env: Env) -> None:
    with env.connect("/attach/default/p/shell?stdin=true&stdout=true&tty=true") as ws:
        ws.send(b'\x04{"Width":90,"Height":30}')
        ws.send(b"\x00hello\n")
        assert ws.recv(timeout=10) == b"\x01hello\n"  # the fake container is `cat` on a terminal
        env.runtime.exit(env.cids["shell"], 0)
        frames = _drain(ws)
    [session] = env.runtime.sessions
    assert isinstance(session, FakeAttachSession)
    assert session.resizes == [(90, 30)] and session.closed
    assert _status(frames)["status"] == "Success"


def test_attach_detaches_when_the_client_goes(env: Env) -> None:
    with env.connect("/attach/default/p/pipe?stdin=true&stdout=true&stderr=true") as ws:
        ws.send(b"\x00one\n")
        assert ws.recv(timeout=10) == b"\x01one\n"
    [session] = env.runtime.sessions
    assert isinstance(session, FakeAttachSession)
    wait_for(lambda: session.closed, 10, message="attach session closed after the client left")


def test_attach_stdin_is_ignored_for_a_container_without_stdin(env: Env) -> None:
    with env.connect("/attach/default/p/plain?stdin=true&stdout=true") as ws:
        ws.send(b"\x00dropped\n")
        env.runtime.exit(env.cids["plain"], 0)
        frames = _drain(ws)
    assert [f for f in frames if f[0] == 1] == []
    assert _status(frames)["status"] == "Success"


def test_tls_handshake_is_followed_by_silence_until_the_client_speaks(env: Env) -> None:
    """No TLS 1.3 session tickets (issue 18 §5). A ticket is a record the server sends right after
    the handshake; a client that reads on one thread while another writes (websockets' sync
    client: its reader thread is already in ``SSL_read`` when the upgrade request goes out) then
    drives one OpenSSL object from two threads, which OpenSSL does not support: the request was
    lost, noded waited for it and the client for the 101, both forever. Nothing may arrive before
    the client has spoken; the 0.5 s window is how long "nothing" is watched for (the tickets
    came within a millisecond of the handshake)."""
    raw = socket.create_connection(("127.0.0.1", env.server.port), timeout=10)
    tls = env.ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        assert tls.version() == "TLSv1.3"
        readable, _, _ = select.select([tls], [], [], 0.5)
        assert readable == [] and tls.pending() == 0
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: kubelet\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(4096):
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok")
    finally:
        tls.close()


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b'{"Width":80,"Height":24}', (80, 24)),
        (b'{"Width":0,"Height":0}', None),
        (b'{"Width":-1,"Height":24}', None),
        (b'{"Width":70000,"Height":24}', None),
        (b"not json", None),
        (b"[1, 2]", None),
        (b'{"Width":"80","Height":"24"}', (80, 24)),
    ],
)
def test_parse_resize(data: bytes, want: tuple[int, int] | None) -> None:
    assert parse_resize(data) == want


def test_a_client_that_never_says_hello_blocks_nobody_else(env: Env) -> None:
    """The TLS handshake runs on the connection's own thread: a connection that stays silent
    (a port scanner, a stuck client) must not hold up the next client's handshake."""
    silent = socket.create_connection(("127.0.0.1", env.server.port), timeout=10)
    try:
        raw = socket.create_connection(("127.0.0.1", env.server.port), timeout=10)
        with env.ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: kubelet\r\nConnection: close\r\n\r\n")
            reply = b""
            while chunk := tls.recv(4096):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok")
    finally:
        silent.close()
