"""The port-forward session against fakes: a scripted kubectl (its own SPDY writer and reader) and
fake upstreams standing in for the kubelet's connections to the pod."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from controlplane.apiserver import spdy
from controlplane.apiserver.portforward import PortForwardError, PortForwardSession, serve


class FakeUpstream:
    def __init__(self, port: int) -> None:
        self.port = port
        self.from_pod: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.written = b""
        self.write_closed = False
        self.closed = False

    async def read(self) -> bytes | None:
        item = await self.from_pod.get()
        return item

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close_write(self) -> None:
        self.write_closed = True

    async def close(self) -> None:
        self.closed = True


class Dialer:
    def __init__(self, refuse: set[int] | None = None) -> None:
        self.refuse = refuse or set()
        self.upstreams: list[FakeUpstream] = []

    async def __call__(self, port: int) -> FakeUpstream:
        if port in self.refuse:
            raise PortForwardError(f"error forwarding port {port} to pod p: connect: connection refused")
        up = FakeUpstream(port)
        self.upstreams.append(up)
        return up


class Kubectl:
    """The client side: encodes frames with its own header context, decodes what the server sent."""

    def __init__(self, dial: Dialer, chunk: int = 0) -> None:
        self.writer = spdy.FrameWriter()
        self.reader = spdy.FrameReader()
        self.received: list[spdy.Frame] = []
        self.chunk = chunk
        self.session = PortForwardSession(dial, self._on_bytes, "p")

    async def _on_bytes(self, data: bytes) -> None:
        self.received += self.reader.feed(data)

    async def send(self, *frames: spdy.Frame) -> None:
        wire = b"".join(self.writer.encode(f) for f in frames)
        if not self.chunk:
            await self.session.feed(wire)
            return
        for i in range(0, len(wire), self.chunk):  # as if every byte were its own WebSocket message
            await self.session.feed(wire[i : i + self.chunk])

    async def open(self, request_id: int, port: int) -> tuple[int, int]:
        err, data = 4 * request_id + 1, 4 * request_id + 3
        await self.send(
            spdy.SynStream(err, {"streamtype": "error", "port": str(port), "requestid": str(request_id)}),
            spdy.SynStream(data, {"streamtype": "data", "port": str(port), "requestid": str(request_id)}),
        )
        return err, data

    def data_on(self, sid: int) -> tuple[bytes, bool]:
        frames = [f for f in self.received if isinstance(f, spdy.DataFrame) and f.stream_id == sid]
        return b"".join(f.data for f in frames), any(f.fin for f in frames)


async def until(cond: Callable[[], Any], what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0)  # let the relay tasks run; no wall-clock waiting
    raise AssertionError(f"never: {what}")


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 10))


@pytest.mark.parametrize("chunk", [0, 1, 7])
def test_one_connection_relays_both_ways_and_ends_with_fins(chunk: int) -> None:
    async def main() -> None:
        dial = Dialer()
        k = Kubectl(dial, chunk)
        err, data = await k.open(0, 8080)
        assert [f for f in k.received if isinstance(f, spdy.SynReply)] == [spdy.SynReply(err), spdy.SynReply(data)]
        await until(lambda: dial.upstreams, "dialed")
        up = dial.upstreams[0]
        assert up.port == 8080
        await k.send(spdy.DataFrame(data, b"GET / HTTP/1.0\r\n\r\n"))
        await until(lambda: up.written == b"GET / HTTP/1.0\r\n\r\n", "request relayed")
        await up.from_pod.put(b"HTTP/1.0 200 OK\r\n\r\n")
        await up.from_pod.put(b"body")
        await up.from_pod.put(None)  # the pod closed the connection
        await until(lambda: k.data_on(err)[1], "error stream finished")
        assert k.data_on(data) == (b"HTTP/1.0 200 OK\r\n\r\nbody", True)
        assert k.data_on(err) == (b"", True)
        # The data stream ends before the error stream (kubectl reads the error stream last).
        fins = [f.stream_id for f in k.received if isinstance(f, spdy.DataFrame) and f.fin]
        assert fins == [data, err]
        assert up.closed and k.session.active == 0

    run(main)


def test_client_fin_half_closes_the_upstream_and_the_answer_still_flows() -> None:
    async def main() -> None:
        dial = Dialer()
        k = Kubectl(dial)
        err, data = await k.open(0, 9090)
        await k.send(spdy.DataFrame(data, b"echo me", fin=True))
        await until(lambda: dial.upstreams and dial.upstreams[0].write_closed, "half-closed")
        up = dial.upstreams[0]
        assert up.written == b"echo me" and not up.closed
        await up.from_pod.put(b"echo me")
        await up.from_pod.put(None)
        await until(lambda: k.data_on(err)[1], "finished")
        assert k.data_on(data) == (b"echo me", True)

    run(main)


def test_dial_failure_goes_to_the_error_stream_and_the_session_goes_on() -> None:
    async def main() -> None:
        dial = Dialer(refuse={9999})
        k = Kubectl(dial)
        err, data = await k.open(0, 9999)
        await until(lambda: k.data_on(err)[1], "error stream finished")
        text, _ = k.data_on(err)
        assert b"connection refused" in text and b"9999" in text
        assert k.data_on(data) == (b"", True)
        # The next connection of the same session works.
        err2, data2 = await k.open(1, 80)
        await until(lambda: dial.upstreams, "dialed")
        await dial.upstreams[0].from_pod.put(b"ok")
        await dial.upstreams[0].from_pod.put(None)
        await until(lambda: k.data_on(err2)[1], "second finished")
        assert k.data_on(data2) == (b"ok", True) and k.data_on(err2) == (b"", True)

    run(main)


def test_invalid_port_is_reported_on_the_error_stream() -> None:
    async def main() -> None:
        dial = Dialer()
        k = Kubectl(dial)
        await k.send(
            spdy.SynStream(1, {"streamtype": "error", "port": "http", "requestid": "0"}),
            spdy.SynStream(3, {"streamtype": "data", "port": "http", "requestid": "0"}),
        )
        await until(lambda: k.data_on(1)[1], "error stream finished")
        assert b'invalid port "http"' in k.data_on(1)[0] and not dial.upstreams

    run(main)


def test_many_connections_share_the_session_independently() -> None:
    async def main() -> None:
        dial = Dialer()
        k = Kubectl(dial, chunk=5)
        streams = [await k.open(i, 7000 + i) for i in range(6)]
        await until(lambda: len(dial.upstreams) == 6, "all dialed")
        ups = {u.port: u for u in dial.upstreams}
        for i, (_, data) in enumerate(streams):
            await k.send(spdy.DataFrame(data, f"to {i}".encode()))
        for i in reversed(range(6)):
            await ups[7000 + i].from_pod.put(f"from {i}".encode())
            await ups[7000 + i].from_pod.put(None)
        await until(lambda: all(k.data_on(err)[1] for err, _ in streams), "all finished")
        for i, (_, data) in enumerate(streams):
            assert ups[7000 + i].written == f"to {i}".encode()
            assert k.data_on(data) == (f"from {i}".encode(), True)

    run(main)


def test_ping_is_echoed_and_unknown_streams_are_reset() -> None:
    async def main() -> None:
        k = Kubectl(Dialer())
        await k.send(spdy.Ping(41), spdy.SynStream(1, {"streamtype": "resize"}))
        assert spdy.Ping(41) in k.received
        assert spdy.RstStream(1, spdy.PROTOCOL_ERROR) in k.received

    run(main)


def test_rst_stream_aborts_the_connection_and_close_ends_every_relay() -> None:
    async def main() -> None:
        dial = Dialer()
        k = Kubectl(dial)
        _, data0 = await k.open(0, 1)
        await k.open(1, 2)
        await until(lambda: len(dial.upstreams) == 2, "dialed")
        await k.send(spdy.RstStream(data0, spdy.CANCEL))
        await until(lambda: dial.upstreams[0].closed, "first closed")
        assert not dial.upstreams[1].closed
        await k.session.close()
        assert dial.upstreams[1].closed and k.session.active == 0

    run(main)


def test_serve_accepts_websocket_messages_and_cleans_up_on_disconnect() -> None:
    async def main() -> None:
        dial = Dialer()
        client = spdy.FrameWriter()
        wire = client.encode(spdy.SynStream(1, {"streamtype": "error", "port": "5", "requestid": "0"}))
        wire += client.encode(spdy.SynStream(3, {"streamtype": "data", "port": "5", "requestid": "0"}))
        wire += client.encode(spdy.DataFrame(3, b"x"))
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for i in range(0, len(wire), 10):
            inbox.put_nowait({"type": "websocket.receive", "bytes": wire[i : i + 10]})
        sent: list[MutableMapping[str, Any]] = []

        async def send(msg: MutableMapping[str, Any]) -> None:
            sent.append(msg)

        task = asyncio.ensure_future(serve(inbox.get, send, dial, "p"))
        await until(lambda: dial.upstreams and dial.upstreams[0].written == b"x", "relayed")
        inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})
        await task
        assert dial.upstreams[0].closed
        frames = spdy.FrameReader().feed(b"".join(m["bytes"] for m in sent if m["type"] == "websocket.send"))
        assert [f for f in frames if isinstance(f, spdy.SynReply)] == [spdy.SynReply(1), spdy.SynReply(3)]
        assert sent[-1] == {"type": "websocket.close", "code": 1000}

    run(main)


def test_serve_ends_on_bytes_that_are_not_spdy() -> None:
    async def main() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01"})
        sent: list[MutableMapping[str, Any]] = []

        async def send(msg: MutableMapping[str, Any]) -> None:
            sent.append(msg)

        await serve(inbox.get, send, Dialer(), "p")
        assert sent == [{"type": "websocket.close", "code": 1000}]

    run(main)


class BrokenUpstream(FakeUpstream):
    async def read(self) -> bytes | None:
        item = await self.from_pod.get()
        if item == b"boom":
            raise PortForwardError("error forwarding port 1 to pod p: connection reset by peer")
        return item


def test_errors_mid_stream_and_unexpected_failures_still_finish_both_streams() -> None:
    async def main() -> None:
        ups: list[BrokenUpstream] = []

        async def dial(port: int) -> BrokenUpstream:
            if port == 2:
                raise RuntimeError("surprise")
            ups.append(BrokenUpstream(port))
            return ups[-1]

        k = Kubectl(Dialer())
        k.session = PortForwardSession(dial, k._on_bytes, "p")
        err1, data1 = await k.open(0, 1)
        await until(lambda: ups, "dialed")
        await ups[0].from_pod.put(b"partial")
        await ups[0].from_pod.put(b"boom")
        await until(lambda: k.data_on(err1)[1], "first finished")
        assert k.data_on(data1) == (b"partial", True)
        assert b"connection reset by peer" in k.data_on(err1)[0] and ups[0].closed
        err2, data2 = await k.open(1, 2)
        await until(lambda: k.data_on(err2)[1], "second finished")
        assert k.data_on(data2) == (b"", True) and b"surprise" in k.data_on(err2)[0]

    run(main)
