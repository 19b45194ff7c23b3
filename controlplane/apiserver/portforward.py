"""``pods/portforward``: kubectl's SPDY port-forward session, each connection relayed to the pod.

Role: kubectl ≥1.31 opens ``GET …/pods/{name}/portforward`` as a WebSocket with subprotocol
``SPDY/3.1+portforward.k8s.io`` and then speaks SPDY/3.1 inside binary messages (see ``spdy``).
kubectl ≤1.30 sends the same stream on a raw ``Upgrade: SPDY/3.1`` connection, which
``spdy_upgrade`` presents to the app as this very WebSocket.
For every local TCP connection it accepts, kubectl opens two streams (SYN_STREAM) with headers
``streamtype: error|data``, ``port: <pod port>``, ``requestid: <n>`` — first the error stream,
then the data stream. This module runs that session:

1. answer every SYN_STREAM with a SYN_REPLY (kubectl waits for it before it uses the stream);
2. when a request's data stream arrives, dial the pod's port through ``Dialer`` (in the server:
   the kubelet of the pod's node, see ``KubeletUpstream``) and relay — DATA on the data stream to
   the pod, the pod's bytes back as DATA; the client's FIN half-closes the upstream;
3. when the upstream ends, FIN the data stream, then FIN the error stream (kubectl waits for the
   error stream to end before it finishes the connection);
4. a failure (dial refused, connection reset) is written as text on the error stream before both
   FINs: kubectl prints it ("an error occurred forwarding …") — the session itself goes on;
5. echo PING; GOAWAY or the WebSocket closing ends the session and every relay; RST_STREAM on a
   stream aborts its request. WINDOW_UPDATE and SETTINGS are ignored (kubectl's spdystream does no
   flow control at these sizes).

kubelet link (``KubeletUpstream``): one WebSocket per forwarded connection to the kubelet's
``/portForward/{namespace}/{pod}?port=N`` (subprotocol ``portforward.kubelab.io``). Every binary
message starts with a channel byte: ``0`` data, ``1`` error text (the kubelet then closes),
``255 0`` "my sending side is done" (a half-close, v5-style). The kubelet connects to the port
inside the pod's network namespace, so ports bound to the pod's 127.0.0.1 work as in Kubernetes.

Invariants: every frame we write goes through one lock, so header blocks leave in the order the
compression context produced them; a request is relayed at most once; every upstream is closed
when its request ends or the session ends.

Concurrency: all on the server's event loop — the session's reader (the caller's receive loop),
one task per forwarded connection; client→upstream order is kept by a queue per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from controlplane.apiserver import spdy
from controlplane.apiserver.httpio import Receive, Send

log = logging.getLogger(__name__)

SUBPROTOCOL = "SPDY/3.1+portforward.k8s.io"
KUBELET_SUBPROTOCOL = "portforward.kubelab.io"
CH_DATA, CH_ERROR, CH_CLOSE = 0, 1, 255
_READ_CHUNK = 64 * 1024


class PortForwardError(Exception):
    """Dialing or relaying failed; the message is shown to the user by kubectl."""


class Upstream(Protocol):
    """One connection to the pod's port."""

    async def read(self) -> bytes | None:
        """The next bytes from the pod; None at end of stream. Raises ``PortForwardError``."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def close_write(self) -> None:
        """The client will send nothing more (half-close)."""
        ...

    async def close(self) -> None: ...


Dialer = Callable[[int], Awaitable[Upstream]]  # pod port → connected upstream (or PortForwardError)
SendBytes = Callable[[bytes], Awaitable[None]]


@dataclass
class _Request:
    """One forwarded connection: its pair of streams and relay."""

    request_id: str
    port: str = ""
    error_id: int = 0
    data_id: int = 0
    to_upstream: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    finished: bool = False


class PortForwardSession:
    """The SPDY session of one ``kubectl port-forward``; feed it the client's bytes."""

    def __init__(self, dial: Dialer, send: SendBytes, pod_name: str = "") -> None:
        self._dial = dial
        self._send = send
        self._pod = pod_name
        self._reader = spdy.FrameReader()
        self._writer = spdy.FrameWriter()
        self._lock = asyncio.Lock()
        self._requests: dict[str, _Request] = {}
        self._by_stream: dict[int, _Request] = {}
        self._last_stream = 0
        self.closed = False

    # ---- input ---------------------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """Bytes from the client (any slicing); acts on every complete frame."""
        for frame in self._reader.feed(data):
            await self._on_frame(frame)

    async def _on_frame(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.DataFrame):
            req = self._by_stream.get(frame.stream_id)
            if req is not None and frame.stream_id == req.data_id and not req.finished:
                if frame.data:
                    req.to_upstream.put_nowait(frame.data)
                if frame.fin:
                    req.to_upstream.put_nowait(None)
        elif isinstance(frame, spdy.SynStream):
            await self._on_syn_stream(frame)
        elif isinstance(frame, spdy.Ping):
            await self._write(spdy.Ping(frame.ping_id))
        elif isinstance(frame, spdy.RstStream):
            req = self._by_stream.get(frame.stream_id)
            if req is not None:
                self._abort(req)
        elif isinstance(frame, spdy.GoAway):
            self.closed = True
        # SYN_REPLY/HEADERS (we open no streams), SETTINGS, WINDOW_UPDATE: nothing to do.

    async def _on_syn_stream(self, frame: spdy.SynStream) -> None:
        self._last_stream = max(self._last_stream, frame.stream_id)
        await self._write(spdy.SynReply(frame.stream_id))
        h = frame.headers
        kind, port, rid = h.get("streamtype", ""), h.get("port", ""), h.get("requestid", "")
        # Clients before request ids paired streams by port; key by it then.
        key = rid or f"port:{port}"
        req = self._requests.get(key)
        if req is None or req.finished:
            req = _Request(key)
            self._requests[key] = req
        self._by_stream[frame.stream_id] = req
        req.port = req.port or port
        if kind == "error":
            req.error_id = frame.stream_id
        elif kind == "data":
            req.data_id = frame.stream_id
            if req.task is None:
                req.task = asyncio.ensure_future(self._relay(req))
        else:
            await self._write(spdy.RstStream(frame.stream_id, spdy.PROTOCOL_ERROR))

    # ---- output --------------------------------------------------------------------------

    async def _write(self, *frames: spdy.Frame) -> None:
        async with self._lock:
            await self._send(b"".join(self._writer.encode(f) for f in frames))

    # ---- relay ---------------------------------------------------------------------------

    async def _relay(self, req: _Request) -> None:
        error = ""
        upstream: Upstream | None = None
        try:
            try:
                port = int(req.port)
                if not 0 < port < 65536:
                    raise ValueError
            except ValueError:
                raise PortForwardError(f'invalid port "{req.port}" in port-forward request') from None
            upstream = await self._dial(port)
            pump = asyncio.ensure_future(self._client_to_upstream(req, upstream))
            try:
                while True:
                    chunk = await upstream.read()
                    if chunk is None:
                        break
                    await self._write(spdy.DataFrame(req.data_id, chunk))
            finally:
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
                if pump.done() and not pump.cancelled() and pump.exception() is not None:
                    error = error or str(pump.exception())
        except PortForwardError as exc:
            error = str(exc)
        except Exception as exc:
            # Whatever broke, the client must still get its FINs (else kubectl waits forever on
            # this connection) and a reason on the error stream.
            log.warning("port-forward %s:%s failed", self._pod, req.port, exc_info=True)
            error = f"error forwarding port {req.port} to pod {self._pod}: {exc}"
        finally:
            req.finished = True
            if upstream is not None:
                with contextlib.suppress(Exception):
                    await upstream.close()
        if self.closed:
            return
        frames: list[spdy.Frame] = [spdy.DataFrame(req.data_id, b"", fin=True)]
        if req.error_id:
            if error:
                frames.insert(0, spdy.DataFrame(req.error_id, error.encode()))
            frames.append(spdy.DataFrame(req.error_id, b"", fin=True))
        elif error:
            log.info("port-forward to %s: %s (the client opened no error stream)", self._pod, error)
        with contextlib.suppress(Exception):
            await self._write(*frames)
        self._forget(req)

    async def _client_to_upstream(self, req: _Request, upstream: Upstream) -> None:
        while True:
            data = await req.to_upstream.get()
            if data is None:
                await upstream.close_write()
                return
            await upstream.write(data)

    def _abort(self, req: _Request) -> None:
        req.finished = True
        if req.task is not None:
            req.task.cancel()
        self._forget(req)

    def _forget(self, req: _Request) -> None:
        for sid in (req.error_id, req.data_id):
            if self._by_stream.get(sid) is req:
                del self._by_stream[sid]
        if self._requests.get(req.request_id) is req:
            del self._requests[req.request_id]

    @property
    def active(self) -> int:
        """Forwarded connections still relaying."""
        return sum(1 for r in self._requests.values() if r.task is not None and not r.task.done())

    async def close(self) -> None:
        """End every relay (the client went away): upstreams closed, nothing more written."""
        self.closed = True
        tasks = [r.task for r in self._requests.values() if r.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._requests.clear()
        self._by_stream.clear()


async def serve(receive: Receive, send: Send, dial: Dialer, pod_name: str) -> None:
    """Run a session on an accepted ASGI WebSocket until the client leaves or says GOAWAY."""

    async def send_bytes(data: bytes) -> None:
        await send({"type": "websocket.send", "bytes": data})

    session = PortForwardSession(dial, send_bytes, pod_name)
    try:
        while not session.closed:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("bytes")
            if data is None and msg.get("text") is not None:
                data = msg["text"].encode()
            if data:
                await session.feed(data)
    except spdy.ProtocolError as exc:
        log.info("port-forward to %s: %s; closing the session", pod_name, exc)
    finally:
        await session.close()
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})


class KubeletUpstream:
    """``Upstream`` over one kubelet ``/portForward`` WebSocket (channel-byte messages)."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws  # a websockets client connection
        self._eof = False

    async def read(self) -> bytes | None:
        import websockets

        while not self._eof:
            try:
                msg = await self._ws.recv()
            except websockets.ConnectionClosed:
                return None
            if isinstance(msg, str):
                msg = msg.encode()
            if not msg:
                continue
            ch, data = msg[0], msg[1:]
            if ch == CH_DATA:
                if data:
                    return bytes(data)
            elif ch == CH_ERROR:
                raise PortForwardError(data.decode(errors="replace"))
            elif ch == CH_CLOSE:
                self._eof = True
        return None

    async def write(self, data: bytes) -> None:
        import websockets

        try:
            await self._ws.send(bytes([CH_DATA]) + data)
        except websockets.ConnectionClosed:
            raise PortForwardError("the kubelet closed the port-forward connection") from None

    async def close_write(self) -> None:
        import websockets

        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(bytes([CH_CLOSE, CH_DATA]))

    async def close(self) -> None:
        await self._ws.close()


def kubelet_dialer(base_url: str, ssl_ctx: Any, pod_name: str) -> Dialer:
    """A ``Dialer`` opening ``{base_url}?port=N`` on the kubelet (``wss://host:port/portForward/ns/pod``)."""

    async def dial(port: int) -> Upstream:
        import orjson
        import websockets
        from websockets.exceptions import InvalidStatus
        from websockets.typing import Subprotocol

        try:
            ws = await websockets.connect(
                f"{base_url}?port={port}",
                subprotocols=[Subprotocol(KUBELET_SUBPROTOCOL)],
                ssl=ssl_ctx,
                max_size=None,
                open_timeout=10,
                close_timeout=2,  # our kubelet drops rather than answers a close we start
            )
        except InvalidStatus as exc:
            # The kubelet refused before upgrading (pod not found or not running): its Status message.
            body = exc.response.body or b""
            try:
                message = str(orjson.loads(body).get("message") or "")
            except (orjson.JSONDecodeError, AttributeError):
                message = body.decode(errors="replace").strip()
            raise PortForwardError(f"error forwarding port {port} to pod {pod_name}: {message or exc}") from None
        except Exception as exc:
            raise PortForwardError(
                f"error forwarding port {port} to pod {pod_name}: dialing the kubelet: {exc}"
            ) from None
        return KubeletUpstream(ws)

    return dial


__all__ = [
    "KUBELET_SUBPROTOCOL",
    "SUBPROTOCOL",
    "Dialer",
    "KubeletUpstream",
    "PortForwardError",
    "PortForwardSession",
    "Upstream",
    "kubelet_dialer",
    "serve",
]
