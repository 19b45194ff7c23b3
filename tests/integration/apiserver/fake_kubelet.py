"""A tiny fake kubelet API for the apiserver's proxy tests (run as a subprocess by the test).

Serves the real kubelet's ``/containerLogs/{ns}/{pod}/{container}`` and WebSocket
``/exec/{ns}/{pod}/{container}`` over TLS, and *requires* a client certificate signed by the
given CA (so a call that works proves the API server presented its kubelet-client certificate).

Usage: python fake_kubelet.py PORT CERT KEY CA
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket


async def container_logs(request: Request) -> Any:
    p = request.path_params
    q = request.query_params
    head = f"log of {p['ns']}/{p['pod']}/{p['container']} tail={q.get('tailLines', '')}\n"
    if q.get("follow") != "true":
        return PlainTextResponse(head)

    async def lines() -> AsyncIterator[bytes]:
        yield head.encode()
        for i in range(3):
            await asyncio.sleep(0.01)
            yield f"follow {i}\n".encode()

    return StreamingResponse(lines(), media_type="text/plain")


async def exec_ws(ws: WebSocket) -> None:
    offered = ws.scope.get("subprotocols") or []
    await ws.accept(subprotocol=offered[0] if offered else None)
    command = ws.query_params.getlist("command")
    await ws.send_bytes(b"\x01" + (" ".join(command) + "\n").encode())
    if ws.query_params.get("stdin") == "true":
        while True:
            msg = await ws.receive_bytes()
            if msg[:1] == b"\xff" or (msg[:1] == b"\x00" and len(msg) == 1):
                break
            if msg[:1] == b"\x00":
                await ws.send_bytes(b"\x01" + msg[1:].upper())
                if msg.endswith(b"\n"):
                    break
    if command and command[0] == "fail":
        status = {
            "metadata": {},
            "status": "Failure",
            "message": "command terminated with non-zero exit code: 3",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
        }
    else:
        status = {"metadata": {}, "status": "Success"}
    await ws.send_bytes(b"\x03" + orjson.dumps(status))
    await ws.close()


async def port_forward_ws(ws: WebSocket) -> None:
    """kubelab's /portForward channel protocol, with an upper-casing echo as the pod's port."""
    await ws.accept(subprotocol="portforward.kubelab.io")
    while True:
        msg = await ws.receive_bytes()
        if msg[:1] == b"\x00":
            await ws.send_bytes(b"\x00" + msg[1:].upper())
        elif msg[:2] == b"\xff\x00":
            await ws.send_bytes(b"\xff\x00")
            await ws.close()
            return


def main() -> None:
    port, cert, key, ca = sys.argv[1:5]
    app = Starlette(
        routes=[
            Route("/containerLogs/{ns}/{pod}/{container}", container_logs),
            WebSocketRoute("/exec/{ns}/{pod}/{container}", exec_ws),
            WebSocketRoute("/portForward/{ns}/{pod}", port_forward_ws),
        ]
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(port),
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_ca_certs=ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        ws="wsproto",
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
