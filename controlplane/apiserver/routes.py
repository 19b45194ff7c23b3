"""The request path: every HTTP and WebSocket request, from the ASGI call to the handler that answers it.

Role: kube-apiserver's handler chain in small (k8s.io/apiserver/pkg/server/config.go
``DefaultBuildHandlerChain``, then the ``APIServerHandler``'s mux): ``Router.__call__`` turns any
error into a ``Status`` and records the request metric; ``dispatch`` serves health, the service
account issuer discovery, the aggregator's remote groups, ``/version``, discovery, ``/metrics``
and OpenAPI, then parses a resource path (``requestinfo``), checks the verb, authorizes it, and
calls the verb's handler (``VERB_HANDLERS``, one module per verb family under ``handlers/``).

Invariants:
- Every error is a ``Status`` body with the right code; an unexpected exception is logged with its
  traceback at ERROR and answered with a 500 ``Status`` that carries no traceback. The server stays up.
- Nothing reaches a handler unless authentication and authorization passed.
- The verbs a path accepts are exactly those discovery publishes for it (``request_verb``); any
  other method is a 405 ``MethodNotAllowed``. Decoding is bounded by ``controlplane.api.limits``.

Concurrency: runs on the event loop; handlers send store work to the scope's thread pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from controlplane.api import errors, openapi, openapi_v2, registry
from controlplane.apiserver import discovery
from controlplane.apiserver.auth import RequestAttributes
from controlplane.apiserver.handlers import connect, create, delete, get, patch, update, watch
from controlplane.apiserver.handlers.rest import METHOD_NOT_ALLOWED, NOT_FOUND, RequestScope
from controlplane.apiserver.httpio import JSON, Receive, Request, Scope, Send, send_error, send_json, send_response
from controlplane.apiserver.metrics import Metrics
from controlplane.apiserver.requestinfo import RequestInfo, is_resource_path, parse_resource_path, request_verb
from controlplane.storage.interface import StoreUnavailableError

log = logging.getLogger(__name__)

Handler = Callable[[RequestScope, Request, RequestInfo, Send], Awaitable[None]]

# API verb → handler (kube-apiserver's installer registers one per verb and path,
# k8s.io/apiserver/pkg/endpoints/installer.go ``registerResourceHandlers``).
VERB_HANDLERS: dict[str, Handler] = {
    "list": get.list_resource,
    "watch": watch.watch,
    "deletecollection": delete.delete_collection,
    "create": create.create,
    "get": get.get,
    "update": update.update,
    "patch": patch.patch,
    "delete": delete.delete,
}
# Subresources relayed to a kubelet, and the verb their request metric is recorded under.
_KUBELET_SUBRESOURCES = {"exec": "exec", "attach": "exec", "portforward": "exec", "log": "log"}


class _Started:
    """Wraps ``send`` to know whether the response has begun (then no error body can follow)."""

    __slots__ = ("code", "send", "started")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.code = 0

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.code = int(message["status"])
        await self.send(message)


class Router:
    """The ASGI entry of the API server: one per ``ApiServer``, over its ``RequestScope``."""

    def __init__(self, scope: RequestScope) -> None:
        self.scope = scope

    async def __call__(self, asgi: Scope, receive: Receive, send: Send) -> None:
        if asgi["type"] == "websocket":
            await connect.websocket(self.scope, asgi, receive, send)
            return
        req = Request(asgi, receive)
        out = _Started(send)
        t0 = time.perf_counter()
        verb, resource = req.method.lower(), ""
        try:
            verb, resource = await self.dispatch(req, out)
        except errors.ApiError as e:
            if not out.started:
                if e.code >= 500:
                    log.warning("%s %s → %d %s", req.method, req.path, e.code, e.message)
                else:
                    log.debug("%s %s → %d %s", req.method, req.path, e.code, e.message)
                await send_error(out, e)
        except StoreUnavailableError as e:  # etcd without quorum: a clear 503, no traceback
            log.warning("%s %s → 503 %s", req.method, req.path, e)
            if not out.started:
                await send_error(out, errors.ServiceUnavailable(str(e)))
        except Exception:
            log.exception("internal error serving %s %s", req.method, req.path)
            if not out.started:
                await send_error(out, errors.ApiError("an internal error occurred; see the server log"))
        code = out.code or 500
        if code >= 500:
            log.warning("%s %s%s → %d", req.method, req.path, _qs(asgi), code)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s%s → %d (%.1f ms)", req.method, req.path, _qs(asgi), code, (time.perf_counter() - t0) * 1e3)
        if resource:
            timed = verb not in ("watch", "exec", "log")
            self.scope.metrics.observe_request(verb, resource, code, time.perf_counter() - t0 if timed else None)

    async def dispatch(self, req: Request, send: Send) -> tuple[str, str]:
        """Serve ``req``; (verb, resource) for the request metric ("" resource: not a resource request)."""
        scope = self.scope
        path = req.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            # Public through the system:public-info-viewer binding (system:unauthenticated), as Kubernetes.
            scope.authenticate(req, anonymous=True)
            scope.authorize_path(req)
            if path.startswith("/readyz") and not scope.ready:
                await send_response(send, 503, b"not ready", "text/plain; charset=utf-8")
            elif path.startswith("/readyz") and (why := await scope.store_unhealthy()):
                body = f"[-]etcd failed: {why}\nreadyz check failed\n".encode()  # kube-apiserver's shape
                await send_response(send, 503, body, "text/plain; charset=utf-8")
            else:
                await send_response(send, 200, b"ok", "text/plain; charset=utf-8")
            return "get", ""
        if await scope.serviceaccounts.serve_discovery(req, path, send):  # public, as in Kubernetes
            return "get", ""
        # /version (like /healthz) is public through the system:public-info-viewer binding: without a
        # bearer token the request is system:anonymous and the binding decides; an invalid token is a 401.
        scope.authenticate(req, anonymous=path == "/version")
        if scope.aggregator is not None and await scope.aggregator.handle(req, path, send):
            return req.method.lower(), "apiservices"
        segments = path.strip("/").split("/")
        if not is_resource_path(segments):
            scope.authorize_path(req)  # discovery, OpenAPI, /version, /metrics, unknown paths
            await self.non_resource(req, path, segments, send)
            return "get", ""
        info = parse_resource_path(segments)
        if info is None:
            raise errors.NotFound(NOT_FOUND)
        if info.res in registry.REVIEWS:
            return await create.create_review(scope, req, info, send)
        return await self.resource_request(req, info, send)

    async def non_resource(self, req: Request, path: str, segments: list[str], send: Send) -> None:
        """``/version``, discovery, ``/metrics`` and OpenAPI: GET (or HEAD) only; 404 for any other path."""
        options = self.scope.options
        if path == "/version":
            _only(req, "GET")
            await send_json(send, 200, discovery.version_info(options.git_version))
        elif path in ("/api", "/apis"):
            _only(req, "GET")
            agg = discovery.negotiate_aggregated(req.headers.get("accept", ""))
            core = path == "/api"
            if agg is not None:
                await send_response(send, 200, discovery.aggregated_bytes(core, agg), agg)
            elif core:
                addr = f"{options.advertise_address}:{options.secure_port}"
                await send_json(send, 200, discovery.api_versions(addr))
            else:
                await send_json(send, 200, discovery.api_group_list())
        elif path == "/metrics":
            _only(req, "GET")
            metrics = self.scope.metrics
            for resource in {r.plural for r in registry.RESOURCES}:
                metrics.watchers.labels(resource)  # make the series exist
            await send_response(send, 200, metrics.render(), Metrics.CONTENT_TYPE)
        elif path == "/openapi/v2" or path == "/swagger-2.0.0.pb-v1":
            _only(req, "GET")
            # built once (about a second) off the event loop, then cached
            if path == "/openapi/v2" and openapi_v2.wants_json(req.headers.get("accept", "")):
                body = await self.scope.run(openapi_v2.document_bytes)
                ctype, tag = "application/json", openapi_v2.etag()
            else:
                body = await self.scope.run(openapi.v2_protobuf)
                ctype, tag = openapi.V2_CONTENT_TYPE, openapi.v2_etag()
            if req.headers.get("if-none-match", "") == tag:  # kube-openapi's handler: 304 on a match
                await send_response(send, 304, b"", ctype, [(b"etag", tag.encode())])
            else:
                await send_response(send, 200, body, ctype, [(b"etag", tag.encode())])
        elif path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            _only(req, "GET")
            await self.openapi_v3(path, send)
        elif len(segments) == 2 and segments[0] == "api":
            _only(req, "GET")
            doc = discovery.resource_list("", segments[1])
            if doc is None:
                raise errors.NotFound(NOT_FOUND)
            await send_json(send, 200, doc)
        elif segments[0] == "apis" and len(segments) in (2, 3):
            _only(req, "GET")
            doc = (
                discovery.api_group(segments[1])
                if len(segments) == 2
                else discovery.resource_list(segments[1], segments[2])
            )
            if doc is None:
                raise errors.NotFound(NOT_FOUND)
            await send_json(send, 200, doc)
        else:
            raise errors.NotFound(NOT_FOUND)

    async def openapi_v3(self, path: str, send: Send) -> None:
        if path == "/openapi/v3":
            await send_json(send, 200, openapi.v3_root())
            return
        doc = openapi.v3_document(path[len("/openapi/v3/") :])
        if doc is None:
            raise errors.NotFound(NOT_FOUND)
        body = await self.scope.run(orjson.dumps, doc)
        await send_response(send, 200, body, JSON)

    async def resource_request(self, req: Request, info: RequestInfo, send: Send) -> tuple[str, str]:
        """A resource path: the verb (405 if not served there), authorization, then the verb's handler."""
        res, sub, method = info.res, info.subresource, req.method
        if method == "HEAD":
            method = "GET"
        verb = request_verb(info, method, req.q_bool("watch"))
        if verb is None:
            raise errors.MethodNotAllowed(METHOD_NOT_ALLOWED)
        self.scope.authorize(
            req,
            RequestAttributes(
                verb=verb,
                group=res.group,
                resource=res.plural,
                subresource=sub or "",
                namespace=info.namespace or "",
                name=info.name or "",
                path=req.path,
            ),
        )
        metric_res = f"{res.plural}/{sub}" if sub else res.plural
        if res is registry.COMPONENTSTATUSES:
            await get.component_statuses(self.scope, req, info, send)
            return verb, metric_res
        if sub in _KUBELET_SUBRESOURCES:
            await connect.kubelet_request(self.scope, req, info, send)
            return _KUBELET_SUBRESOURCES[sub], metric_res
        await VERB_HANDLERS[verb](self.scope, req, info, send)
        return verb, metric_res


def _only(req: Request, *methods: str) -> None:
    if req.method not in methods and not (req.method == "HEAD" and "GET" in methods):
        raise errors.MethodNotAllowed(METHOD_NOT_ALLOWED)


def _qs(asgi: Scope) -> str:
    qs = asgi.get("query_string", b"")
    return "?" + qs.decode("latin-1") if qs else ""
