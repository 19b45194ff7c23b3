"""The raw-SPDY take-over: which requests it claims, and how it shows one to the app as the
WebSocket port-forward (accept → 101, bytes both ways, denial → an HTTP answer, disconnects)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from types import SimpleNamespace
from typing import Any

import pytest

from controlplane.apiserver import spdy_upgrade

UPGRADE = [
    (b"connection", b"Upgrade"),
    (b"upgrade", b"SPDY/3.1"),
    (b"x-stream-protocol-version", b"portforward.k8s.io"),
]


@pytest.mark.parametrize(
    ("headers", "want"),
    [
        (UPGRADE, True),
        ([(b"connection", b"keep-alive, Upgrade"), *UPGRADE[1:]], True),
        # exec over SPDY: v4 (kubectl 1.29 offers v5 first, then v4) is bridged; v3 and older are not
        (
            [
                *UPGRADE[:2],
                (b"x-stream-protocol-version", b"v5.channel.k8s.io"),
                (b"x-stream-protocol-version", b"v4.channel.k8s.io"),
            ],
            True,
        ),
        ([*UPGRADE[:2], (b"x-stream-protocol-version", b"v3.channel.k8s.io")], False),
        ([(b"connection", b"Upgrade"), (b"upgrade", b"websocket"), UPGRADE[2]], False),
        (UPGRADE[1:], False),
    ],
)
def test_wanted(headers: list[tuple[bytes, bytes]], want: bool) -> None:
    assert spdy_upgrade.wanted(headers) is want


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


def fake_http(app: Any, transport: FakeTransport) -> Any:
    return SimpleNamespace(
        url=b"/api/v1/namespaces/default/pods/p%2Dx/portforward?a=1",
        headers=UPGRADE,
        scope={"client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 6443)},
        app=app,
        transport=transport,
    )


App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def take_over(app: App) -> tuple[FakeTransport, list[bool]]:
    transport = FakeTransport()
    lost: list[bool] = []
    http = fake_http(app, transport)
    http.connections = SimpleNamespace(discard=lost.append)  # uvicorn's set of live HTTP connections
    spdy_upgrade.take_over(http, lambda: lost.append(True))
    assert isinstance(transport.protocol, spdy_upgrade.SpdyUpgrade)
    return transport, lost


def test_accepted_session_relays_bytes_both_ways() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        seen["scope"] = scope
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": "SPDY/3.1+portforward.k8s.io"})
        msg = await receive()
        await send({"type": "websocket.send", "bytes": b"echo:" + msg["bytes"]})
        seen["last"] = await receive()

    async def main() -> None:
        transport, lost = take_over(app)
        proto = transport.protocol
        proto.data_received(b"\x80\x03")
        for _ in range(100):  # let the app run (no wall-clock waiting)
            if b"echo:" in transport.written:
                break
            await asyncio.sleep(0)
        proto.connection_lost(None)
        assert proto.task is not None
        await asyncio.wait_for(proto.task, 5)
        assert transport.written.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Upgrade: SPDY/3.1\r\n" in transport.written
        assert b"X-Stream-Protocol-Version: portforward.k8s.io\r\n" in transport.written
        assert transport.written.endswith(b"\r\n\r\necho:\x80\x03")
        assert seen["last"]["type"] == "websocket.disconnect" and lost[-1] is True
        scope = seen["scope"]
        assert scope["type"] == "websocket" and scope["path"] == "/api/v1/namespaces/default/pods/p-x/portforward"
        assert scope["query_string"] == b"a=1" and scope["client"] == ("127.0.0.1", 5555)
        assert scope["subprotocols"] == ["SPDY/3.1+portforward.k8s.io"]

    asyncio.run(main())


def test_denial_is_an_http_answer_and_closes() -> None:
    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 403,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b'{"message":"no"}'})

    async def main() -> None:
        transport, _ = take_over(app)
        await asyncio.wait_for(transport.protocol.task, 5)
        assert transport.written == (
            b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nContent-Length: 16\r\n"
            b'Connection: close\r\n\r\n{"message":"no"}'
        )
        assert transport.closed

    asyncio.run(main())


def test_chosen_protocol() -> None:
    v4 = [*UPGRADE[:2], (b"x-stream-protocol-version", b"v5.channel.k8s.io, v4.channel.k8s.io")]
    assert spdy_upgrade.chosen(v4) == b"v4.channel.k8s.io"
    assert spdy_upgrade.chosen(UPGRADE) == b"portforward.k8s.io"
