"""Port-forward over Kubernetes' WebSocket channel protocol (``v4.channel.k8s.io``, the Python
client's) against fakes: a scripted client on the ASGI side and fake upstreams for the pod's ports."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.apiserver import portforward_ws
from controlplane.apiserver.portforward import PortForwardError
from tests.helpers.wait import wait_for


class FakeUpstream:
    def __init__(self, port: int) -> None:
        self.port = port
        self.from_pod: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written = b""
        self.closed = False

    async def read(self) -> bytes | None:
        return await self.from_pod.get()

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close_write(self) -> None:
        pass

    async def close(self) -> None:
        self.closed = True


class Session:
    """The client side of one session: what it sends (ASGI receive) and what it got (ASGI send)."""

    def __init__(self, ports: list[int], refuse: set[int]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.closed = False
        self.upstreams: dict[int, FakeUpstream] = {}
        self.refuse = refuse
        self.task = asyncio.create_task(portforward_ws.serve(self.inbox.get, self._send, ports, self._dial, "p"))

    async def _dial(self, port: int) -> FakeUpstream:
        if port in self.refuse:
            raise PortForwardError(f"error forwarding port {port} to pod p: connect: connection refused")
        self.upstreams[port] = FakeUpstream(port)
        return self.upstreams[port]

    async def _send(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "websocket.close":
            self.closed = True
        else:
            self.sent.append(msg["bytes"])

    def client_writes(self, channel: int, data: bytes) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": bytes([channel]) + data})

    def on(self, channel: int) -> list[bytes]:
        return [m[1:] for m in self.sent if m[0] == channel]

    async def until(self, cond: Any, what: str) -> None:
        for _ in range(500):
            if cond():
                return
            await asyncio.sleep(0)
        wait_for(cond, timeout=0, message=what)


def test_ports_parse_as_kubernetes_does() -> None:
    assert portforward_ws.ports_from_query({"ports": ["1234,1235", "80"]}) == [1234, 1235, 80]
    for bad in ({}, {"ports": [""]}, {"ports": ["0"]}, {"ports": ["70000"]}, {"ports": ["x"]}):
        with pytest.raises(errors.BadRequest):
            portforward_ws.ports_from_query(bad)


def test_subprotocol_choice() -> None:
    assert portforward_ws.choose_subprotocol(["v5.channel.k8s.io", "v4.channel.k8s.io"]) == "v4.channel.k8s.io"
    assert portforward_ws.choose_subprotocol([]) == ""
    assert portforward_ws.choose_subprotocol(["v4.base64.channel.k8s.io"]) is None


def test_a_session_relays_each_port_and_reports_a_refused_one() -> None:
    async def scenario() -> None:
        s = Session([1234, 1236], refuse={1236})
        # every channel starts with its port number, little endian
        await s.until(lambda: len(s.sent) >= 4, "the four port-number messages")
        assert s.sent[:4] == [b"\x00\xd2\x04", b"\x01\xd2\x04", b"\x02\xd4\x04", b"\x03\xd4\x04"]
        # the refused port's error channel says why; its data channel stays silent
        await s.until(lambda: len(s.on(3)) == 2, "the error of port 1236")
        assert s.on(3)[1].startswith(b"error forwarding port 1236 to pod p")
        # client bytes reach the pod in order; the pod's bytes come back on the data channel
        s.client_writes(0, b"hello ")
        s.client_writes(0, b"pod")
        s.client_writes(1, b"ignored: a client's error channel")
        await s.until(lambda: 1234 in s.upstreams and s.upstreams[1234].written == b"hello pod", "relay to pod")
        s.upstreams[1234].from_pod.put_nowait(b"hello client")
        await s.until(lambda: s.on(0)[1:] == [b"hello client"], "relay to client")
        assert s.on(1) == [b"\xd2\x04"]  # no error for a port that works
        # the client leaving ends the session and closes the pod connection
        s.inbox.put_nowait({"type": "websocket.disconnect"})
        await asyncio.wait_for(s.task, 5)
        assert s.closed and s.upstreams[1234].closed

    asyncio.run(scenario())
