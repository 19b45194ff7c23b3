"""The ``watch`` verb: a long-running stream of ADDED / MODIFIED / DELETED events for a collection.

Role: kube-apiserver's ``serveWatch`` (k8s.io/apiserver/pkg/endpoints/handlers/watch.go): parse
the watch options (resourceVersion, timeoutSeconds, allowWatchBookmarks, selectors, as=Table), then
hand the stream to ``controlplane.apiserver.watch.serve_watch``, which follows the shared watch
cache. With resourceVersion "" or "0" the stream starts with the current objects as ADDED events.

Invariants: the watcher gauges go up for the stream's life and down when it ends, however it ends;
a stream that fell behind is counted in ``slow_watchers``.

Concurrency: one asyncio task per stream on the loop; the initial list runs on a store thread.
"""

from __future__ import annotations

from controlplane.apiserver.handlers import rest
from controlplane.apiserver.handlers.rest import RequestScope
from controlplane.apiserver.httpio import Request, Send
from controlplane.apiserver.requestinfo import RequestInfo
from controlplane.apiserver.resources import Obj
from controlplane.apiserver.watch import WatchRequest, serve_watch


async def watch(scope: RequestScope, req: Request, info: RequestInfo, send: Send) -> None:
    res = info.res
    match, pinned = rest.matcher(req, res)
    ns = info.namespace or pinned
    rv = req.q("resourceVersion")
    timeout = req.q_int("timeoutSeconds")
    table = rest.wants_table(req)
    include = rest.include_object(req) if table else "Metadata"
    to_table = None
    if table:

        def to_table(objs: list[Obj], first: bool) -> Obj:
            return rest.table(res, objs, "", include, defs=first)

    initial = None
    if rv in ("", "0"):
        initial = await scope.run(scope.ops.list, res, ns, match)
    wr = WatchRequest(
        res=res,
        prefix=res.storage_prefix(ns),
        resource_version=rv,
        timeout=float(timeout) if timeout and timeout > 0 else scope.options.watch_default_timeout,
        bookmarks=req.q_bool("allowWatchBookmarks"),
        match=match,
        to_table=to_table,
    )
    metrics = scope.metrics
    gauge = metrics.watchers.labels(res.plural)
    gauge.inc()
    metrics.longrunning.inc()

    def closed(reason: str) -> None:
        if "slow" in reason or "behind" in reason or "pending" in reason:
            metrics.slow_watchers.inc()

    try:
        await serve_watch(
            wr,
            scope.feeds,
            scope.lines,
            initial,
            req.receive,
            send,
            scope.options.watch_bookmark_interval,
            on_closed=closed,
            stopping=scope.stopping,
        )
    finally:
        gauge.dec()
        metrics.longrunning.dec()
