"""The ``delete`` and ``deletecollection`` verbs, with ``DeleteOptions`` from the body and the query.

Role: kube-apiserver's ``DeleteResource`` and ``DeleteCollection`` (k8s.io/apiserver/pkg/endpoints/
handlers/delete.go): options (grace period, propagation policy, preconditions, dryRun) are read
from the body and overridden by query parameters, then ``ResourceOps.delete`` removes the object
or marks it for graceful deletion (finalizers, a pod's grace period).

Invariants:
- ``default``, ``kube-system`` and ``kube-public`` may not be deleted (403, as kube-apiserver's
  NamespaceLifecycle admission).
- deletecollection deletes what the selectors match at the list's revision; an object gone
  meanwhile is skipped, not an error.

Concurrency: the store work runs on a store thread (``scope.run``).
"""

from __future__ import annotations

import orjson

from controlplane.api import errors, limits, registry
from controlplane.apiserver.handlers import rest
from controlplane.apiserver.handlers.rest import RequestScope
from controlplane.apiserver.httpio import Request, Send, decode_body, send_response
from controlplane.apiserver.requestinfo import RequestInfo
from controlplane.apiserver.resources import Obj

_UNDELETABLE_NAMESPACES = ("default", "kube-system", "kube-public")


async def delete_options(scope: RequestScope, req: Request) -> Obj:
    """The request's ``DeleteOptions``: the body's, with query parameters taking precedence."""
    raw = await scope.body(req)
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


async def delete(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    assert info.name is not None
    if info.res is registry.NAMESPACES and info.name in _UNDELETABLE_NAMESPACES:
        raise errors.Forbidden(
            f'namespaces "{info.name}" is forbidden: this namespace may not be deleted',
            kind="namespaces",
            name=info.name,
        )
    dry = rest.dry_run(req)
    opts = await delete_options(scope, req)
    dry = dry or opts.get("dryRun") == ["All"]
    ops = scope.ops
    obj = await scope.run(lambda: ops.delete(info.res, info.namespace, info.name or "", opts, dry_run=dry))
    await send_response(send, 200, orjson.dumps(obj))


async def delete_collection(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    res, ops = info.res, scope.ops
    match, pinned = rest.matcher(req, res)
    ns = info.namespace or pinned
    dry = rest.dry_run(req)
    opts = await delete_options(scope, req)

    def work() -> bytes:
        items, rev = ops.list(res, ns, match)
        out = []
        for obj in items:
            md = obj["metadata"]
            try:
                out.append(ops.delete(res, md.get("namespace"), md["name"], opts, dry_run=dry))
            except errors.NotFound:
                continue
        return rest.list_body(res, rev, out)

    await send_response(send, 200, await scope.run(work))
