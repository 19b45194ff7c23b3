"""Proxy ``pods/log`` and ``pods/exec|attach`` to the kubelet of the pod's node.

Role: the API server is the only door into the cluster, so ``kubectl logs`` and ``kubectl exec``
reach a container through it: the server finds the pod's node, connects to that node's kubelet API
at ``https://<node InternalIP>:<status.daemonEndpoints.kubeletEndpoint.Port>`` presenting the
``apiserver-kubelet-client`` certificate, and relays bytes both ways.

Kubelet paths are the real kubelet's:
- ``GET /containerLogs/{namespace}/{pod}/{container}?follow=&tailLines=&timestamps=&sinceSeconds=…``
  (text/plain, chunked when following) — relayed as a streaming HTTP response;
- ``GET /exec/{namespace}/{pod}/{container}?command=…&stdin=&stdout=&stderr=&tty=`` and
  ``/attach/{namespace}/{pod}/{container}?…`` as WebSocket with subprotocol ``v5.channel.k8s.io`` or
  ``v4.channel.k8s.io`` — relayed message by message (the channel byte is untouched, so the
  stream protocol between kubectl and the kubelet is end-to-end: stdin 0, resize 4 and
  close-stdin 255 reach the kubelet as sent, and the ``stdin``/``stdout``/``stderr``/``tty`` flags
  are forwarded, which is all ``kubectl exec -it`` and ``kubectl attach -it`` need; see
  tests/privileged/noded/test_tty.py).

``pods/portforward`` (kubectl ≥1.31: SPDY/3.1 inside a WebSocket; ≤1.30: raw SPDY, presented as the
same WebSocket by ``spdy_upgrade``) is served by ``portforward``.

Raw SPDY exec/attach (kubectl ≤1.29, or any kubectl's fallback) cannot be served from ASGI itself:
``spdy_upgrade`` takes the connection over and presents it as subprotocol ``SPDY/3.1+v4.channel.k8s.io``;
``stream`` then dials the kubelet as usual and ``spdy_exec.relay`` maps SPDY streams to channels.
SPDY offering only v3 or older gets a 400 ``Status`` saying so.

Invariants: the kubelet's answer is relayed as is (a kubelet error ``Status`` reaches the client);
a kubelet that cannot be reached gives 503 (logs) or a channel-3 ``Status`` (exec). Closing either
side closes the other.

Concurrency: everything runs on the server's event loop; each relay is two tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
import websockets
from websockets.typing import Subprotocol

from controlplane.api import errors
from controlplane.apiserver import portforward, portforward_ws, spdy_exec
from controlplane.apiserver.httpio import Receive, Request, Send
from controlplane.apiserver.options import ServerOptions

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
_LOG_PARAMS = ("follow", "tailLines", "timestamps", "sinceSeconds", "sinceTime", "limitBytes", "previous")
_EXEC_PARAMS = ("stdin", "stdout", "stderr", "tty")

NodeLookup = Callable[[str], Awaitable[Obj | None]]


def pick_container(pod: Obj, requested: str) -> str:
    """The container to talk to: the requested one, or the only one (or kubectl's annotation default)."""
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or [] if isinstance(c, dict)]
    names += [c.get("name") for c in spec.get("initContainers") or [] if isinstance(c, dict)]
    name = pod["metadata"]["name"]
    if requested:
        if requested not in names:
            raise errors.BadRequest(f"container {requested} is not valid for pod {name}")
        return requested
    default = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if default in names:
        return str(default)
    main = [c.get("name") for c in spec.get("containers") or [] if isinstance(c, dict)]
    if len(main) == 1:
        return str(main[0])
    raise errors.BadRequest(
        f"a container name must be specified for pod {name}, choose one of: [{' '.join(str(n) for n in main)}]"
    )


def kubelet_address(node: Obj, default_port: int) -> tuple[str, int]:
    status = node.get("status") or {}
    addrs = status.get("addresses") or []
    ip = next((a.get("address") for a in addrs if a.get("type") == "InternalIP"), None)
    ip = ip or next((a.get("address") for a in addrs if a.get("type") == "Hostname"), None)
    if not ip:
        raise errors.ServiceUnavailable(f"node {node['metadata']['name']} has no InternalIP address")
    port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or default_port
    return str(ip), int(port)


class KubeletProxy:
    def __init__(self, options: ServerOptions, node_lookup: NodeLookup | None = None) -> None:
        self.options = options
        self.node_lookup = node_lookup
        ctx = ssl.create_default_context(cafile=str(options.kubelet_ca)) if options.kubelet_ca else None
        if ctx is None:
            # Kubelets serve self-signed certificates unless given one by the cluster CA; like
            # kube-apiserver without --kubelet-certificate-authority, do not verify them.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if options.kubelet_client_cert and options.kubelet_client_key:
            ctx.load_cert_chain(str(options.kubelet_client_cert), str(options.kubelet_client_key))
        self.ssl = ctx
        self.http = httpx.AsyncClient(verify=ctx, timeout=httpx.Timeout(10.0, read=None))

    async def close(self) -> None:
        await self.http.aclose()

    async def _target(self, pod: Obj) -> tuple[str, int]:
        node_name = (pod.get("spec") or {}).get("nodeName")
        name = pod["metadata"]["name"]
        if not node_name:
            raise errors.BadRequest(f"pod {name} is not scheduled to a node yet")
        if self.node_lookup is None:
            raise errors.ServiceUnavailable("no node lookup configured")
        node = await self.node_lookup(node_name)
        if node is None:
            raise errors.ServiceUnavailable(f'node "{node_name}" of pod {name} not found')
        return kubelet_address(node, self.options.kubelet_port)

    # -- logs ------------------------------------------------------------------------------

    async def logs(self, req: Request, pod: Obj, send: Send) -> None:
        container = pick_container(pod, req.q("container"))
        host, port = await self._target(pod)
        md = pod["metadata"]
        params = {k: req.q(k) for k in _LOG_PARAMS if req.q(k)}
        url = f"https://{_host(host)}:{port}/containerLogs/{quote(md['namespace'])}/{quote(md['name'])}/{quote(container)}"
        try:
            upstream = await self.http.send(self.http.build_request("GET", url, params=params), stream=True)
        except httpx.HTTPError as e:
            raise errors.ServiceUnavailable(f"error dialing the kubelet at {host}:{port}: {e}") from None
        try:
            if upstream.status_code != 200:
                body = await upstream.aread()
                raise _status_from(upstream.status_code, body)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"cache-control", b"no-cache, private")],
                }
            )
            disconnected = asyncio.Event()

            async def watch_disconnect() -> None:
                while True:
                    msg = await req.receive()
                    if msg["type"] == "http.disconnect":
                        disconnected.set()
                        return

            watcher = asyncio.ensure_future(watch_disconnect())
            try:
                it = upstream.aiter_raw()
                while not disconnected.is_set():
                    nxt = asyncio.ensure_future(anext(it, None))
                    done, _ = await asyncio.wait({nxt, watcher}, return_when=asyncio.FIRST_COMPLETED)
                    if nxt not in done:
                        nxt.cancel()
                        break
                    chunk = nxt.result()
                    if chunk is None:
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError as e:
                log.info("kubelet log stream ended: %s", e)
            finally:
                watcher.cancel()
                with contextlib.suppress(BaseException):
                    await watcher
            if not disconnected.is_set():
                await send({"type": "http.response.body", "body": b""})
        finally:
            await upstream.aclose()

    # -- exec / attach -----------------------------------------------------------------------

    async def stream(self, req: Request, pod: Obj, sub: str, receive: Receive, send: Send) -> None:
        offered = [str(p) for p in req.scope.get("subprotocols") or []]
        over_spdy = spdy_exec.SUBPROTOCOL in offered  # raw SPDY, taken over by spdy_upgrade
        chosen = "v5.channel.k8s.io" if over_spdy else next((p for p in offered if p in SUBPROTOCOLS), None)
        if chosen is None:
            raise errors.BadRequest(
                f"unsupported streaming protocol {offered or 'none'}: kubelab speaks "
                f"{' and '.join(SUBPROTOCOLS)} over WebSocket (kubectl 1.30 or newer)"
            )
        container = pick_container(pod, req.q("container"))
        host, port = await self._target(pod)
        md = pod["metadata"]
        query: list[tuple[str, str]] = [("command", c) for c in req.query.get("command", [])]
        query += [(k, req.q(k)) for k in _EXEC_PARAMS if req.q(k)]
        if sub == "exec" and not req.query.get("command"):
            raise errors.BadRequest("you must specify at least one command for the container")
        url = (
            f"wss://{_host(host)}:{port}/{sub}/{quote(md['namespace'])}/{quote(md['name'])}/{quote(container)}"
            f"?{urlencode(query)}"
        )
        try:
            upstream = await websockets.connect(
                url,
                subprotocols=[Subprotocol(chosen)],
                ssl=self.ssl,
                max_size=None,
                open_timeout=10,
            )
        except Exception as e:
            if over_spdy:
                raise errors.ServiceUnavailable(f"error dialing the kubelet at {host}:{port}: {e}") from None
            await send({"type": "websocket.accept", "subprotocol": chosen})
            status = errors.ServiceUnavailable(f"error dialing the kubelet at {host}:{port}: {e}").to_status()
            await send({"type": "websocket.send", "bytes": b"\x03" + orjson.dumps(status)})
            await send({"type": "websocket.close", "code": 1000})
            return
        if over_spdy:
            await send({"type": "websocket.accept", "subprotocol": spdy_exec.SUBPROTOCOL})
            flags = [req.q_bool(k) for k in ("stdin", "stdout", "stderr", "tty")]
            await spdy_exec.relay(upstream, receive, send, spdy_exec.expected_streams(*flags))
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol or chosen})

        client_gone = False

        async def client_to_kubelet() -> None:
            nonlocal client_gone
            while True:
                msg = await receive()
                if msg["type"] == "websocket.disconnect":
                    client_gone = True
                    return
                data = msg.get("bytes")
                if data is None and msg.get("text") is not None:
                    data = msg["text"].encode()
                if data is not None:
                    try:
                        await upstream.send(data)
                    except websockets.ConnectionClosed:
                        # The kubelet ended the session while the client still wrote (kubectl's
                        # stdin EOF racing the exit status): what it sent still flows down.
                        return

        async def kubelet_to_client() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for data in upstream:
                    payload = data if isinstance(data, bytes) else data.encode()
                    await send({"type": "websocket.send", "bytes": payload})

        up = asyncio.ensure_future(client_to_kubelet())
        down = asyncio.ensure_future(kubelet_to_client())
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            if not client_gone:
                if not down.done():
                    # the upstream is closing: deliver its last frames (the status on channel 3)
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(down), timeout=5)
                # kubelet finished (it sent the status on channel 3): close the client side.
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1000})
        finally:
            for t in (up, down):
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
            await upstream.close()

    # -- port-forward ------------------------------------------------------------------------

    async def portforward(self, req: Request, pod: Obj, receive: Receive, send: Send) -> None:
        """kubectl's SPDY session runs here (``portforward``); each connection is its own kubelet
        ``/portForward`` WebSocket."""
        offered = [str(p) for p in req.scope.get("subprotocols") or []]
        md = pod["metadata"]
        if portforward.SUBPROTOCOL not in offered:
            # Kubernetes' WebSocket channel protocol (the Python client): portforward_ws.
            chosen = portforward_ws.choose_subprotocol(offered)
            if chosen is None:
                wanted = f"{portforward.SUBPROTOCOL} or {portforward_ws.V4_BINARY}"
                raise errors.BadRequest(f"port-forward needs the WebSocket subprotocol {wanted}")
            ports = portforward_ws.ports_from_query(req.query)
            host, port = await self._target(pod)
            base = f"wss://{_host(host)}:{port}/portForward/{quote(md['namespace'])}/{quote(md['name'])}"
            await send({"type": "websocket.accept", "subprotocol": chosen or None})
            dial = portforward.kubelet_dialer(base, self.ssl, md["name"])
            await portforward_ws.serve(receive, send, ports, dial, md["name"])
            return
        host, port = await self._target(pod)
        base = f"wss://{_host(host)}:{port}/portForward/{quote(md['namespace'])}/{quote(md['name'])}"
        await send({"type": "websocket.accept", "subprotocol": portforward.SUBPROTOCOL})
        await portforward.serve(receive, send, portforward.kubelet_dialer(base, self.ssl, md["name"]), md["name"])


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _status_from(code: int, body: bytes) -> errors.ApiError:
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            return errors.from_status(code, doc)
    except orjson.JSONDecodeError:
        pass
    text = body.decode(errors="replace").strip() or f"kubelet answered {code}"
    cls: type[errors.ApiError] = {404: errors.NotFound, 400: errors.BadRequest}.get(code, errors.ServiceUnavailable)
    return cls(text)
