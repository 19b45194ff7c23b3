"""The ``update`` verb: PUT of a whole object, of its ``status``, of a Namespace's ``finalize``, of a ``scale``.

Role: kube-apiserver's ``UpdateResource`` (k8s.io/apiserver/pkg/endpoints/handlers/update.go):
decode the body, then ``ResourceOps.update`` replaces the stored object at the resourceVersion the
body names (a 409 when it moved on), keeping what the server owns (strategy.py).

Invariants: the answer is the object as stored (200); ``fieldValidation=Warn`` adds ``Warning``
headers for unknown fields; ``Strict`` refuses them (400).

Concurrency: decoding and the store write run on a store thread (``scope.run``).
"""

from __future__ import annotations

import orjson

from controlplane.apiserver import subresources
from controlplane.apiserver.fieldmanager import field_manager
from controlplane.apiserver.handlers import rest
from controlplane.apiserver.handlers.rest import RequestScope
from controlplane.apiserver.httpio import Request, Send, decode_body, send_response
from controlplane.apiserver.requestinfo import RequestInfo


async def update(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    res, sub, name, ops = info.res, info.subresource, info.name, scope.ops
    assert name is not None
    dry, strict = rest.dry_run(req), rest.strict(req)
    raw = await scope.body(req)
    ctype = req.content_type

    warn = req.q("fieldValidation") == "Warn"

    def work() -> tuple[bytes, list[str]]:
        body = decode_body(raw, ctype)
        if sub == "finalize":
            return orjson.dumps(ops.finalize_namespace(name, body)), []
        if sub == "scale":
            return orjson.dumps(subresources.update_scale(ops, res, info.namespace, name, body, dry)), []
        warnings = rest.unknown_field_warnings(res, body) if warn else []
        manager = field_manager(req)
        obj = ops.update(res, info.namespace, name, body, subresource=sub, dry_run=dry, strict=strict, manager=manager)
        return orjson.dumps(obj), warnings

    out, warnings = await scope.run(work)
    await send_response(send, 200, out, headers=rest.warning_headers(warnings))
