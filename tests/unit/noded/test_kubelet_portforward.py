"""The kubelet API's ``/portForward/{ns}/{pod}?port=N`` WebSocket (subprotocol portforward.kubelab.io)
over real TLS with client certificates, against the FakeRuntime and a TCP server of the test (no
root: the fake sandbox has no netns path, so noded connects in its own namespace, as it does for
a host-network pod on a node without ``--node-netns``)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from controlplane.pki import issue_cert, new_ca
from noded.runtime.fake import FakeRuntime
from noded.runtime.interface import SandboxConfig
from noded.server import PORTFORWARD_SUBPROTOCOL, KubeletHost, KubeletServer, _unmask
from tests.helpers.wait import wait_for
from tests.unit.noded.test_kubelet_streams import UID, _Pods


class EchoServer:
    """Echoes each connection until the client half-closes, then closes; records what it saw."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.ended = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
        self.ended.set()

    def close(self) -> None:
        self.sock.close()


class Env:
    def __init__(self, tmp: Path) -> None:
        ca = new_ca()
        (tmp / "ca.crt").write_bytes(ca.cert_pem)
        for name, server in (("kubelet", True), ("client", False)):
            cert, key = issue_cert(ca, f"test-{name}", ips=["127.0.0.1"], client=not server, server=server)
            (tmp / f"{name}.crt").write_bytes(cert)
            (tmp / f"{name}.key").write_bytes(key)
        runtime = FakeRuntime()
        runtime.run_pod_sandbox(SandboxConfig("p", "default", UID, 0, "p", "", str(tmp)))
        node = KubeletHost(
            node_name="n",
            pods=_Pods(
                {
                    "default/p": {"metadata": {"name": "p", "namespace": "default", "uid": UID}},
                    "default/nosandbox": {"metadata": {"name": "nosandbox", "namespace": "default", "uid": "x"}},
                }
            ),
            runtime=runtime,
        )
        self.server = KubeletServer(
            node,
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

    def connect(self, path: str, proto: str = PORTFORWARD_SUBPROTOCOL) -> ClientConnection:
        return connect(f"wss://127.0.0.1:{self.server.port}{path}", ssl=self.ctx, subprotocols=[Subprotocol(proto)])


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.server.stop()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    e = EchoServer()
    try:
        yield e
    finally:
        e.close()


def messages(ws: ClientConnection) -> list[bytes]:
    out: list[bytes] = []
    try:
        while True:
            msg = ws.recv(timeout=10)
            out.append(msg if isinstance(msg, bytes) else msg.encode())
    except Exception:  # closed by the kubelet
        pass
    return out


def test_relays_both_ways_with_half_close(env: Env, echo: EchoServer) -> None:
    with env.connect(f"/portForward/default/p?port={echo.port}") as ws:
        assert ws.subprotocol == PORTFORWARD_SUBPROTOCOL
        big = bytes(range(256)) * 1000
        ws.send(b"\x00hello ")
        ws.send(b"\x00" + big)
        ws.send(b"\xff\x00")  # our sending side is done: the pod socket is half-closed
        got = messages(ws)
    assert got[-1] == b"\xff\x00"
    assert all(m[:1] == b"\x00" for m in got[:-1])
    assert b"".join(m[1:] for m in got[:-1]) == b"hello " + big
    assert echo.ended.is_set()


def test_the_client_leaving_closes_the_pod_connection(env: Env, echo: EchoServer) -> None:
    ws = env.connect(f"/portForward/default/p?port={echo.port}")
    ws.send(b"\x00ping")
    assert ws.recv(timeout=10) == b"\x00ping"
    ws.close()
    wait_for(echo.ended.is_set, 10, message="the pod side saw the connection end")


def test_connection_refused_is_an_error_message(env: Env) -> None:
    with socket.socket() as s:  # a port that was free a moment ago; nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with env.connect(f"/portForward/default/p?port={port}") as ws:
        got = messages(ws)
    assert len(got) == 1 and got[0][:1] == b"\x01"
    text = got[0][1:].decode()
    assert f"error forwarding port {port} to pod p" in text and "connect: connection refused" in text


@pytest.mark.parametrize(
    ("path", "proto", "code"),
    [
        ("/portForward/default/p", PORTFORWARD_SUBPROTOCOL, 400),  # no port
        ("/portForward/default/p?port=70000", PORTFORWARD_SUBPROTOCOL, 400),
        ("/portForward/default/p?port=80", "v5.channel.k8s.io", 400),
        ("/portForward/default/missing?port=80", PORTFORWARD_SUBPROTOCOL, 404),
        ("/portForward/default/nosandbox?port=80", PORTFORWARD_SUBPROTOCOL, 404),
    ],
)
def test_bad_requests_are_refused_before_upgrading(env: Env, path: str, proto: str, code: int) -> None:
    with pytest.raises(InvalidStatus) as exc:
        env.connect(path, proto)
    assert exc.value.response.status_code == code


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 4099])
def test_unmask_is_the_rfc6455_xor(n: int) -> None:
    payload, mask = bytes((i * 7) % 256 for i in range(n)), b"\x12\x34\x56\x78"
    assert _unmask(payload, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
