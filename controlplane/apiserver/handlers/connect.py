"""The connect verbs: ``pods/log``, and ``pods/exec|attach|portforward`` over WebSocket or SPDY.

Role: kube-apiserver's connect handlers (k8s.io/apiserver/pkg/endpoints/handlers/rest.go,
``ConnectResource``): find the pod, then relay to the kubelet of its node (``proxy_kubelet``).
A plain HTTP request can only fetch logs; exec, attach and port-forward need an upgraded
connection, and the error says which kubectl offers one.

Invariants: a stream is authorized as ``create`` on the subresource (kube-apiserver authorizes
both GET and POST of these as create); a WebSocket refused before ``accept`` gets an HTTP
``Status`` answer where the ASGI server supports it, else a policy-violation close.

Concurrency: one long-running task per stream on the loop; the pod is read on a store thread.
"""

from __future__ import annotations

import logging

import orjson

from controlplane.api import errors
from controlplane.apiserver.auth import RequestAttributes
from controlplane.apiserver.handlers.rest import NOT_FOUND, RequestScope
from controlplane.apiserver.httpio import Receive, Request, Scope, Send
from controlplane.apiserver.requestinfo import CONNECT, RequestInfo, parse_resource_path

log = logging.getLogger(__name__)

_PORTFORWARD_UNSUPPORTED = (
    "port-forward needs a WebSocket with subprotocol SPDY/3.1+portforward.k8s.io (kubectl 1.31 or newer) "
    "or Upgrade: SPDY/3.1 with X-Stream-Protocol-Version: portforward.k8s.io (older kubectl)"
)


async def kubelet_request(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    """An HTTP (not upgraded) request for a connect subresource: logs are relayed, streams refused."""
    if scope.kubelet is None:
        raise errors.ServiceUnavailable("the kubelet proxy is not available in this server")
    assert info.name is not None
    pod = await scope.run(scope.ops.get, info.res, info.namespace, info.name)
    sub = info.subresource
    if sub == "log":
        await scope.kubelet.logs(req, pod, send)
    elif sub == "portforward":
        raise errors.BadRequest(_PORTFORWARD_UNSUPPORTED)
    else:
        raise errors.BadRequest(
            f"{sub} needs a WebSocket upgrade (Sec-WebSocket-Protocol v5.channel.k8s.io or "
            "v4.channel.k8s.io), or a SPDY/3.1 upgrade offering v4.channel.k8s.io; older SPDY is not "
            "supported by kubelab: use kubectl 1.27 or newer"
        )


async def websocket(scope: RequestScope, asgi: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket request: exec, attach or portforward of a pod, relayed to its kubelet."""
    req = Request(asgi, receive)

    async def deny(err: errors.ApiError) -> None:
        # Before accept: an HTTP answer (ASGI websocket denial response where supported).
        body = orjson.dumps(err.to_status())
        try:
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": err.code,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        except Exception:
            await send({"type": "websocket.close", "code": 1008})

    try:
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        scope.authenticate(req)
        info = parse_resource_path(req.path.strip("/").split("/"))
        if info is None or info.subresource not in CONNECT or info.name is None:
            raise errors.NotFound(NOT_FOUND)
        scope.authorize(
            req,
            RequestAttributes(
                verb="create",
                resource="pods",
                subresource=info.subresource or "",
                namespace=info.namespace or "",
                name=info.name,
                path=req.path,
            ),
        )
        if scope.kubelet is None:
            raise errors.ServiceUnavailable("the kubelet proxy is not available in this server")
        pod = await scope.run(scope.ops.get, info.res, info.namespace, info.name)
        scope.metrics.longrunning.inc()
        try:
            if info.subresource == "portforward":
                await scope.kubelet.portforward(req, pod, receive, send)
            else:
                await scope.kubelet.stream(req, pod, info.subresource or "exec", receive, send)
        finally:
            scope.metrics.longrunning.dec()
    except errors.ApiError as e:
        await deny(e)
    except Exception:
        log.exception("internal error serving websocket %s", req.path)
        await deny(errors.ApiError("an internal error occurred; see the server log"))
