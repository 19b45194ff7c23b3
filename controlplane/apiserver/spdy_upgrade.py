"""Raw SPDY (port-forward for kubectl ≤1.30, exec/attach for ≤1.29): an ``Upgrade: SPDY/3.1``
request served as if it were the WebSocket one.

Role: kubectl 1.27–1.30 forwards ports with ``POST …/pods/{name}/portforward``, ``Connection:
Upgrade``, ``Upgrade: SPDY/3.1``, ``X-Stream-Protocol-Version: portforward.k8s.io``, and after a
``101`` speaks SPDY/3.1 on the bare connection. An ASGI app cannot take over a socket, so uvicorn's
HTTP protocol hands such a request here (a two-method hook in ``cli.py``) and this asyncio
``Protocol`` takes the connection: it presents the request to the app as an ASGI *WebSocket* with
subprotocol ``SPDY/3.1+portforward.k8s.io`` — the same SPDY byte stream kubectl ≥1.31 sends inside
WebSocket messages — so authentication (TLS peer or bearer token), authorization, the pod lookup
and ``portforward.serve`` are the very code the WebSocket path runs:

- ``websocket.accept`` → ``HTTP/1.1 101`` with ``Upgrade: SPDY/3.1`` and the chosen
  ``X-Stream-Protocol-Version``; ``websocket.send`` bytes → written as they are;
- a denial (``websocket.http.response.*``) → that HTTP response, then close (kubectl prints the
  Status message);
- bytes received → ``websocket.receive``; the connection ending → ``websocket.disconnect``.

exec/attach over SPDY (kubectl ≤1.29: ``X-Stream-Protocol-Version: v4.channel.k8s.io``) is taken
over the same way, as subprotocol ``SPDY/3.1+v4.channel.k8s.io`` (``spdy_exec`` bridges it to the
kubelet's WebSocket channels). Older-only offers (v3, v2) still reach the app as plain POSTs and get
its clear 400.

Concurrency: on the server's event loop; one task runs the app per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from controlplane.apiserver import spdy_exec

log = logging.getLogger(__name__)

PORTFORWARD_PROTOCOL = b"portforward.k8s.io"
EXEC_PROTOCOL = spdy_exec.PROTOCOL.encode()


def chosen(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The stream protocol we serve for an ``Upgrade: SPDY/3.1`` request (names lowercase, as uvicorn
    keeps them): ``portforward.k8s.io``, or ``v4.channel.k8s.io`` for exec/attach (also when
    kubectl 1.29 offers v5 first: over SPDY v5 adds nothing); None when it is not one of those."""
    upgrade = connection = False
    offered: list[bytes] = []
    for name, value in headers:
        if name == b"upgrade":
            upgrade = value.strip().lower() == b"spdy/3.1"
        elif name == b"connection":
            connection = b"upgrade" in [t.strip().lower() for t in value.split(b",")]
        elif name == b"x-stream-protocol-version":
            offered += [t.strip() for t in value.split(b",")]
    if not (upgrade and connection):
        return None
    for proto in (PORTFORWARD_PROTOCOL, EXEC_PROTOCOL):
        if proto in offered:
            return proto
    return None


def wanted(headers: list[tuple[bytes, bytes]]) -> bool:
    """Is this a raw SPDY request we take over (see ``chosen``)?"""
    return chosen(headers) is not None


def take_over(http: Any, on_lost: Callable[[], None]) -> None:
    """Move the connection of uvicorn HTTP protocol ``http`` (its request headers just parsed) to a
    ``SpdyUpgrade`` running ``http.app``."""
    proto_name = chosen(http.headers) or PORTFORWARD_PROTOCOL
    raw = bytes(http.url)
    raw_path, _, query = raw.partition(b"?")
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "wss",
        "server": http.scope.get("server"),
        "client": http.scope.get("client"),
        "root_path": "",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "headers": list(http.headers),
        "subprotocols": ["SPDY/3.1+" + proto_name.decode()],
        "extensions": {"websocket.http.response": {}},
    }
    http.connections.discard(http)
    proto = SpdyUpgrade(http.app, scope, on_lost, proto_name)
    http.transport.set_protocol(proto)
    proto.connection_made(http.transport)


class SpdyUpgrade(asyncio.Protocol):
    """One taken-over connection, shown to the app as an ASGI WebSocket (see the module docstring)."""

    def __init__(
        self, app: Any, scope: dict[str, Any], on_lost: Callable[[], None], protocol: bytes = PORTFORWARD_PROTOCOL
    ) -> None:
        self.app = app
        self.protocol = protocol
        self.scope = scope
        self.on_lost = on_lost
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.transport: Any = None
        self.task: asyncio.Task[None] | None = None
        self.lost = False
        self._deny_status = 0
        self._deny_headers: list[tuple[bytes, bytes]] = []

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.transport = transport
        self.task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": bytes(data)})

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})
        self.on_lost()

    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.inbox.get, self._send)
        except Exception:
            log.exception("SPDY port-forward %s failed", self.scope.get("path"))
        finally:
            if not self.lost:
                self.transport.close()

    async def _send(self, msg: dict[str, Any]) -> None:
        if self.lost:
            return
        kind = msg["type"]
        if kind == "websocket.accept":
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                b"X-Stream-Protocol-Version: " + self.protocol + b"\r\n\r\n"
            )
        elif kind == "websocket.send":
            data = msg.get("bytes")
            self.transport.write(data if data is not None else str(msg.get("text", "")).encode())
        elif kind == "websocket.close":
            self.transport.close()
        elif kind == "websocket.http.response.start":
            self._deny_status = int(msg["status"])
            self._deny_headers = list(msg.get("headers") or [])
        elif kind == "websocket.http.response.body":
            body = bytes(msg.get("body") or b"")
            status = self._deny_status or 500
            reason = "Error"
            with contextlib.suppress(ValueError):
                reason = HTTPStatus(status).phrase
            head = [f"HTTP/1.1 {status} {reason}\r\n".encode()]
            head += [name + b": " + value + b"\r\n" for name, value in self._deny_headers]
            head.append(f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            self.transport.write(b"".join(head) + body)
            if not msg.get("more_body"):
                self.transport.close()


__all__ = ["SpdyUpgrade", "take_over", "wanted"]
