"""The ``patch`` verb: JSON patch, merge patch, strategic merge patch and server-side apply.

Role: kube-apiserver's ``PatchResource`` (k8s.io/apiserver/pkg/endpoints/handlers/patch.go): the
Content-Type picks the patch kind; ``ResourceOps.patch`` applies it to the stored object and writes
the result (retrying on conflict). Server-side apply (``application/apply-patch+yaml``) creates a
missing object (201) and records its field manager from ``fieldManager``.

Invariants: an unknown Content-Type is a 415 listing the accepted ones; an empty body is a 400.

Concurrency: the patch and the store write run on a store thread (``scope.run``).
"""

from __future__ import annotations

import orjson

from controlplane.api import errors, limits
from controlplane.apiserver import subresources
from controlplane.apiserver.fieldmanager import field_manager
from controlplane.apiserver.handlers import rest
from controlplane.apiserver.handlers.rest import RequestScope
from controlplane.apiserver.httpio import Request, Send, send_response
from controlplane.apiserver.requestinfo import RequestInfo

APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    APPLY,
)


async def patch(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    res, sub, name, ops = info.res, info.subresource, info.name, scope.ops
    assert name is not None
    dry, strict = rest.dry_run(req), rest.strict(req)
    ctype = req.content_type
    if ctype not in PATCH_TYPES:
        raise errors.UnsupportedMediaType(
            f"the body of the request was in an unknown format ({limits.echo(ctype) or 'no Content-Type'}); "
            f"accepted media types include: {', '.join(PATCH_TYPES)}"
        )
    raw = await scope.body(req)
    if not raw.strip():
        raise errors.BadRequest("the patch body is empty")

    def work() -> tuple[bytes, bool]:
        if sub == "scale":
            return orjson.dumps(subresources.patch_scale(ops, res, info.namespace, name, raw, ctype, dry)), False
        obj, created = ops.patch(
            res,
            info.namespace,
            name,
            raw,
            ctype,
            subresource=sub,
            dry_run=dry,
            strict=strict,
            manager=req.q("fieldManager") if ctype == APPLY else field_manager(req),
            force=req.q_bool("force"),
        )
        return orjson.dumps(obj), created

    body, created = await scope.run(work)
    await send_response(send, 201 if created else 200, body)
