"""The ``create`` verb: POST of a new object, of a subresource that creates (binding, eviction,
token), and of a review kind (answered, never stored).

Role: kube-apiserver's ``CreateResource`` (k8s.io/apiserver/pkg/endpoints/handlers/create.go):
read the body (bounded), decode, admit and write through ``ResourceOps``, answer 201 with the
object as stored.

Why creates may stay on the event loop: every store has ``create_nowait``. For a small JSON body
and kinds whose admission never waits on the store, decoding, admission and encoding are CPU
work on the loop, and only the write leaves it — on sqlite to the store's committer thread, which
batches every create waiting, on etcd to the store's own writer threads — so there is no GIL
hand-off per request (what makes the latency tail of a Python server under load). Bigger bodies
and YAML go to the thread pool, so decoding megabytes never holds up every other request.

Invariants:
- Nothing is written unless decoding and admission passed; allocations admission made (a
  ClusterIP, a NodePort) are released when the write fails, even if the request was cancelled.
- A generateName collision draws another suffix and writes again (``PendingCreate.collided``).

Concurrency: ``_CreateWrite.done`` runs on the store's committer thread and only hands the
outcome to the loop (``call_soon_threadsafe``); everything else runs on the loop or a store thread.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from controlplane.api import errors
from controlplane.apiserver import subresources
from controlplane.apiserver.auth import RequestAttributes
from controlplane.apiserver.fieldmanager import field_manager
from controlplane.apiserver.handlers import rest
from controlplane.apiserver.handlers.rest import METHOD_NOT_ALLOWED, RequestScope
from controlplane.apiserver.httpio import Request, Send, decode_body, send_json, send_response
from controlplane.apiserver.requestinfo import RequestInfo
from controlplane.apiserver.resources import Obj, PendingCreate
from controlplane.storage.interface import KeyExistsError, NowaitCreates

log = logging.getLogger(__name__)

# Create bodies up to this size are handled on the event loop (see the module docstring); bigger
# ones on the thread pool ...
_INLINE_BODY_MAX = 64 * 1024
# ... and only JSON (orjson decodes it in microseconds; YAML is parsed in pure Python).
_INLINE_TYPES = ("application/json", "")


async def create(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    res, sub, ops = info.res, info.subresource, scope.ops
    dry, strict = rest.dry_run(req), rest.strict(req)
    if sub == "token":
        assert info.name is not None and info.namespace is not None
        await scope.serviceaccounts.token_request(scope, req, info.namespace, info.name, send)
        return
    raw = await scope.body(req)
    ctype = req.content_type
    if sub == "binding":
        assert info.name is not None
        obj = await scope.run(subresources.bind, ops, info.namespace, info.name, decode_body(raw, ctype), dry)
        await send_json(send, 201, obj)
        return
    if sub == "eviction":
        assert info.name is not None
        body = decode_body(raw, ctype)
        await scope.run(subresources.evict, ops, info.namespace, info.name, body, dry)
        await send_json(send, 201, subresources.success_status())
        return

    warn = req.q("fieldValidation") == "Warn"
    inline = scope.admission.inline_ok(res)  # False when admission may wait on the store (pods' SA)
    if inline and scope.nowait is not None and len(raw) <= _INLINE_BODY_MAX and ctype in _INLINE_TYPES:
        # On the loop: decoding, admission and encoding are CPU only (the namespace and
        # allocator state is in memory), and the store commits the write on its own thread.
        body = decode_body(raw, ctype)
        warnings = rest.unknown_field_warnings(res, body) if warn else []
        pending = ops.begin_create(res, info.namespace, body, dry_run=dry, strict=strict, manager=field_manager(req))
        obj = pending.obj if pending.value is None else await write_create(pending, scope.nowait)
        await send_response(send, 201, orjson.dumps(obj), headers=rest.warning_headers(warnings))
        return

    def work() -> tuple[bytes, list[str]]:
        body = decode_body(raw, ctype)
        warnings = rest.unknown_field_warnings(res, body) if warn else []
        obj = ops.create(res, info.namespace, body, dry_run=dry, strict=strict, manager=field_manager(req))
        return orjson.dumps(obj), warnings

    out, warnings = await scope.run(work)
    await send_response(send, 201, out, headers=rest.warning_headers(warnings))


async def write_create(pending: PendingCreate, store: NowaitCreates) -> Obj:
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


class _CreateWrite:
    """One ``create_nowait`` in flight (see ``write_create``).

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


async def create_review(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> tuple[str, str]:
    """POST of a review kind: authorized ``create``, answered from authorization state, never stored."""
    res = info.res
    if req.method != "POST" or info.name is not None or (res.namespaced and info.namespace is None):
        raise errors.MethodNotAllowed(METHOD_NOT_ALLOWED)
    attrs = RequestAttributes(
        verb="create", group=res.group, resource=res.plural, namespace=info.namespace or "", path=req.path
    )
    scope.authorize(req, attrs)
    raw = await scope.body(req)
    body = decode_body(raw, req.content_type)
    answer = scope.authorization.review(res.plural, body, req.user, info.namespace or "")
    await send_json(send, 201, answer)
    return "create", res.plural
