"""The API server: ``create_app(store, options=...) -> FastAPI``, and the ``ApiServer`` it serves.

Role: the composition root of one kube-apiserver. ``ApiServer`` builds the parts — the store
operations (``resources.ResourceOps``), admission, authentication and authorization, the watch
cache and feeds, ServiceAccount tokens, the kubelet proxy and the aggregator — into one
``RequestScope`` (``handlers/rest.py``), hands every request to the ``Router`` (``routes.py``: the
request path, from the URL's ``RequestInfo`` to the verb's handler in ``handlers/``), and runs
what lives beside the requests: start-up bootstrap (system namespaces, the ``kubernetes``
Service), the namespace cache for admission, Event expiry and compaction.

Reading order for a request: ``routes.Router.__call__`` → ``requestinfo.parse_resource_path`` →
``routes.Router.resource_request`` → ``handlers/<verb>.py`` → ``resources.ResourceOps`` → the store.

Why raw ASGI inside FastAPI: the app is a FastAPI instance (lifespan, and a familiar shell), but one
ASGI middleware answers every request itself. Per-request routing objects, pydantic models and
dependency injection cost more than the whole create path; here a request is parsed once, the
store work and the JSON encoding run on a thread pool, and responses are orjson bytes (creates
may stay on the loop: ``handlers/create.py``).

Invariants:
- Nothing is served before ``startup`` finished (``/readyz`` says so); bootstrap is idempotent.
- ``shutdown`` ends watch streams first, then stops the background tasks and the pool.

Concurrency: request handlers run on the event loop; store calls run on a ``ThreadPoolExecutor``
(``options.store_threads``), except ``create_nowait`` writes, whose callbacks come back to the
loop with ``call_soon_threadsafe``; watch streams are asyncio tasks fed by the watch cache.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI

from controlplane.api import errors, registry
from controlplane.api.meta import parse_time
from controlplane.api.registry import Resource
from controlplane.apiserver import priority_admission
from controlplane.apiserver.admission import Admission
from controlplane.apiserver.aggregator import Aggregator
from controlplane.apiserver.allocators import ServiceAllocators
from controlplane.apiserver.auth import Authenticator, TokenFile
from controlplane.apiserver.authz.wiring import Authorization
from controlplane.apiserver.endpointreconciler import LeaseEndpointReconciler, endpoints_objects
from controlplane.apiserver.handlers.rest import RequestScope
from controlplane.apiserver.httpio import Receive, Scope, Send
from controlplane.apiserver.listers import AdmissionLister
from controlplane.apiserver.metrics import Metrics
from controlplane.apiserver.options import ServerOptions
from controlplane.apiserver.proxy_kubelet import KubeletProxy
from controlplane.apiserver.resources import Obj, ResourceOps
from controlplane.apiserver.routes import Router
from controlplane.apiserver.serviceaccounts import ServiceAccounts
from controlplane.apiserver.watch import Feeds, LineCache
from controlplane.apiserver.watchcache import WatchCache
from controlplane.storage.interface import NowaitCreates, Store

log = logging.getLogger(__name__)
T = TypeVar("T")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


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
        self.scope = RequestScope(
            store=store,
            options=options,
            pool=self.pool,
            ops=self.ops,
            admission=self.admission,
            authn=self.authn,
            authorization=self.authorization,
            serviceaccounts=self.serviceaccounts,
            feeds=self.feeds,
            lines=self.lines,
            metrics=self.metrics,
        )
        # Stores that queue a create without blocking: the request needs no thread of its own.
        self.nowait: NowaitCreates | None = self.scope.nowait
        self.router = Router(self.scope)
        self.compactor: Any = None
        self.namespaces: dict[str, Obj] = {}
        self._ns_revs: dict[str, int] = {}
        self._ns_lock = threading.Lock()
        self._ns_task: asyncio.Future[None] | None = None
        self._event_task: asyncio.Future[None] | None = None
        self.endpoint_reconciler: Any = None  # LeaseEndpointReconciler with --endpoint-reconciler-type=lease
        self._reconcile_task: asyncio.Future[None] | None = None

    # The parts the request path shares live on the scope; these read them for the lifecycle.

    @property
    def ready(self) -> bool:
        return self.scope.ready

    @property
    def kubelet(self) -> Any:
        return self.scope.kubelet

    @property
    def aggregator(self) -> Any:
        return self.scope.aggregator

    @property
    def stopping(self) -> asyncio.Event | None:
        return self.scope.stopping

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a store thread, in the caller's context (``RequestScope.run``)."""
        return await self.scope.run(fn, *args)

    async def startup(self) -> None:
        self.scope.stopping = asyncio.Event()
        await self.run(self.allocators.rebuild, self.store)
        await self.run(self.watch_cache.start)  # pre-fills its ring from the store's history

        async def node_lookup(name: str) -> Obj | None:
            try:
                return await self.run(self.ops.get, registry.NODES, None, name)
            except errors.NotFound:
                return None

        self.scope.kubelet = KubeletProxy(self.options, node_lookup)
        self.scope.aggregator = Aggregator(self.scope).start()
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
        self.scope.ready = True
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
        self.scope.ready = False
        if self.scope.stopping is not None:
            self.scope.stopping.set()

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
            # Several API servers (an HA control plane) start together: the one that lost the race
            # fails to allocate 10.96.0.1 before it would see AlreadyExists. The Service being there
            # is all that matters.
            try:
                self.ops.get(registry.SERVICES, "default", "kubernetes")
            except errors.ApiError:
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
        await self.router(scope, receive, send)


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
