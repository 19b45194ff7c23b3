"""The API server application: ``create_app(store, options=...) -> FastAPI``.

Role: route every HTTP and WebSocket request the way kube-apiserver does — health, version,
discovery, OpenAPI, metrics, and ``/api/v1/...`` / ``/apis/<group>/<version>/...`` resource paths
(namespaced and cluster-scoped, with subresources) — authenticate and authorize it, and hand it
to the generic resource operations (``resources.py``), the watch machinery (``watch.py``) or the
kubelet proxy (``proxy_kubelet.py``).

Why raw ASGI inside FastAPI: the app is a FastAPI instance (lifespan, and a familiar shell), but one
ASGI middleware answers every request itself. Per-request routing objects, pydantic models and
dependency injection cost more than the whole create path; here a request is parsed once, the
store work and the JSON encoding run on a thread pool, and responses are orjson bytes. Creates
skip the pool (every store has ``create_nowait``): their CPU work runs on the loop and only the
write leaves it — on sqlite to the store's committer thread, which batches every create waiting,
on etcd to the store's own writer threads — so there is no GIL hand-off per request (what makes
the latency tail of a Python server under load).

Invariants:
- Every error is a ``Status`` body with the right code; an unexpected exception is logged with its
  traceback at ERROR and answered with a 500 ``Status`` that carries no traceback. The server stays up.
- Nothing is written to the store unless authentication, authorization, decoding and admission
  all passed.
- The verbs a path accepts are exactly those discovery publishes for it (``request_verb``: one
  table, ``Resource.verbs`` and the subresource verbs); any other method is a 405
  ``MethodNotAllowed``. Decoding is bounded by ``controlplane.api.limits``.

Concurrency: request handlers run on the event loop; store calls run on a ``ThreadPoolExecutor``
(``options.store_threads``), except ``create_nowait`` writes, whose callbacks come back to the
loop with ``call_soon_threadsafe``; watch streams are asyncio tasks fed by the watch cache.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI

from controlplane.api import errors, limits, openapi, openapi_v2, registry, tables
from controlplane.api.fields import check_field_selector, field_set
from controlplane.api.meta import now_rfc3339, parse_time
from controlplane.api.registry import Resource
from controlplane.api.selectors import FieldSelector, LabelSelector
from controlplane.apiserver import componentstatus, discovery, evictions, priority_admission
from controlplane.apiserver.admission import REQUEST_USER, Admission
from controlplane.apiserver.aggregator import Aggregator
from controlplane.apiserver.allocators import ServiceAllocators
from controlplane.apiserver.auth import ANONYMOUS, Authenticator, RequestAttributes, TokenFile
from controlplane.apiserver.authz.wiring import Authorization
from controlplane.apiserver.endpointreconciler import LeaseEndpointReconciler, endpoints_objects
from controlplane.apiserver.fieldmanager import field_manager
from controlplane.apiserver.httpio import (
    JSON,
    Receive,
    Request,
    Scope,
    Send,
    decode_body,
    send_error,
    send_json,
    send_response,
)
from controlplane.apiserver.listers import AdmissionLister
from controlplane.apiserver.metrics import Metrics
from controlplane.apiserver.options import ServerOptions
from controlplane.apiserver.proxy_kubelet import KubeletProxy
from controlplane.apiserver.resources import Obj, PendingCreate, ResourceOps, conflict
from controlplane.apiserver.serviceaccounts import ServiceAccounts
from controlplane.apiserver.watch import Feeds, LineCache, WatchRequest, serve_watch
from controlplane.apiserver.watchcache import WatchCache
from controlplane.storage.interface import ConflictError, KeyExistsError, NowaitCreates, Store, StoreUnavailableError

log = logging.getLogger(__name__)
T = TypeVar("T")

_NS_SUBRESOURCES = ("status", "finalize")
_APPLY = "application/apply-patch+yaml"
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
_NOT_FOUND = "the server could not find the requested resource"
# Create bodies up to this size are handled on the event loop (see ``create``); bigger ones on the
# thread pool, so decoding a multi-megabyte body never holds up every other request ...
_INLINE_BODY_MAX = 64 * 1024
# ... and only JSON (orjson decodes it in microseconds; YAML is parsed in pure Python).
_INLINE_TYPES = ("application/json", "")
_PORTFORWARD_UNSUPPORTED = (
    "port-forward needs a WebSocket with subprotocol SPDY/3.1+portforward.k8s.io (kubectl 1.31 or newer) "
    "or Upgrade: SPDY/3.1 with X-Stream-Protocol-Version: portforward.k8s.io (older kubectl)"
)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")


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


# HTTP method → API verb, on a collection path and on an object path (kube-apiserver's
# RequestInfoFactory, k8s.io/apiserver/pkg/endpoints/request/requestinfo.go). Which of those verbs
# a path then accepts comes from one table only: the resource's discovery ``verbs``
# (``registry.Resource.verbs``) and the subresource verbs discovery publishes.
_COLLECTION_VERBS = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}
_OBJECT_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}
# Subresources served over a streaming connection: kube-apiserver authorizes both GET and POST
# of exec/attach/portforward as "create" (they are connect verbs).
_CONNECT = ("exec", "attach", "portforward")
# What an all-namespaces path (``/api/v1/pods`` for a namespaced kind) accepts: reads only.
# kube-apiserver registers create and deletecollection only under ``/namespaces/{ns}/``, so
# ``DELETE /api/v1/configmaps`` is a 405 there, never "every ConfigMap in every namespace".
_ALL_NAMESPACES_VERBS = ("list", "watch")
# genericapiserver's answer to a method a path does not accept (``NewGenericServerResponse`` for
# 405, k8s.io/apimachinery/pkg/api/errors/errors.go): this exact message, reason MethodNotAllowed.
_METHOD_NOT_ALLOWED = "the server does not allow this method on the requested resource"


def request_verb(route: Route, method: str, watch: bool) -> str | None:
    """The API verb of ``method`` on ``route``, or None when Kubernetes does not serve it there (405)."""
    res, sub = route.res, route.subresource
    if route.name is None:
        verb = _COLLECTION_VERBS.get(method)
        if verb == "list" and watch:
            verb = "watch"
        if res.namespaced and route.namespace is None and verb not in _ALL_NAMESPACES_VERBS:
            return None
        return verb if verb in res.verbs else None
    if sub is None:
        verb = _OBJECT_VERBS.get(method)
        return verb if verb in res.verbs and verb != "create" else None
    if sub in _CONNECT:
        return "create" if method in ("GET", "POST") else None
    verb = _OBJECT_VERBS.get(method)
    return verb if verb in discovery.subresource_verbs(sub) and sub in _SERVED_SUBRESOURCES else None


# Subresources this server implements (discovery lists no more than these).
_SERVED_SUBRESOURCES = ("status", "scale", "binding", "eviction", "log", "finalize", "token", *_CONNECT)


class Route:
    """A parsed resource path."""

    __slots__ = ("name", "namespace", "res", "subresource")

    def __init__(self, res: Resource, namespace: str | None, name: str | None, subresource: str | None) -> None:
        self.res = res
        self.namespace = namespace
        self.name = name
        self.subresource = subresource


def parse_resource_path(segments: list[str]) -> Route | None:
    """``["api","v1","namespaces","default","pods","web"]`` → Route; None when not a resource path."""
    if not segments:
        return None
    if segments[0] == "api" and len(segments) >= 3:
        group, version, rest = "", segments[1], segments[2:]
    elif segments[0] == "apis" and len(segments) >= 4:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NS_SUBRESOURCES:
        namespace = rest[1]
        rest = rest[2:]
    if len(rest) > 3 or not all(rest):
        return None
    res = registry.lookup(group, version, rest[0])
    if res is None:
        return None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if namespace is not None and not res.namespaced:
        return None
    if res.namespaced and name is not None and namespace is None:
        return None
    if sub is not None and sub not in res.subresources:
        return None
    return Route(res, namespace, name, sub)


class ApiServer:
    """One API server over one store (the ASGI callable behind ``create_app``)."""

    def __init__(self, store: Store, options: ServerOptions) -> None:
        self.store = store
        self.options = options
        self.pool = ThreadPoolExecutor(max_workers=options.store_threads, thread_name_prefix="store")
        self.metrics = Metrics()
        self.allocators = ServiceAllocators(options.service_cluster_ip_range, options.service_node_port_range)
        self.admission = Admission(store, self.allocators)
        self.ops = ResourceOps(store, self.admission)
        # Stores that queue a create without blocking: the request needs no thread of its own.
        self.nowait: NowaitCreates | None = store if isinstance(store, NowaitCreates) else None
        self.watch_cache = WatchCache(store, prefix="/registry/", window=options.watch_cache_window)
        self.feeds = Feeds(self.watch_cache, options.watch_max_pending)
        self.lines = LineCache()
        tokens = TokenFile.load(options.token_auth_file) if options.token_auth_file else None
        self.authn = Authenticator(tokens, options.peer_identities, options.anonymous_auth)
        # ServiceAccount tokens: TokenRequest, issuer discovery, JWT authentication, admission.
        self.serviceaccounts = ServiceAccounts(store, options)
        self.authn.service_account_tokens = self.serviceaccounts.verifier
        self.admission.service_accounts = "ServiceAccount" not in options.disable_admission_plugins
        self.authorization = Authorization(options, self.authn)
        self.authz = self.authorization.authorizer
        self.admission.plugins.extend(self.authorization.admission_plugins())
        self.kubelet: Any = None
        self.aggregator: Any = None  # aggregator.Aggregator once started (APIServices, /apis/<remote group>)
        self.compactor: Any = None
        self.namespaces: dict[str, Obj] = {}
        self._ns_revs: dict[str, int] = {}
        self._ns_lock = threading.Lock()
        self._ns_task: asyncio.Future[None] | None = None
        self._event_task: asyncio.Future[None] | None = None
        self.stopping: asyncio.Event | None = None
        self.ready = False
        self._health: str | None = None
        self.endpoint_reconciler: Any = None  # LeaseEndpointReconciler with --endpoint-reconciler-type=lease
        self._reconcile_task: asyncio.Future[None] | None = None
        self._health_at = -1e9

    async def store_unhealthy(self) -> str | None:
        """Why the store cannot serve (the readyz ``etcd`` check), None if it can; one probe a second."""
        probe = getattr(self.store, "health", None)
        if probe is None:
            return None
        now = time.monotonic()
        if now - self._health_at >= 1.0:
            self._health_at = now
            self._health = await asyncio.get_running_loop().run_in_executor(None, probe)
        return self._health

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        # The request's context (its user, for user-aware admission) goes along to the store thread.
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.pool, ctx.run, fn, *args)

    async def startup(self) -> None:
        self.stopping = asyncio.Event()
        await self.run(self.allocators.rebuild, self.store)
        await self.run(self.watch_cache.start)  # pre-fills its ring from the store's history

        async def node_lookup(name: str) -> Obj | None:
            try:
                return await self.run(self.ops.get, registry.NODES, None, name)
            except errors.NotFound:
                return None

        self.kubelet = KubeletProxy(self.options, node_lookup)
        self.aggregator = Aggregator(self).start()
        if self.options.bootstrap:
            await self.run(self.bootstrap)
            if self.endpoint_reconciler is not None:
                self._reconcile_task = asyncio.ensure_future(self.endpoint_reconciler.run(self.run))
            await self.run(self.authorization.bootstrap, self.ops)
        await self._start_namespace_cache()
        # quotas, LimitRanges, PriorityClasses for admission from memory (on etcd: 3 round trips a pod)
        lister = AdmissionLister()
        loop = asyncio.get_running_loop()
        await lister.start(lambda p: self.run(self.store.list, p), lambda p, rev: self.feeds.subscribe(p, rev, loop))
        self.admission.lister = lister
        await self.authorization.start(self.store, self.run, self.feeds)
        if self.options.event_ttl > 0:
            self._event_task = asyncio.ensure_future(self._expire_events())
        if self.options.compaction_interval > 0:
            from controlplane.storage.compactor import Compactor

            compactor = Compactor(self.store, self.options.compaction_interval).start()
            self.compactor = compactor
            self.metrics.compacted_revision.set_function(lambda: compactor.last_compacted)
        self.ready = True
        if self.options.on_started is not None:
            self.options.on_started()

    async def _start_namespace_cache(self) -> None:
        """Keep every Namespace in memory (fed by the watch cache) for namespace-lifecycle admission.

        Saves a store read per create (a network round trip on etcd). A namespace the cache has
        not seen yet is still looked up in the store, so a create right after its namespace's
        creation works; the cache is only ever behind by the watch delay.
        """
        items, rev = await self.run(self.ops.list, registry.NAMESPACES, None, None)
        self.namespaces = {o["metadata"]["name"]: o for o in items}
        sub = self.feeds.subscribe(registry.NAMESPACES.storage_prefix(), rev, asyncio.get_running_loop())

        async def follow() -> None:
            try:
                while True:
                    batch = await sub.next(5.0)
                    if batch is None:
                        return
                    for ev in batch:
                        try:
                            obj = ev.obj
                        except ValueError:
                            continue  # not a JSON object (the watch cache logged it)
                        self._namespace_seen(obj, ev.type == "DELETED")
            finally:
                sub.close()
                self.ops.on_namespace_change = None
                self.namespaces = {}  # stale from now on: fall back to the store

        self._ns_task = asyncio.ensure_future(follow())
        self.ops.on_namespace_change = self._namespace_seen

        def lookup(name: str) -> Obj | None:
            return self.namespaces.get(name) or self.ops._namespace(name)

        self.admission.set_namespace_lookup(lookup)

    def _namespace_seen(self, obj: Obj, deleted: bool) -> None:
        """Apply a namespace change (from this server's own write or the watch), newest wins."""
        with self._ns_lock:
            name = obj["metadata"]["name"]
            rev = int(obj["metadata"].get("resourceVersion") or 0)
            known = self._ns_revs.get(name, 0)
            if rev < known:
                return  # an older event arriving after a newer write-through
            self._ns_revs[name] = rev
            if deleted:
                self.namespaces.pop(name, None)
            else:
                self.namespaces[name] = obj

    async def _expire_events(self) -> None:
        """Delete Events older than ``event_ttl`` (etcd leases do this in kube-apiserver)."""
        ttl = self.options.event_ttl
        interval = min(60.0, max(ttl / 4, 0.5))
        while True:
            await asyncio.sleep(interval)
            try:
                n = await self.run(expire_events, self.ops, ttl, time.time())
                if n:
                    log.info("deleted %d expired events", n)
            except Exception:
                log.warning("expiring events failed", exc_info=True)

    def begin_shutdown(self) -> None:
        """The HTTP server stops accepting: end watch streams now (call on the event loop)."""
        self.ready = False
        if self.stopping is not None:
            self.stopping.set()

    async def shutdown(self) -> None:
        self.begin_shutdown()
        if self._event_task is not None:
            self._event_task.cancel()
        if self._reconcile_task is not None:
            self._reconcile_task.cancel()
            await self.run(self.endpoint_reconciler.remove)  # peers drop us now, not after the TTL
        if self._ns_task is not None:
            self._ns_task.cancel()
        self.authorization.stop()
        if self.compactor is not None:
            await self.run(self.compactor.stop)
        await self.run(self.watch_cache.stop)
        if self.kubelet is not None:
            await self.kubelet.close()
        if self.aggregator is not None:
            await self.aggregator.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def bootstrap(self) -> None:
        """The namespaces every cluster has, and the ``kubernetes`` Service (idempotent)."""
        for ns in SYSTEM_NAMESPACES:
            try:
                self.ops.create(registry.NAMESPACES, None, {"metadata": {"name": ns}})
            except errors.AlreadyExists:
                pass
        for pc in priority_admission.system_classes():
            try:
                self.ops.create(registry.PRIORITYCLASSES, None, pc)
            except errors.AlreadyExists:
                pass
        port = self.options.secure_port
        svc = {
            "metadata": {
                "name": "kubernetes",
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": _first_service_ip(self.options.service_cluster_ip_range),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
                "sessionAffinity": "None",
            },
        }
        try:
            self.ops.create(registry.SERVICES, "default", svc)
        except errors.AlreadyExists:
            pass
        except errors.ApiError as e:
            log.warning("could not create the kubernetes Service: %s", e.message)
        # default/kubernetes Endpoints + EndpointSlice: every live API server (endpointreconciler.py)
        if self.options.endpoint_reconciler_type == "lease":
            self.endpoint_reconciler = LeaseEndpointReconciler(
                self.store, self._write_kubernetes_endpoints, self.options.advertise_address, port,
                ttl=self.options.endpoint_reconciler_ttl,
            )  # fmt: skip
            self.endpoint_reconciler.reconcile()

    def _write_kubernetes_endpoints(self, ips: list[str]) -> None:
        ep, eps = endpoints_objects(ips, self.options.secure_port)
        self._ensure(registry.ENDPOINTS, ep, ("subsets",))
        self._ensure(registry.ENDPOINTSLICES, eps, ("endpoints", "ports"))

    def _ensure(self, res: Resource, obj: Obj, fields: tuple[str, ...]) -> None:
        """Create ``obj``, or bring ``fields`` of the existing one up to date (restarts, new address)."""
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace")
        try:
            self.ops.create(res, ns, obj)
        except errors.AlreadyExists:
            current = self.ops.get(res, ns, name)
            if any(current.get(f) != obj[f] for f in fields):
                current.update({f: obj[f] for f in fields})
                self.ops.update(res, ns, name, current)

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.handle_websocket(scope, receive, send)
            return
        req = Request(scope, receive)
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
            log.warning("%s %s%s → %d", req.method, req.path, _qs(scope), code)
        elif log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s%s → %d (%.1f ms)", req.method, req.path, _qs(scope), code, (time.perf_counter() - t0) * 1e3
            )
        if resource:
            timed = verb not in ("watch", "exec", "log")
            self.metrics.observe_request(verb, resource, code, time.perf_counter() - t0 if timed else None)

    def authenticate(self, req: Request, anonymous: bool = False) -> None:
        """Who is calling (401 without valid credentials); ``anonymous``: no credentials is system:anonymous.

        Impersonation headers are applied here (checked with the ``impersonate`` verb), and the
        resulting user is put in the request's context for user-aware admission.
        """
        user = self.authn.authenticate(req.headers.get("authorization"), req.client)
        if user is None:
            # Only a bearer token is a login attempt; Basic auth (which nobody authenticates) is anonymous.
            if not anonymous or req.headers.get("authorization", "")[:7].lower() == "bearer ":
                raise errors.Unauthorized("Unauthorized")
            user = ANONYMOUS
        user = self.authorization.impersonate(req.scope.get("headers", ()), user)
        req.user = user
        REQUEST_USER.set(user)

    def authorize(self, req: Request, attrs: RequestAttributes) -> None:
        self.authorization.check(req.user, attrs)

    def authorize_path(self, req: Request) -> None:
        """A non-resource request (``/version``, ``/api``, ``/healthz``…): verb is the lowercased method."""
        verb = "get" if req.method == "HEAD" else req.method.lower()
        self.authorization.check(req.user, RequestAttributes(verb=verb, path=req.path, resource_request=False))

    async def dispatch(self, req: Request, send: Send) -> tuple[str, str]:
        path = req.path
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            # Public through the system:public-info-viewer binding (system:unauthenticated), as Kubernetes.
            self.authenticate(req, anonymous=True)
            self.authorize_path(req)
            if path.startswith("/readyz") and not self.ready:
                await send_response(send, 503, b"not ready", "text/plain; charset=utf-8")
            elif path.startswith("/readyz") and (why := await self.store_unhealthy()):
                body = f"[-]etcd failed: {why}\nreadyz check failed\n".encode()  # kube-apiserver's shape
                await send_response(send, 503, body, "text/plain; charset=utf-8")
            else:
                await send_response(send, 200, b"ok", "text/plain; charset=utf-8")
            return "get", ""
        if await self.serviceaccounts.serve_discovery(req, path, send):  # public, as in Kubernetes
            return "get", ""
        # /version (like /healthz) is public through the system:public-info-viewer binding: without a
        # bearer token the request is system:anonymous and the binding decides; an invalid token is a 401.
        self.authenticate(req, anonymous=path == "/version")
        if self.aggregator is not None and await self.aggregator.handle(req, path, send):
            return req.method.lower(), "apiservices"
        segments = path.strip("/").split("/")
        if not ((segments[0] == "api" and len(segments) >= 3) or (segments[0] == "apis" and len(segments) >= 4)):
            self.authorize_path(req)  # discovery, OpenAPI, /version, /metrics, unknown paths
        if path == "/version":
            self._only(req, "GET")
            await send_json(send, 200, discovery.version_info(self.options.git_version))
            return "get", ""
        if path in ("/api", "/apis"):
            self._only(req, "GET")
            agg = discovery.negotiate_aggregated(req.headers.get("accept", ""))
            core = path == "/api"
            if agg is not None:
                await send_response(send, 200, discovery.aggregated_bytes(core, agg), agg)
            elif core:
                addr = f"{self.options.advertise_address}:{self.options.secure_port}"
                await send_json(send, 200, discovery.api_versions(addr))
            else:
                await send_json(send, 200, discovery.api_group_list())
            return "get", ""
        if path == "/metrics":
            self._only(req, "GET")
            for resource in {r.plural for r in registry.RESOURCES}:
                self.metrics.watchers.labels(resource)  # make the series exist
            await send_response(send, 200, self.metrics.render(), Metrics.CONTENT_TYPE)
            return "get", ""
        if path == "/openapi/v2" or path == "/swagger-2.0.0.pb-v1":
            self._only(req, "GET")
            if path == "/openapi/v2" and openapi_v2.wants_json(req.headers.get("accept", "")):
                await send_response(send, 200, openapi_v2.document_bytes(), "application/json")
            else:
                await send_response(send, 200, openapi.v2_protobuf(), openapi.V2_CONTENT_TYPE)
            return "get", ""
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            self._only(req, "GET")
            await self.openapi_v3(path, send)
            return "get", ""
        if len(segments) == 2 and segments[0] == "api":
            self._only(req, "GET")
            doc = discovery.resource_list("", segments[1])
            if doc is None:
                raise errors.NotFound(_NOT_FOUND)
            await send_json(send, 200, doc)
            return "get", ""
        if segments[0] == "apis" and len(segments) in (2, 3):
            self._only(req, "GET")
            doc = (
                discovery.api_group(segments[1])
                if len(segments) == 2
                else discovery.resource_list(segments[1], segments[2])
            )
            if doc is None:
                raise errors.NotFound(_NOT_FOUND)
            await send_json(send, 200, doc)
            return "get", ""
        route = parse_resource_path(segments)
        if route is None:
            raise errors.NotFound(_NOT_FOUND)
        if route.res in registry.REVIEWS:
            return await self.review(req, route, send)
        return await self.resource_request(req, route, send)

    async def review(self, req: Request, route: Route, send: Send) -> tuple[str, str]:
        """POST of a review kind: authorized ``create``, answered from authorization state, never stored."""
        res = route.res
        if req.method != "POST" or route.name is not None or (res.namespaced and route.namespace is None):
            raise errors.MethodNotAllowed(_METHOD_NOT_ALLOWED)
        attrs = RequestAttributes(
            verb="create", group=res.group, resource=res.plural, namespace=route.namespace or "", path=req.path
        )
        self.authorize(req, attrs)
        raw = await self._body(req)
        body = decode_body(raw, req.content_type)
        answer = self.authorization.review(res.plural, body, req.user, route.namespace or "")
        await send_json(send, 201, answer)
        return "create", res.plural

    @staticmethod
    def _only(req: Request, *methods: str) -> None:
        if req.method not in methods and not (req.method == "HEAD" and "GET" in methods):
            raise errors.MethodNotAllowed(_METHOD_NOT_ALLOWED)

    async def openapi_v3(self, path: str, send: Send) -> None:
        if path == "/openapi/v3":
            await send_json(send, 200, openapi.v3_root())
            return
        doc = openapi.v3_document(path[len("/openapi/v3/") :])
        if doc is None:
            raise errors.NotFound(_NOT_FOUND)
        body = await self.run(orjson.dumps, doc)
        await send_response(send, 200, body, JSON)

    # -- resources ---------------------------------------------------------------------------

    async def resource_request(self, req: Request, route: Route, send: Send) -> tuple[str, str]:
        res, sub, method = route.res, route.subresource, req.method
        if method == "HEAD":
            method = "GET"
        verb = request_verb(route, method, req.q_bool("watch"))
        if verb is None:
            raise errors.MethodNotAllowed(_METHOD_NOT_ALLOWED)
        self.authorize(
            req,
            RequestAttributes(
                verb=verb,
                group=res.group,
                resource=res.plural,
                subresource=sub or "",
                namespace=route.namespace or "",
                name=route.name or "",
                path=req.path,
            ),
        )
        metric_res = f"{res.plural}/{sub}" if sub else res.plural
        if res is registry.COMPONENTSTATUSES:
            await self.component_statuses(req, route, send)
            return verb, metric_res
        if sub in ("exec", "attach", "portforward", "log"):
            await self.kubelet_request(req, route, send)
            return ("log" if sub == "log" else "exec"), metric_res
        if verb == "list":
            await self.list(req, route, send)
        elif verb == "watch":
            await self.watch(req, route, send)
        elif verb == "deletecollection":
            await self.delete_collection(req, route, send)
        elif verb == "create":
            await self.create(req, route, send)
        elif verb == "get":
            await self.get(req, route, send)
        elif verb == "update":
            await self.update(req, route, send)
        elif verb == "patch":
            await self.patch(req, route, send)
        elif verb == "delete":
            await self.delete(req, route, send)
        return verb, metric_res

    async def component_statuses(self, req: Request, route: Route, send: Send) -> None:
        """``kubectl get cs``: computed now from the leader Leases and a store read (never stored)."""

        def work() -> list[Obj]:
            leases, store_error = componentstatus.read_inputs(
                lambda name: self.ops.get(registry.LEASES, componentstatus.LEASE_NAMESPACE, name),
                lambda: self.store.get(registry.NAMESPACES.storage_key("default")),
            )
            now = datetime.now(UTC)
            return componentstatus.component_statuses(leases, componentstatus.store_name(self.store), store_error, now)

        items = await self.run(work)
        if route.name is not None:
            body: Obj = componentstatus.lookup(items, route.name)
            if self._wants_table(req):
                body = self._table(route.res, [body], "", self._include_object(req))
        elif self._wants_table(req):
            body = self._table(route.res, items, "", self._include_object(req))
        else:
            body = componentstatus.as_list(items)
        await send_response(send, 200, orjson.dumps(body), headers=warning_headers([componentstatus.WARNING]))

    def _dry_run(self, req: Request) -> bool:
        values = req.query.get("dryRun", [])
        for v in values:
            if v != "All":
                raise errors.BadRequest(f'unsupported dryRun value {limits.show(v)}: only "All" is supported')
        return bool(values)

    def _strict(self, req: Request) -> bool:
        v = req.q("fieldValidation")
        if v not in ("", "Strict", "Warn", "Ignore"):
            raise errors.BadRequest(
                f'invalid fieldValidation {limits.show(v)}: must be one of "Strict", "Warn", "Ignore"'
            )
        return v == "Strict"

    async def _body(self, req: Request) -> bytes:
        return await req.body(self.options.max_body_bytes)

    def _wants_table(self, req: Request) -> bool:
        return "as=Table" in req.headers.get("accept", "")

    def _table(self, res: Resource, objs: list[Obj], rv: str, include_object: str, defs: bool = True) -> Obj:
        result: Obj = tables.to_table(
            res, objs, list_rv=rv, include_object=include_object, include_column_definitions=defs
        )
        return result

    def _include_object(self, req: Request) -> str:
        v = req.q("includeObject") or "Metadata"
        if v not in ("None", "Metadata", "Object"):
            raise errors.BadRequest(
                f'invalid includeObject {limits.show(v)}: must be one of "None", "Metadata", "Object"'
            )
        return v

    def _matcher(self, req: Request, res: Resource) -> tuple[Callable[[Obj], bool] | None, str | None]:
        """(match function or None, namespace pinned by the field selector or None)."""
        label = LabelSelector.parse(req.q("labelSelector"))
        fields = FieldSelector.parse(req.q("fieldSelector"))
        check_field_selector(res, fields)
        pinned_ns = fields.exact_match("metadata.namespace") if res.namespaced else None
        if label.empty and fields.empty:
            return None, None
        if fields.empty:

            def match_labels(obj: Obj) -> bool:
                return label.matches((obj.get("metadata") or {}).get("labels") or {})

            return match_labels, pinned_ns

        def match(obj: Obj) -> bool:
            md = obj.get("metadata") or {}
            return label.matches(md.get("labels") or {}) and fields.matches(field_set(res, obj))

        return match, pinned_ns

    async def list(self, req: Request, route: Route, send: Send) -> None:
        res = route.res
        match, pinned = self._matcher(req, res)
        ns = route.namespace or pinned
        table = self._wants_table(req)
        include = self._include_object(req) if table else "Metadata"
        # A negative limit means no limit, as in kube-apiserver (``ListOptions.Limit`` is only
        # used when > 0: k8s.io/apiserver/pkg/storage/cacher, "limit > 0").
        limit = max(req.q_int("limit") or 0, 0)
        token = req.q("continue")
        start_after, pinned_rv = _decode_continue(token, res.storage_prefix(ns)) if token else ("", 0)
        if req.q("resourceVersion") == "0" and not token:
            limit = 0  # like kube-apiserver: RV=0 is served whole (from its cache), limit ignored

        if limit or token:

            def page() -> bytes:
                items, rev, last, remaining = self.ops.list_page(res, ns, match, start_after=start_after, limit=limit)
                list_rv = pinned_rv or rev
                meta: Obj = {"resourceVersion": str(list_rv)}
                if last:
                    meta["continue"] = _encode_continue(list_rv, last)
                    if remaining is not None:
                        meta["remainingItemCount"] = remaining
                if table:
                    t = self._table(res, items, str(list_rv), include)
                    t["metadata"] = {**t.get("metadata", {}), **meta}
                    return orjson.dumps(t)
                return orjson.dumps(
                    {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items}
                )

            await send_response(send, 200, await self.run(page))
            return

        def work() -> bytes:
            if match is None and not table:
                # hot path: no selector, plain JSON — splice stored bytes, decode nothing
                raws, rev = self.ops.list_raw(res, ns)
                head = b'{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"},"items":[' % (
                    res.list_kind.encode(),
                    res.api_version.encode(),
                    rev,
                )
                return head + b",".join(raws) + b"]}"
            items, rev = self.ops.list(res, ns, match)
            if table:
                return orjson.dumps(self._table(res, items, str(rev), include))
            return orjson.dumps(
                {
                    "kind": res.list_kind,
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(rev)},
                    "items": items,
                }
            )

        await send_response(send, 200, await self.run(work))

    async def watch(self, req: Request, route: Route, send: Send) -> None:
        res = route.res
        match, pinned = self._matcher(req, res)
        ns = route.namespace or pinned
        rv = req.q("resourceVersion")
        timeout = req.q_int("timeoutSeconds")
        table = self._wants_table(req)
        include = self._include_object(req) if table else "Metadata"
        to_table = None
        if table:

            def to_table(objs: list[Obj], first: bool) -> Obj:
                return self._table(res, objs, "", include, defs=first)

        initial = None
        if rv in ("", "0"):
            initial = await self.run(self.ops.list, res, ns, match)
        wr = WatchRequest(
            res=res,
            prefix=res.storage_prefix(ns),
            resource_version=rv,
            timeout=float(timeout) if timeout and timeout > 0 else self.options.watch_default_timeout,
            bookmarks=req.q_bool("allowWatchBookmarks"),
            match=match,
            to_table=to_table,
        )
        gauge = self.metrics.watchers.labels(res.plural)
        gauge.inc()
        self.metrics.longrunning.inc()
        try:
            await serve_watch(
                wr,
                self.feeds,
                self.lines,
                initial,
                req.receive,
                send,
                self.options.watch_bookmark_interval,
                on_closed=self._watch_closed,
                stopping=self.stopping,
            )
        finally:
            gauge.dec()
            self.metrics.longrunning.dec()

    def _watch_closed(self, reason: str) -> None:
        if "slow" in reason or "behind" in reason or "pending" in reason:
            self.metrics.slow_watchers.inc()

    async def get(self, req: Request, route: Route, send: Send) -> None:
        res, sub = route.res, route.subresource
        assert route.name is not None
        if sub in (None, "status") and not self._wants_table(req):
            kv = await self.run(self.ops.get_kv, res, route.namespace, route.name)
            await send_response(send, 200, self.ops.raw(kv))
            return
        obj = await self.run(self.ops.get, res, route.namespace, route.name)
        if sub == "scale":
            obj = to_scale(res, obj)
        elif sub is None and self._wants_table(req):
            include = self._include_object(req)
            obj = await self.run(self._table, res, [obj], obj["metadata"]["resourceVersion"], include)
        await send_response(send, 200, orjson.dumps(obj))

    async def create(self, req: Request, route: Route, send: Send) -> None:
        res, sub = route.res, route.subresource
        dry, strict = self._dry_run(req), self._strict(req)
        if sub == "token":
            assert route.name is not None and route.namespace is not None
            await self.serviceaccounts.token_request(self, req, route.namespace, route.name, send)
            return
        raw = await self._body(req)
        ctype = req.content_type
        if sub == "binding":
            assert route.name is not None
            obj = await self.run(self.bind, route.namespace, route.name, decode_body(raw, ctype), dry)
            await send_json(send, 201, obj)
            return
        if sub == "eviction":
            assert route.name is not None
            body = decode_body(raw, ctype)
            await self.run(self.evict, route.namespace, route.name, body, dry)
            await send_json(
                send, 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
            )
            return

        warn = req.q("fieldValidation") == "Warn"
        inline = self.admission.inline_ok(res)  # False when admission may wait on the store (pods' SA)
        if inline and self.nowait is not None and len(raw) <= _INLINE_BODY_MAX and ctype in _INLINE_TYPES:
            # On the loop: decoding, admission and encoding are CPU only (the namespace and
            # allocator state is in memory), and the store commits the write on its own thread.
            body = decode_body(raw, ctype)
            warnings = unknown_field_warnings(res, body) if warn else []
            pending = self.ops.begin_create(
                res, route.namespace, body, dry_run=dry, strict=strict, manager=field_manager(req)
            )
            obj = pending.obj if pending.value is None else await self._write_create(pending, self.nowait)
            await send_response(send, 201, orjson.dumps(obj), headers=warning_headers(warnings))
            return

        def work() -> tuple[bytes, list[str]]:
            body = decode_body(raw, ctype)
            warnings = unknown_field_warnings(res, body) if warn else []
            obj = self.ops.create(res, route.namespace, body, dry_run=dry, strict=strict, manager=field_manager(req))
            return orjson.dumps(obj), warnings

        out, warnings = await self.run(work)
        await send_response(send, 201, out, headers=warning_headers(warnings))

    async def _write_create(self, pending: PendingCreate, store: NowaitCreates) -> Obj:
        """Write an admitted create through ``create_nowait``; the created object.

        The outcome (allocations kept or released, a new generateName suffix after a collision)
        is settled on the loop by the store's callback whether or not this coroutine is still
        waiting, so a request cancelled mid-write leaves no allocation behind for a stored object.
        """
        write = _CreateWrite(pending, store, asyncio.get_running_loop())
        try:
            store.create_nowait(pending.key, pending.value or b"", write.done)
        except BaseException:
            pending.abort()
            raise
        return await write.answer

    async def update(self, req: Request, route: Route, send: Send) -> None:
        res, sub, name = route.res, route.subresource, route.name
        assert name is not None
        dry, strict = self._dry_run(req), self._strict(req)
        raw = await self._body(req)
        ctype = req.content_type

        warn = req.q("fieldValidation") == "Warn"

        def work() -> tuple[bytes, list[str]]:
            body = decode_body(raw, ctype)
            if sub == "finalize":
                return orjson.dumps(self.ops.finalize_namespace(name, body)), []
            if sub == "scale":
                return orjson.dumps(self.update_scale(res, route.namespace, name, body, dry)), []
            warnings = unknown_field_warnings(res, body) if warn else []
            manager = field_manager(req)
            obj = self.ops.update(
                res, route.namespace, name, body, subresource=sub, dry_run=dry, strict=strict, manager=manager
            )
            return orjson.dumps(obj), warnings

        out, warnings = await self.run(work)
        await send_response(send, 200, out, headers=warning_headers(warnings))

    async def patch(self, req: Request, route: Route, send: Send) -> None:
        res, sub, name = route.res, route.subresource, route.name
        assert name is not None
        dry, strict = self._dry_run(req), self._strict(req)
        ctype = req.content_type
        if ctype not in _PATCH_TYPES:
            raise errors.UnsupportedMediaType(
                f"the body of the request was in an unknown format ({limits.echo(ctype) or 'no Content-Type'}); "
                f"accepted media types include: {', '.join(_PATCH_TYPES)}"
            )
        raw = await self._body(req)
        if not raw.strip():
            raise errors.BadRequest("the patch body is empty")

        def work() -> tuple[bytes, bool]:
            if sub == "scale":
                return orjson.dumps(self.patch_scale(res, route.namespace, name, raw, ctype, dry)), False
            obj, created = self.ops.patch(
                res,
                route.namespace,
                name,
                raw,
                ctype,
                subresource=sub,
                dry_run=dry,
                strict=strict,
                manager=req.q("fieldManager") if ctype == _APPLY else field_manager(req),
                force=req.q_bool("force"),
            )
            return orjson.dumps(obj), created

        body, created = await self.run(work)
        await send_response(send, 201 if created else 200, body)

    async def _delete_options(self, req: Request) -> Obj:
        raw = await self._body(req)
        opts: Obj = {}
        if raw.strip():
            body = decode_body(raw, req.content_type)
            if not isinstance(body, dict):
                raise errors.BadRequest("the request body must be a DeleteOptions object")
            opts = body
        grace = req.q_int("gracePeriodSeconds")
        if grace is not None:
            opts["gracePeriodSeconds"] = grace
        if req.q("propagationPolicy"):
            opts["propagationPolicy"] = req.q("propagationPolicy")
        if req.q("orphanDependents"):
            opts["orphanDependents"] = req.q_bool("orphanDependents")
        policy = opts.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.BadRequest(
                f'invalid propagationPolicy {limits.show(policy)}: must be "Orphan", "Background" or "Foreground"'
            )
        if "dryRun" in opts and opts["dryRun"] not in ([], ["All"], None):
            raise errors.BadRequest('unsupported dryRun value: only "All" is supported')
        gp = opts.get("gracePeriodSeconds")
        if gp is not None and (not isinstance(gp, int) or isinstance(gp, bool)):
            raise errors.BadRequest("gracePeriodSeconds must be an integer")
        return opts

    async def delete(self, req: Request, route: Route, send: Send) -> None:
        assert route.name is not None
        if route.res is registry.NAMESPACES and route.name in _UNDELETABLE_NAMESPACES:
            raise errors.Forbidden(
                f'namespaces "{route.name}" is forbidden: this namespace may not be deleted',
                kind="namespaces",
                name=route.name,
            )
        dry = self._dry_run(req)
        opts = await self._delete_options(req)
        dry = dry or opts.get("dryRun") == ["All"]
        obj = await self.run(lambda: self.ops.delete(route.res, route.namespace, route.name or "", opts, dry_run=dry))
        await send_response(send, 200, orjson.dumps(obj))

    async def delete_collection(self, req: Request, route: Route, send: Send) -> None:
        res = route.res
        match, pinned = self._matcher(req, res)
        ns = route.namespace or pinned
        dry = self._dry_run(req)
        opts = await self._delete_options(req)

        def work() -> bytes:
            items, rev = self.ops.list(res, ns, match)
            out = []
            for obj in items:
                md = obj["metadata"]
                try:
                    out.append(self.ops.delete(res, md.get("namespace"), md["name"], opts, dry_run=dry))
                except errors.NotFound:
                    continue
            return orjson.dumps(
                {
                    "kind": res.list_kind,
                    "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(rev)},
                    "items": out,
                }
            )

        await send_response(send, 200, await self.run(work))

    # -- subresources ----------------------------------------------------------------------------

    def bind(self, namespace: str | None, name: str, body: Any, dry: bool) -> Obj:
        """pods/binding: set ``spec.nodeName`` once (409 if the pod is already bound)."""
        if not isinstance(body, dict):
            raise errors.BadRequest("the request body must be a Binding object")
        target = body.get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node or not isinstance(node, str):
            raise errors.invalid("Binding", name, [errors.Cause("target.name", "Required value", "FieldValueRequired")])
        if target.get("kind") not in (None, "", "Node"):
            raise errors.invalid("Binding", name, [errors.Cause("target.kind", "must be Node")])
        res = registry.PODS
        for _ in range(5):
            kv = self.ops.get_kv(res, namespace, name)
            pod = self.ops.decode(kv)
            md = pod["metadata"]
            if md.get("deletionTimestamp"):
                raise errors.Conflict(
                    f"pod {name} is being deleted, cannot be assigned to a host", kind="pods", name=name
                )
            if (pod.get("spec") or {}).get("nodeName"):
                raise errors.Conflict(
                    f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"', kind="pods", name=name
                )
            want_uid = (body.get("metadata") or {}).get("uid")
            if want_uid and want_uid != md.get("uid"):
                raise errors.Conflict(f"pod {name} has a different uid than the binding", kind="pods", name=name)
            pod.setdefault("spec", {})["nodeName"] = node
            conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now_rfc3339()}
            )
            pod.setdefault("status", {})["conditions"] = conds
            if dry:
                return _success_status()
            try:
                self.ops.store.update(kv.key, self.ops.encode(pod), kv.mod_revision)
            except ConflictError:
                continue  # the pod changed meanwhile (status update): re-read and bind again
            return _success_status()
        raise conflict(registry.PODS, name)

    def evict(self, namespace: str | None, name: str, body: Any, dry: bool) -> None:
        opts: Obj = {}
        if isinstance(body, dict) and isinstance(body.get("deleteOptions"), dict):
            opts = body["deleteOptions"]
        evictions.check_budget(self.ops, namespace or "", name, dry)
        self.ops.delete(registry.PODS, namespace, name, opts, dry_run=dry)

    def update_scale(self, res: Resource, namespace: str | None, name: str, body: Any, dry: bool) -> Obj:
        if not isinstance(body, dict):
            raise errors.BadRequest("the request body must be a Scale object")
        spec = body.get("spec")
        replicas = spec.get("replicas") if isinstance(spec, dict) else None
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid("Scale", name, [errors.Cause("spec.replicas", "must be a non-negative integer")])
        kv = self.ops.get_kv(res, namespace, name)
        obj = self.ops.decode(kv)
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if want_rv and str(want_rv) != obj["metadata"]["resourceVersion"]:
            raise conflict(res, name)
        obj.setdefault("spec", {})["replicas"] = replicas
        return to_scale(res, self.ops.update(res, namespace, name, obj, dry_run=dry))

    def patch_scale(self, res: Resource, namespace: str | None, name: str, raw: bytes, ctype: str, dry: bool) -> Obj:
        from controlplane.api import patch as patchlib

        for _ in range(5):
            obj = self.ops.get(res, namespace, name)
            scale = to_scale(res, obj)
            new_scale = patchlib.apply_patch(res, scale, raw, ctype)
            try:
                return self.update_scale(res, namespace, name, new_scale, dry)
            except errors.Conflict:
                continue
        raise conflict(res, name)

    # -- kubelet proxy -----------------------------------------------------------------------------

    async def kubelet_request(self, req: Request, route: Route, send: Send) -> None:
        if self.kubelet is None:
            raise errors.ServiceUnavailable("the kubelet proxy is not available in this server")
        assert route.name is not None
        pod = await self.run(self.ops.get, route.res, route.namespace, route.name)
        sub = route.subresource
        if sub == "log":
            await self.kubelet.logs(req, pod, send)
        elif sub == "portforward":
            raise errors.BadRequest(_PORTFORWARD_UNSUPPORTED)
        else:
            raise errors.BadRequest(
                f"{sub} needs a WebSocket upgrade (Sec-WebSocket-Protocol v5.channel.k8s.io or "
                "v4.channel.k8s.io), or a SPDY/3.1 upgrade offering v4.channel.k8s.io; older SPDY is not "
                "supported by kubelab: use kubectl 1.27 or newer"
            )

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        req = Request(scope, receive)

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
            self.authenticate(req)
            route = parse_resource_path(req.path.strip("/").split("/"))
            if route is None or route.subresource not in ("exec", "attach", "portforward") or route.name is None:
                raise errors.NotFound(_NOT_FOUND)
            self.authorize(
                req,
                RequestAttributes(
                    verb="create",
                    resource="pods",
                    subresource=route.subresource or "",
                    namespace=route.namespace or "",
                    name=route.name,
                    path=req.path,
                ),
            )
            if self.kubelet is None:
                raise errors.ServiceUnavailable("the kubelet proxy is not available in this server")
            pod = await self.run(self.ops.get, route.res, route.namespace, route.name)
            self.metrics.longrunning.inc()
            try:
                if route.subresource == "portforward":
                    await self.kubelet.portforward(req, pod, receive, send)
                else:
                    await self.kubelet.stream(req, pod, route.subresource or "exec", receive, send)
            finally:
                self.metrics.longrunning.dec()
        except errors.ApiError as e:
            await deny(e)
        except Exception:
            log.exception("internal error serving websocket %s", req.path)
            await deny(errors.ApiError("an internal error occurred; see the server log"))


class _CreateWrite:
    """One ``create_nowait`` in flight (see ``ApiServer._write_create``).

    A small object rather than two closures calling each other: such a pair is a reference cycle,
    and one per request left every young garbage collection freeing thousands of objects (each
    holding the request's whole pod) — milliseconds of pause, again and again, under load.
    """

    __slots__ = ("answer", "loop", "pending", "store")

    def __init__(self, pending: PendingCreate, store: NowaitCreates, loop: asyncio.AbstractEventLoop) -> None:
        self.pending = pending
        self.store = store
        self.loop = loop
        self.answer: asyncio.Future[Obj] = loop.create_future()

    def done(self, rev: int | None, err: BaseException | None) -> None:
        """The store's callback, on its committer thread: settle on the loop."""
        try:
            self.loop.call_soon_threadsafe(self.settle, rev, err)
        except RuntimeError:
            # The loop is closed (the store finished queued writes while the server stopped):
            # nobody waits for the answer any more; the write itself is done or failed as usual.
            log.debug("create of %s finished after the event loop closed", self.pending.key)

    def settle(self, rev: int | None, err: BaseException | None) -> None:
        pending, answer = self.pending, self.answer
        if err is None and rev is not None:
            obj = pending.committed(rev)
            if not answer.done():
                answer.set_result(obj)
            return
        try:
            if not isinstance(err, KeyExistsError):
                pending.abort()
                raise err or errors.ApiError("the store answered neither a revision nor an error")
            pending.collided()  # another generateName suffix, or AlreadyExists
            self.store.create_nowait(pending.key, pending.value or b"", self.done)
        except BaseException as exc:
            if not answer.done():
                answer.set_exception(exc)


def event_last_seen(ev: Obj) -> float | None:
    """Seconds since the epoch of an Event's latest activity (any of the timestamps it may carry)."""
    series = ev.get("series") if isinstance(ev.get("series"), dict) else {}
    for value in (
        (series or {}).get("lastObservedTime"),
        ev.get("lastTimestamp"),
        ev.get("eventTime"),
        (ev.get("metadata") or {}).get("creationTimestamp"),
    ):
        if isinstance(value, str) and value:
            try:
                return parse_time(value).timestamp()
            except errors.ApiError:
                continue
    return None


def expire_events(ops: ResourceOps, ttl: float, now: float) -> int:
    items, _rev = ops.list(registry.EVENTS, None)
    n = 0
    for ev in items:
        seen = event_last_seen(ev)
        if seen is not None and now - seen > ttl:
            md = ev["metadata"]
            try:
                ops.delete(registry.EVENTS, md.get("namespace"), md["name"], {"preconditions": {"uid": md.get("uid")}})
                n += 1
            except (errors.NotFound, errors.Conflict):
                continue
    return n


def to_scale(res: Resource, obj: Obj) -> Obj:
    md = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector") or {}
    if res is registry.REPLICATIONCONTROLLERS and isinstance(selector, dict):
        selector = {"matchLabels": selector}  # an RC's selector is an equality map
    sel = ""
    if isinstance(selector, dict):
        try:
            sel = str(LabelSelector.from_dict(selector))
        except errors.ApiError:
            sel = ""
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md},
        "spec": {"replicas": int(spec.get("replicas", 1) or 0)},
        "status": {"replicas": int(status.get("replicas", 0) or 0), "selector": sel},
    }


def unknown_field_warnings(res: Resource, body: Any) -> list[str]:
    """``fieldValidation=Warn``: one warning per field the kind's schema does not define."""
    if not isinstance(body, dict):
        return []
    return [f'unknown field "{f}"' for f in openapi.unknown_fields(res, body)]


def warning_headers(warnings: list[str]) -> list[tuple[bytes, bytes]] | None:
    """RFC 7234 ``Warning: 299 - "text"`` headers, as kube-apiserver sends (kubectl prints them)."""
    if not warnings:
        return None
    return [(b"warning", b"299 - " + orjson.dumps(w)) for w in warnings]


def _encode_continue(rev: int, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": rev, "start": key})).decode()


def _decode_continue(token: str, prefix: str) -> tuple[str, int]:
    """(key to continue after, revision of the first page); 400 for a token that is not ours."""
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        key, rev = doc["start"], int(doc["rv"])
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise errors.BadRequest(f"invalid continue token {limits.show(token)}") from None
    if not isinstance(key, str) or not key.startswith(prefix):
        raise errors.BadRequest("the continue token does not belong to this list (different resource or namespace)")
    return key, rev


def _success_status() -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _qs(scope: Scope) -> str:
    qs = scope.get("query_string", b"")
    return "?" + qs.decode("latin-1") if qs else ""


def _first_service_ip(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address + 1)


class _Intercept:
    """ASGI middleware: the API server answers every HTTP and WebSocket request itself."""

    def __init__(self, app: Any, server: ApiServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            await self.server(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(store: Store, *, options: ServerOptions | None = None) -> FastAPI:
    """A FastAPI app serving the Kubernetes API over ``store`` (one instance per call, no globals)."""
    opts = options or ServerOptions()
    server = ApiServer(store, opts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.startup()
        try:
            yield
        finally:
            await server.shutdown()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.apiserver = server
    app.add_middleware(_Intercept, server=server)
    return app
