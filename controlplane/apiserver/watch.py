"""Watch streams: ``?watch=true`` as chunked newline-delimited JSON events.

Role: turn the change feed of one storage prefix into the events one client asked for — filtered by
label and field selectors (an object that stops matching is sent as DELETED, one that starts
matching as ADDED, like kube-apiserver's cacher), optionally as one-row ``Table`` objects, with
BOOKMARK events when allowed, ended after ``timeoutSeconds`` or when the client goes away.

Where the events come from: ``Feeds`` subscribes to the shared ``WatchCache`` (one store watch for
the whole server, fanned out to every watcher; a watcher that falls too far behind is closed).

Invariants:
- ``resourceVersion`` ``""``/``"0"``: first a synthetic ADDED per matching object (from a list),
  then every change after that list's revision; ``N``: every change with revision > N.
- A revision older than the replayable history gives one ERROR event carrying a 410 ``Status``
  (reason ``Expired``) and the end of the stream — never an HTTP error (clients expect 200).
- Events are sent in revision order, each at most once.

Concurrency: one asyncio task per watcher on the server's loop; encoded event lines are shared
between watchers of the same event through a small cache (the expensive part of fan-out).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from controlplane.api import errors
from controlplane.api.registry import Resource
from controlplane.apiserver.httpio import Receive, Send, start_stream
from controlplane.storage.interface import CompactedError

log = logging.getLogger(__name__)

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """Same shape as ``watchcache.CachedEvent`` (``obj`` is shared: never mutate it)."""

    type: str
    key: str
    revision: int
    obj: Obj
    prev_obj: Obj | None


class Subscription(Protocol):
    closed_reason: str | None

    async def next(self, timeout: float) -> list[Any] | None: ...

    def close(self) -> None: ...


class Feeds:
    """Where watchers get their events: subscriptions to the server's shared ``WatchCache``."""

    def __init__(self, cache: Any, max_pending: int = 10_000) -> None:
        self.cache = cache
        self.max_pending = max_pending
        self.active = 0

    def subscribe(self, prefix: str, after: int, loop: asyncio.AbstractEventLoop) -> Subscription:
        """Raises ``CompactedError`` when ``after`` can no longer be replayed."""
        sub: Subscription = self.cache.subscribe(prefix, after, loop, max_pending=self.max_pending)
        return sub


class LineCache:
    """Encoded ``{"type", "object"}`` lines shared by the watchers of one event (bounded LRU)."""

    def __init__(self, size: int = 4096) -> None:
        self._lines: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
        self._size = size

    def line(self, type_: str, ev: Any) -> bytes:
        k = (ev.key, ev.revision, type_)
        hit = self._lines.get(k)
        if hit is not None:
            return hit
        object_json = getattr(ev, "object_json", None)
        if object_json is not None:  # a CachedEvent: from the stored bytes, no decode + encode
            data = b'{"type":"%s","object":%s}\n' % (type_.encode(), object_json())
        else:
            data = orjson.dumps({"type": type_, "object": ev.obj}) + b"\n"
        self._lines[k] = data
        if len(self._lines) > self._size:
            self._lines.popitem(last=False)
        return data


@dataclass
class WatchRequest:
    res: Resource
    prefix: str
    resource_version: str
    timeout: float
    bookmarks: bool
    match: Callable[[Obj], bool] | None
    # Table output: (objs, first) → Table dict; None for plain objects
    to_table: Callable[[list[Obj], bool], Obj] | None = None


def expired_event(requested: str, oldest: int) -> bytes:
    status = errors.Gone(f"too old resource version: {requested} ({oldest})").to_status()
    return orjson.dumps({"type": "ERROR", "object": status}) + b"\n"


def classify(ev: Any, match: Callable[[Obj], bool] | None) -> str | None:
    """The event type this watcher sees for ``ev`` under its selectors (None: not at all)."""
    if match is None:
        return str(ev.type)
    now = match(ev.obj)
    if ev.type == "ADDED":
        return "ADDED" if now else None
    if ev.type == "DELETED":
        return "DELETED" if now else None
    before = match(ev.prev_obj) if ev.prev_obj is not None else now
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    if before:
        return "DELETED"
    return None


async def serve_watch(
    wr: WatchRequest,
    feeds: Feeds,
    lines: LineCache,
    initial: tuple[list[Obj], int] | None,
    receive: Receive,
    send: Send,
    bookmark_interval: float,
    on_closed: Callable[[str], None] | None = None,
    stopping: asyncio.Event | None = None,
) -> None:
    """Run one watch stream to its end. ``initial`` is the list for RV ""/"0" (objects, revision)."""
    loop = asyncio.get_running_loop()
    after = _start_revision(wr, initial)
    try:
        sub = feeds.subscribe(wr.prefix, after, loop)
    except CompactedError as e:
        await start_stream(send)
        await send(
            {"type": "http.response.body", "body": expired_event(wr.resource_version, e.compacted), "more_body": True}
        )
        await send({"type": "http.response.body", "body": b""})
        return
    feeds.active += 1
    disconnected = asyncio.Event()

    async def watch_disconnect() -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                disconnected.set()
                return

    watcher = asyncio.ensure_future(watch_disconnect())
    # The server is shutting down: end the stream cleanly (clients re-watch elsewhere or later).
    stop_task = asyncio.ensure_future(stopping.wait() if stopping is not None else asyncio.Event().wait())
    deadline = time.monotonic() + wr.timeout
    first_table = True
    aborted = False
    last_rev = after
    next_bookmark = time.monotonic() + bookmark_interval
    try:
        await start_stream(send)
        if initial is not None and initial[0]:
            out: list[bytes] = []
            for obj in initial[0]:
                out.append(_encode_one("ADDED", obj, wr, first_table))
                first_table = False
            await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
        else:
            # Send headers right away so clients know the watch is established.
            await send({"type": "http.response.body", "body": b"", "more_body": True})
        while not disconnected.is_set():
            now = time.monotonic()
            if now >= deadline:
                break
            wait = min(deadline - now, next_bookmark - now if wr.bookmarks else deadline - now, 5.0)
            get = asyncio.ensure_future(sub.next(max(wait, 0.0)))
            done, _ = await asyncio.wait({get, watcher, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                with contextlib.suppress(BaseException):
                    await get
                break
            batch = get.result()
            if batch is None:  # closed: too slow, or server stopping
                reason = getattr(sub, "closed_reason", None) or "closed"
                log.info("watch on %s closed: %s", wr.prefix, reason)
                if on_closed is not None:
                    on_closed(str(reason))
                break
            out, last_rev, first_table = _encode_batch(batch, wr, lines, last_rev, first_table)
            if wr.bookmarks and time.monotonic() >= next_bookmark:
                out.append(_bookmark(wr.res, last_rev))
                next_bookmark = time.monotonic() + bookmark_interval
            if out and not await _send_unless_closed(send, b"".join(out), sub, disconnected):
                # The client stopped reading and the cache gave up on it: end the response
                # without its final chunk, so the server closes the connection.
                reason = getattr(sub, "closed_reason", None) or "closed"
                log.info("watch on %s closed while blocked on a slow client: %s", wr.prefix, reason)
                if on_closed is not None:
                    on_closed(str(reason))
                aborted = True
                break
    finally:
        feeds.active -= 1
        sub.close()
        for task in (watcher, stop_task):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if not disconnected.is_set() and not aborted:
        with contextlib.suppress(Exception):
            await send({"type": "http.response.body", "body": b""})


def _start_revision(wr: WatchRequest, initial: tuple[list[Obj], int] | None) -> int:
    """The revision the stream follows from: the initial list's, or the request's resourceVersion (400 if not one)."""
    if initial is not None:
        return initial[1]
    try:
        return int(wr.resource_version)
    except ValueError:
        raise errors.BadRequest(f"invalid resourceVersion {wr.resource_version!r}: must be an integer") from None


def _encode_batch(
    batch: list[Any], wr: WatchRequest, lines: LineCache, last_rev: int, first_table: bool
) -> tuple[list[bytes], int, bool]:
    """The event lines of one batch for this watcher: (lines, newest revision seen, first_table still)."""
    out: list[bytes] = []
    for ev in batch:
        last_rev = max(last_rev, ev.revision)
        try:
            type_ = classify(ev, wr.match)
            if type_ is None:
                continue
            if wr.to_table is None:
                out.append(lines.line(type_, ev))
            else:
                out.append(_encode_one(type_, ev.obj, wr, first_table))
                first_table = False
        except ValueError:
            continue  # a stored value that is not a JSON object (the cache logged it)
    return out, last_rev, first_table


async def _send_unless_closed(send: Send, body: bytes, sub: Subscription, disconnected: asyncio.Event) -> bool:
    """Send one chunk; False if the subscription was closed (slow client) while the send was blocked.

    A send blocks while the client's TCP window is full; the cache keeps queueing and closes the
    subscription when too much is pending. Without this check the stream would hang forever on a
    client that never reads again.
    """
    task = asyncio.ensure_future(send({"type": "http.response.body", "body": body, "more_body": True}))
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if done:
            task.result()
            return True
        if getattr(sub, "closed_reason", None) is not None or disconnected.is_set():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            return False


def _encode_one(type_: str, obj: Obj, wr: WatchRequest, first: bool) -> bytes:
    if wr.to_table is not None:
        return orjson.dumps({"type": type_, "object": wr.to_table([obj], first)}) + b"\n"
    return orjson.dumps({"type": type_, "object": obj}) + b"\n"


def _bookmark(res: Resource, rev: int) -> bytes:
    obj = {
        "kind": res.kind,
        "apiVersion": res.api_version,
        "metadata": {"resourceVersion": str(rev), "annotations": {}},
    }
    return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"
