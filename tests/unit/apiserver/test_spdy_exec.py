"""The raw-SPDY exec bridge against fakes: kubectl's streams ↔ the kubelet's channel messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import pytest

from controlplane.apiserver import spdy, spdy_exec


class FakeKubelet:
    """A websockets-like client connection: what the bridge sends, and scripted answers."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.answers: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[bytes]:
        while (item := await self.answers.get()) is not None:
            yield item

    async def close(self) -> None:
        self.closed = True


class Kubectl:
    def __init__(self) -> None:
        self.writer = spdy.FrameWriter()
        self.reader = spdy.FrameReader()
        self.inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.received: list[spdy.Frame] = []
        self.closed = False

    def push(self, *frames: spdy.Frame) -> None:
        wire = b"".join(self.writer.encode(f) for f in frames)
        self.inbox.put_nowait({"type": "websocket.receive", "bytes": wire})

    async def send(self, msg: MutableMapping[str, Any]) -> None:
        if msg["type"] == "websocket.send":
            self.received += self.reader.feed(msg["bytes"])
        elif msg["type"] == "websocket.close":
            self.closed = True

    def data_on(self, sid: int) -> tuple[bytes, bool]:
        frames = [f for f in self.received if isinstance(f, spdy.DataFrame) and f.stream_id == sid]
        return b"".join(f.data for f in frames), any(f.fin for f in frames)


async def until(cond: Any, what: str) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


def syn(sid: int, kind: str) -> spdy.SynStream:
    return spdy.SynStream(sid, {"streamtype": kind})


def test_streams_map_to_channels_and_everything_is_finished() -> None:
    async def main() -> None:
        kubelet, k = FakeKubelet(), Kubectl()
        # The kubelet talks first: its output must wait for kubectl's streams.
        kubelet.answers.put_nowait(b"\x01early ")
        expected = spdy_exec.expected_streams(stdin=True, stdout=True, stderr=True, tty=False)
        task = asyncio.ensure_future(spdy_exec.relay(kubelet, k.inbox.get, k.send, expected))
        k.push(syn(1, "error"), syn(3, "stdin"), syn(5, "stdout"), syn(7, "stderr"))
        await until(lambda: k.data_on(5)[0] == b"early ", "early output delivered")
        assert [f.stream_id for f in k.received if isinstance(f, spdy.SynReply)] == [1, 3, 5, 7]
        k.push(spdy.DataFrame(3, b"input"), spdy.DataFrame(3, b"", fin=True), spdy.Ping(9))
        await until(lambda: kubelet.sent == [b"\x00input", b"\xff\x00"], "stdin and its EOF relayed")
        assert spdy.Ping(9) in k.received
        kubelet.answers.put_nowait(b"\x02oops")
        kubelet.answers.put_nowait(b'\x03{"status":"Success"}')
        kubelet.answers.put_nowait(None)  # the kubelet closed
        await until(lambda: k.data_on(1)[1], "error stream finished")
        assert k.data_on(5) == (b"early ", True) and k.data_on(7) == (b"oops", True)
        assert k.data_on(1) == (b'{"status":"Success"}', True)
        k.inbox.put_nowait({"type": "websocket.disconnect"})  # kubectl hangs up
        await asyncio.wait_for(task, 5)
        assert kubelet.closed and k.closed

    asyncio.run(main())


def test_a_terminal_gets_resizes_and_one_output() -> None:
    async def main() -> None:
        kubelet, k = FakeKubelet(), Kubectl()
        expected = spdy_exec.expected_streams(stdin=True, stdout=True, stderr=False, tty=True)
        assert expected == {"stdin", "stdout", "resize"}
        task = asyncio.ensure_future(spdy_exec.relay(kubelet, k.inbox.get, k.send, expected))
        k.push(syn(1, "error"), syn(3, "stdin"), syn(5, "stdout"), syn(7, "resize"))
        k.push(spdy.DataFrame(7, b'{"Width":80,"Height":24}\n{"Width":100,"Height":30}\n'))
        await until(lambda: len(kubelet.sent) == 2, "resizes relayed")
        assert kubelet.sent == [b'\x04{"Width":80,"Height":24}', b'\x04{"Width":100,"Height":30}']
        kubelet.answers.put_nowait(b"\x02to the terminal")
        kubelet.answers.put_nowait(None)
        await until(lambda: k.data_on(5)[1], "stdout finished")
        assert k.data_on(5) == (b"to the terminal", True)
        k.inbox.put_nowait({"type": "websocket.disconnect"})
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("flags", "want"),
    [
        ((False, True, True, False), {"stdout", "stderr"}),
        ((True, True, True, True), {"stdin", "stdout", "resize"}),
        ((False, False, False, False), set()),
    ],
)
def test_expected_streams(flags: tuple[bool, bool, bool, bool], want: set[str]) -> None:
    assert spdy_exec.expected_streams(*flags) == want
