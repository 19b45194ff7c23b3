"""exec/attach over raw SPDY (kubectl ≤1.29, and every kubectl's fallback), bridged to the kubelet's
WebSocket channel protocol.

Role: kubectl 1.27–1.29 runs ``kubectl exec`` as ``POST …/exec`` with ``Upgrade: SPDY/3.1`` and
``X-Stream-Protocol-Version: v4.channel.k8s.io`` (among older ones). ``spdy_upgrade`` takes such a
connection over and presents it to the app as a WebSocket with subprotocol ``SPDY/3.1+v4.channel.k8s.io``;
the kubelet proxy then dials the kubelet exactly as for the WebSocket exec (``v5.channel.k8s.io``) and
hands both ends to ``relay`` here, which maps SPDY streams to channels:

- kubectl opens one stream per ``streamtype`` (``error``, ``stdin``, ``stdout``, ``stderr``,
  ``resize``); each gets a SYN_REPLY;
- stdin DATA → channel 0; stdin FIN → ``255 0`` (v5's close-stdin); resize DATA (JSON) → channel 4;
- channel 1 → DATA on stdout, 2 → stderr (or stdout when kubectl opened no stderr stream: a tty),
  3 (the ``Status`` JSON, which is what the v4 protocol writes on its error stream) → error;
- when the kubelet ends: FIN on every stream we write to, then wait for kubectl to hang up.

Invariants: nothing is written to kubectl before the streams it will read exist (kubelet output
that arrives first waits); frames are written under one lock so header blocks stay in order.

Concurrency: on the server's event loop; two tasks per session (each direction).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from controlplane.apiserver import spdy
from controlplane.apiserver.httpio import Receive, Send

log = logging.getLogger(__name__)

PROTOCOL = "v4.channel.k8s.io"
SUBPROTOCOL = f"SPDY/3.1+{PROTOCOL}"
_STREAMS_TIMEOUT = 5.0  # kubectl opens its streams right after the upgrade
_HANGUP_TIMEOUT = 10.0


class _Session:
    def __init__(self, send: Send, expected: set[str]) -> None:
        self.send = send
        self.reader = spdy.FrameReader()
        self.writer = spdy.FrameWriter()
        self.lock = asyncio.Lock()
        self.streams: dict[str, int] = {}
        self.by_id: dict[int, str] = {}
        self.expected = expected
        self.ready = asyncio.Event()

    async def write(self, *frames: spdy.Frame) -> None:
        async with self.lock:
            await self.send({"type": "websocket.send", "bytes": b"".join(self.writer.encode(f) for f in frames)})


async def relay(upstream: Any, receive: Receive, send: Send, expected: set[str]) -> None:
    """Run one exec/attach: ``upstream`` is the kubelet's WebSocket (websockets client, v5 channels),
    ``expected`` the stream types kubectl will open (from its stdin/stdout/stderr/tty flags)."""
    import websockets

    s = _Session(send, expected | {"error"})

    async def client_to_kubelet() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes") or b""
            for frame in s.reader.feed(data):
                if isinstance(frame, spdy.SynStream):
                    kind = frame.headers.get("streamtype", "")
                    s.streams[kind] = frame.stream_id
                    s.by_id[frame.stream_id] = kind
                    await s.write(spdy.SynReply(frame.stream_id))
                    if s.expected <= s.streams.keys():
                        s.ready.set()
                elif isinstance(frame, spdy.DataFrame):
                    kind = s.by_id.get(frame.stream_id, "")
                    if kind == "stdin":
                        if frame.data:
                            await upstream.send(b"\x00" + frame.data)
                        if frame.fin:
                            await upstream.send(b"\xff\x00")
                    elif kind == "resize" and frame.data:
                        for line in frame.data.splitlines():
                            if line.strip():
                                await upstream.send(b"\x04" + line)
                elif isinstance(frame, spdy.Ping):
                    await s.write(spdy.Ping(frame.ping_id))
                elif isinstance(frame, spdy.GoAway):
                    return

    async def kubelet_to_client() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(s.ready.wait(), _STREAMS_TIMEOUT)
        with contextlib.suppress(websockets.ConnectionClosed):
            async for msg in upstream:
                data = msg if isinstance(msg, bytes) else msg.encode()
                if not data:
                    continue
                kind = {1: "stdout", 2: "stderr", 3: "error"}.get(data[0])
                if kind == "stderr" and "stderr" not in s.streams:
                    kind = "stdout"  # a terminal has one output
                if kind in s.streams:
                    await s.write(spdy.DataFrame(s.streams[kind], data[1:]))
        ours = [sid for kind, sid in s.streams.items() if kind in ("stdout", "stderr", "error")]
        await s.write(*(spdy.DataFrame(sid, b"", fin=True) for sid in ours))

    up = asyncio.ensure_future(client_to_kubelet())
    down = asyncio.ensure_future(kubelet_to_client())
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down.done() and not up.done():
            # Everything is written and FINed: kubectl reads to the end and hangs up.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(up), _HANGUP_TIMEOUT)
    except spdy.ProtocolError as exc:
        log.info("SPDY exec: %s", exc)
    finally:
        for t in (up, down):
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
        await upstream.close()
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})


def expected_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> set[str]:
    """The streams kubectl opens for these flags (besides ``error``)."""
    out = {"stdin"} if stdin else set()
    if stdout:
        out.add("stdout")
    if stderr and not tty:
        out.add("stderr")
    if tty:
        out.add("resize")
    return out


__all__ = ["PROTOCOL", "SUBPROTOCOL", "expected_streams", "relay"]
