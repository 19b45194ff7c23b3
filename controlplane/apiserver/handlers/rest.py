"""What every resource handler needs: the ``RequestScope``, and the query options they share.

Role: kube-apiserver's ``RequestScope`` (k8s.io/apiserver/pkg/endpoints/handlers/rest.go) in
small — one object, built once by the ``ApiServer``, holding the store operations (``ResourceOps``),
admission, authentication and authorization, the watch feeds, metrics and the store thread pool —
plus the helpers that read the request options every verb family parses the same way: ``dryRun``,
``fieldValidation``, ``as=Table`` with ``includeObject``, label and field selectors, the body limit,
and the ``Warning`` headers.

Invariants:
- Invalid option values are a 400 ``Status`` naming the value (truncated by ``limits.show``),
  before anything is read from or written to the store.
- ``run`` carries the request's context (its user, for user-aware admission) to the store thread.

Concurrency: the scope is shared by every request on the event loop; its parts are thread-safe
where they are used from store threads (``ops``, ``admission``). ``kubelet``, ``aggregator``,
``stopping`` and ``ready`` are set by ``ApiServer.startup`` and ``shutdown`` on the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from controlplane.api import errors, limits, openapi, tables
from controlplane.api.fields import check_field_selector, field_set
from controlplane.api.registry import Resource
from controlplane.api.selectors import FieldSelector, LabelSelector
from controlplane.apiserver.admission import REQUEST_USER, Admission
from controlplane.apiserver.auth import ANONYMOUS, Authenticator, RequestAttributes
from controlplane.apiserver.authz.wiring import Authorization
from controlplane.apiserver.httpio import Request
from controlplane.apiserver.metrics import Metrics
from controlplane.apiserver.options import ServerOptions
from controlplane.apiserver.resources import Obj, ResourceOps
from controlplane.apiserver.serviceaccounts import ServiceAccounts
from controlplane.apiserver.watch import Feeds, LineCache
from controlplane.storage.interface import NowaitCreates, Store

T = TypeVar("T")

NOT_FOUND = "the server could not find the requested resource"
# genericapiserver's answer to a method a path does not accept (``NewGenericServerResponse`` for
# 405, k8s.io/apimachinery/pkg/api/errors/errors.go): this exact message, reason MethodNotAllowed.
METHOD_NOT_ALLOWED = "the server does not allow this method on the requested resource"


class RequestScope:
    """The parts of the server a request handler uses (one per ``ApiServer``)."""

    def __init__(
        self,
        *,
        store: Store,
        options: ServerOptions,
        pool: ThreadPoolExecutor,
        ops: ResourceOps,
        admission: Admission,
        authn: Authenticator,
        authorization: Authorization,
        serviceaccounts: ServiceAccounts,
        feeds: Feeds,
        lines: LineCache,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.options = options
        self.pool = pool
        self.ops = ops
        self.admission = admission
        self.authn = authn
        self.authorization = authorization
        self.serviceaccounts = serviceaccounts
        self.feeds = feeds
        self.lines = lines
        self.metrics = metrics
        # Stores that queue a create without blocking: the request needs no thread of its own.
        self.nowait: NowaitCreates | None = store if isinstance(store, NowaitCreates) else None
        self.kubelet: Any = None  # proxy_kubelet.KubeletProxy once started
        self.aggregator: Any = None  # aggregator.Aggregator once started (APIServices, /apis/<remote group>)
        self.stopping: asyncio.Event | None = None  # set when the server stops: watch streams end
        self.ready = False
        self._health: str | None = None
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

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a store thread, in the request's context (its user goes along)."""
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.pool, ctx.run, fn, *args)

    # -- authentication and authorization (kube-apiserver's WithAuthentication / WithAuthorization)

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

    async def body(self, req: Request) -> bytes:
        return await req.body(self.options.max_body_bytes)


# -- request options shared by the verb families ------------------------------------------------


def dry_run(req: Request) -> bool:
    values = req.query.get("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.BadRequest(f'unsupported dryRun value {limits.show(v)}: only "All" is supported')
    return bool(values)


def strict(req: Request) -> bool:
    v = req.q("fieldValidation")
    if v not in ("", "Strict", "Warn", "Ignore"):
        raise errors.BadRequest(f'invalid fieldValidation {limits.show(v)}: must be one of "Strict", "Warn", "Ignore"')
    return v == "Strict"


def wants_table(req: Request) -> bool:
    return "as=Table" in req.headers.get("accept", "")


def table(res: Resource, objs: list[Obj], rv: str, include_object: str, defs: bool = True) -> Obj:
    result: Obj = tables.to_table(res, objs, list_rv=rv, include_object=include_object, include_column_definitions=defs)
    return result


def include_object(req: Request) -> str:
    v = req.q("includeObject") or "Metadata"
    if v not in ("None", "Metadata", "Object"):
        raise errors.BadRequest(f'invalid includeObject {limits.show(v)}: must be one of "None", "Metadata", "Object"')
    return v


def matcher(req: Request, res: Resource) -> tuple[Callable[[Obj], bool] | None, str | None]:
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


def list_body(res: Resource, rev: int, items: list[Any]) -> bytes:
    """A ``<Kind>List`` of ``items`` at revision ``rev`` (list and deletecollection answer the same shape)."""
    body = {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": {"resourceVersion": str(rev)}}
    return orjson.dumps({**body, "items": items})
