"""The read verbs: ``get`` of one object and ``list`` of a collection (paged with ``limit``/``continue``).

Role: kube-apiserver's ``GetResource`` and ``ListResource`` (k8s.io/apiserver/pkg/endpoints/
handlers/get.go): read through ``ResourceOps``, answer JSON or, for ``Accept: …;as=Table``, a
``meta.k8s.io/v1`` Table (what ``kubectl get`` prints). Also ``componentstatuses``, a read-only
kind computed per request and never stored.

Invariants:
- The hot paths decode nothing: a plain ``get`` serves the stored bytes with the resourceVersion
  spliced in, and an unfiltered list joins them.
- A continue token names the key to resume after and the first page's revision; one from another
  resource or namespace is a 400.

Concurrency: store reads and encoding run on a store thread (``scope.run``); the handlers on the loop.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson

from controlplane.api import errors, limits, registry
from controlplane.apiserver import componentstatus
from controlplane.apiserver.handlers import rest
from controlplane.apiserver.handlers.rest import RequestScope
from controlplane.apiserver.httpio import Request, Send, send_response
from controlplane.apiserver.requestinfo import RequestInfo
from controlplane.apiserver.resources import Obj
from controlplane.apiserver.subresources import to_scale


async def get(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    res, sub, ops = info.res, info.subresource, scope.ops
    assert info.name is not None
    if sub in (None, "status") and not rest.wants_table(req):
        kv = await scope.run(ops.get_kv, res, info.namespace, info.name)
        await send_response(send, 200, ops.raw(kv))
        return
    obj = await scope.run(ops.get, res, info.namespace, info.name)
    if sub == "scale":
        obj = to_scale(res, obj)
    elif sub is None and rest.wants_table(req):
        include = rest.include_object(req)
        obj = await scope.run(rest.table, res, [obj], obj["metadata"]["resourceVersion"], include)
    await send_response(send, 200, orjson.dumps(obj))


async def list_resource(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    res, ops = info.res, scope.ops
    match, pinned = rest.matcher(req, res)
    ns = info.namespace or pinned
    table = rest.wants_table(req)
    include = rest.include_object(req) if table else "Metadata"
    # A negative limit means no limit, as in kube-apiserver (``ListOptions.Limit`` is only
    # used when > 0: k8s.io/apiserver/pkg/storage/cacher, "limit > 0").
    limit = max(req.q_int("limit") or 0, 0)
    token = req.q("continue")
    start_after, pinned_rv = decode_continue(token, res.storage_prefix(ns)) if token else ("", 0)
    if req.q("resourceVersion") == "0" and not token:
        limit = 0  # like kube-apiserver: RV=0 is served whole (from its cache), limit ignored

    if limit or token:

        def page() -> bytes:
            items, rev, last, remaining = ops.list_page(res, ns, match, start_after=start_after, limit=limit)
            list_rv = pinned_rv or rev
            meta: Obj = {"resourceVersion": str(list_rv)}
            if last:
                meta["continue"] = encode_continue(list_rv, last)
                if remaining is not None:
                    meta["remainingItemCount"] = remaining
            if table:
                t = rest.table(res, items, str(list_rv), include)
                t["metadata"] = {**t.get("metadata", {}), **meta}
                return orjson.dumps(t)
            return orjson.dumps(
                {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta, "items": items}
            )

        await send_response(send, 200, await scope.run(page))
        return

    def work() -> bytes:
        if match is None and not table:
            # hot path: no selector, plain JSON — splice stored bytes, decode nothing
            raws, rev = ops.list_raw(res, ns)
            head = b'{"kind":"%s","apiVersion":"%s","metadata":{"resourceVersion":"%d"},"items":[' % (
                res.list_kind.encode(),
                res.api_version.encode(),
                rev,
            )
            return head + b",".join(raws) + b"]}"
        items, rev = ops.list(res, ns, match)
        if table:
            return orjson.dumps(rest.table(res, items, str(rev), include))
        return rest.list_body(res, rev, items)

    await send_response(send, 200, await scope.run(work))


async def component_statuses(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    """``kubectl get cs``: computed now from the leader Leases and a store read (never stored)."""
    ops, store = scope.ops, scope.store

    def work() -> list[Obj]:
        leases, store_error = componentstatus.read_inputs(
            lambda name: ops.get(registry.LEASES, componentstatus.LEASE_NAMESPACE, name),
            lambda: store.get(registry.NAMESPACES.storage_key("default")),
        )
        now = datetime.now(UTC)
        return componentstatus.component_statuses(leases, componentstatus.store_name(store), store_error, now)

    items = await scope.run(work)
    if info.name is not None:
        body: Obj = componentstatus.lookup(items, info.name)
        if rest.wants_table(req):
            body = rest.table(info.res, [body], "", rest.include_object(req))
    elif rest.wants_table(req):
        body = rest.table(info.res, items, "", rest.include_object(req))
    else:
        body = componentstatus.as_list(items)
    await send_response(send, 200, orjson.dumps(body), headers=rest.warning_headers([componentstatus.WARNING]))


def encode_continue(rev: int, key: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"rv": rev, "start": key})).decode()


def decode_continue(token: str, prefix: str) -> tuple[str, int]:
    """(key to continue after, revision of the first page); 400 for a token that is not ours."""
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        key, rev = doc["start"], int(doc["rv"])
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise errors.BadRequest(f"invalid continue token {limits.show(token)}") from None
    if not isinstance(key, str) or not key.startswith(prefix):
        raise errors.BadRequest("the continue token does not belong to this list (different resource or namespace)")
    return key, rev
