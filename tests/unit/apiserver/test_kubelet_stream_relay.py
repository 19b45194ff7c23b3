"""The exec/attach relay between kubectl and the kubelet: the kubelet's last frames always arrive.

The race this pins down: kubectl's stdin EOF (``[255, 0]``) reaches the API server just after the
kubelet sent the exit status and closed. Sending to the closed upstream fails first; the relay must
still deliver the status frame that is on its way down and then close the client side with 1000,
never drop the connection (kubectl: "close 1006 (abnormal closure)").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.frames import Close

from controlplane.apiserver import proxy_kubelet
from controlplane.apiserver.httpio import Request
from controlplane.apiserver.options import ServerOptions

STATUS = b'\x03{"metadata":{},"status":"Success"}'


class ClosingUpstream:
    """A kubelet WebSocket that is already closing: sends fail, its last frame is still in flight."""

    subprotocol = "v5.channel.k8s.io"

    def __init__(self) -> None:
        self.send_failed = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self.send_failed.set()
        raise websockets.ConnectionClosedOK(Close(1000, ""), Close(1000, ""), True)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[bytes]:
        # the status is delivered only after the client's write has already failed
        await self.send_failed.wait()
        await asyncio.sleep(0)
        yield STATUS

    async def close(self) -> None:
        return None


def test_status_after_a_failed_stdin_write_is_delivered_and_closed_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = ClosingUpstream()

    async def fake_connect(*args: Any, **kwargs: Any) -> ClosingUpstream:
        return upstream

    monkeypatch.setattr(proxy_kubelet.websockets, "connect", fake_connect)
    sent: list[dict[str, Any]] = []

    async def run() -> None:
        proxy = proxy_kubelet.KubeletProxy(ServerOptions())

        async def node_lookup(name: str) -> dict[str, Any]:
            return {
                "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]},
            }

        proxy.node_lookup = node_lookup
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "websocket.receive", "bytes": b"\xff\x00"})  # kubectl's stdin EOF

        async def receive() -> dict[str, Any]:
            return await inbox.get()  # then nothing more until the server closes

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)

        scope = {
            "type": "websocket",
            "path": "/api/v1/namespaces/default/pods/solo/exec",
            "query_string": b"command=cat&stdin=true&stdout=true",
            "subprotocols": ["v5.channel.k8s.io"],
        }
        pod = {
            "metadata": {"namespace": "default", "name": "solo"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
        }
        await asyncio.wait_for(proxy.stream(Request(scope, receive), pod, "exec", receive, send), timeout=10)
        await proxy.close()

    asyncio.run(run())
    kinds = [m["type"] for m in sent]
    assert kinds == ["websocket.accept", "websocket.send", "websocket.close"], sent
    assert sent[1]["bytes"] == STATUS
    assert sent[2]["code"] == 1000
