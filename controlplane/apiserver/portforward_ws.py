"""``pods/portforward`` over Kubernetes' WebSocket channel protocol (``v4.channel.k8s.io``).

Role: the official Python client (and other WebSocket clients) forward ports without SPDY: a
``GET …/pods/{name}/portforward?ports=1234,1235`` WebSocket with subprotocol ``v4.channel.k8s.io``
(or none), as the kubelet's streaming server serves it (kubernetes
``pkg/kubelet/cri/streaming/portforward/websocket.go``):

1. every requested port ``i`` owns two channels: data ``2i`` and error ``2i+1``; every binary
   message starts with its channel byte;
2. the server's first message on each of the ``2n`` channels is the port number, two bytes little
   endian (the client checks both before using the port);
3. each port is dialed once, when the session starts; client bytes on ``2i`` go to the pod's port,
   the pod's bytes come back on ``2i``; a dial or relay failure is written as text on ``2i+1``
   ("error forwarding port 1236 to pod …"), which the client reads as that port's error;
4. the client closing the WebSocket ends the session and every connection to the pod.

Ports come from ``ports`` (repeated or comma-separated; the apiserver's ``PodPortForwardOptions``),
each 1–65535; none, or a bad one, is a 400 before the upgrade. The base64 variant
(``v4.base64.channel.k8s.io``) is not served: no client we support asks for it.

Invariants: one send lock, so channel messages never interleave; each port's upstream is closed
when the session ends.

Concurrency: on the server's event loop — the reader (this coroutine), one relay task per port
and, per port, a writer draining a queue so client→pod order is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from controlplane.api import errors
from controlplane.apiserver.httpio import Receive, Send
from controlplane.apiserver.portforward import Dialer, PortForwardError, Upstream

log = logging.getLogger(__name__)

V4_BINARY = "v4.channel.k8s.io"
# Offered subprotocols we answer, in Kubernetes' preference; "" is a client that offers none.
SUBPROTOCOLS = (V4_BINARY,)


def choose_subprotocol(offered: list[str]) -> str | None:
    """The subprotocol to accept: v4 binary when offered; ``""`` (none) when the client offered
    none; ``None`` when it offered only ones we do not speak (the caller refuses)."""
    if not offered:
        return ""
    return next((p for p in offered if p in SUBPROTOCOLS), None)


def ports_from_query(query: dict[str, list[str]]) -> list[int]:
    """``ports`` as Kubernetes parses it: repeated and/or comma-separated, each 1–65535."""
    values = query.get("ports") or query.get("port") or []
    if not values:
        raise errors.BadRequest('query parameter "ports" is required')
    ports: list[int] = []
    for value in values:
        if not value:
            raise errors.BadRequest('query parameter "ports" cannot be empty')
        for part in value.split(","):
            try:
                port = int(part)
            except ValueError:
                raise errors.BadRequest(f'unable to parse "{part}" as a port: invalid syntax') from None
            if not 1 <= port <= 65535:
                raise errors.BadRequest(f'port "{part}" must be > 0 and < 65536')
            ports.append(port)
    return ports


async def serve(receive: Receive, send: Send, ports: list[int], dial: Dialer, pod_name: str) -> None:
    """Run a channel port-forward session on an accepted ASGI WebSocket until the client leaves."""
    lock = asyncio.Lock()

    async def send_channel(channel: int, data: bytes) -> None:
        async with lock:
            await send({"type": "websocket.send", "bytes": bytes([channel]) + data})

    for i, port in enumerate(ports):
        number = port.to_bytes(2, "little")
        await send_channel(2 * i, number)
        await send_channel(2 * i + 1, number)

    queues: list[asyncio.Queue[bytes]] = [asyncio.Queue() for _ in ports]
    upstreams: list[Upstream | None] = [None for _ in ports]

    async def relay(i: int, port: int) -> None:
        writer: asyncio.Task[None] | None = None
        try:
            upstream = await dial(port)
            upstreams[i] = upstream

            async def write() -> None:
                while True:
                    await upstream.write(await queues[i].get())

            writer = asyncio.create_task(write())
            while (data := await upstream.read()) is not None:
                await send_channel(2 * i, data)
        except PortForwardError as exc:
            message = str(exc)
            if not message.startswith("error forwarding port"):
                message = f"error forwarding port {port} to pod {pod_name}: {message}"
            with contextlib.suppress(Exception):
                await send_channel(2 * i + 1, message.encode())
        finally:
            if writer is not None:
                writer.cancel()

    tasks = [asyncio.create_task(relay(i, port)) for i, port in enumerate(ports)]
    try:
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("bytes")
            if not data:
                continue
            channel, payload = data[0], data[1:]
            # Only data channels carry client bytes; Kubernetes ignores what a client writes on
            # an error channel, and so do we.
            if channel % 2 == 0 and channel // 2 < len(ports) and payload:
                queues[channel // 2].put_nowait(payload)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        for up in upstreams:
            if up is not None:
                with contextlib.suppress(Exception):
                    await up.close()
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})
        log.debug("port-forward (websocket channels) to %s ended", pod_name)


__all__ = ["SUBPROTOCOLS", "V4_BINARY", "choose_subprotocol", "ports_from_query", "serve"]
