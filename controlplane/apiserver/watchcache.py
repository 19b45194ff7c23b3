"""``WatchCache``: one store watch for the whole API server, fanned out to every watcher.

Role: kube-apiserver's cacher. Without it every ``?watch=1`` client would hold its own store
watch and decode every value itself; with it the store is watched once (under ``/registry/``),
each event is kept in a ring of the last ``window`` events and handed to any number of
subscribers. Values are decoded lazily, at most once while recent (orjson,
``metadata.resourceVersion`` set to the event's revision): a watcher without selectors gets the
stored bytes with the resourceVersion spliced in and costs no decoding at all, and the ring holds
bytes, not millions of small dicts that would make every full garbage collection pause the server.

Invariants:
- The ring holds, in revision order, every event under ``prefix`` with a revision in
  ``(oldest, revision]``. A subscriber asking for ``after_revision >= oldest`` gets the ring's
  events after it, then every later event live, each exactly once, in order, with no gap (the
  replay and the registration happen under the same lock the pump appends under). Older than
  ``oldest`` raises ``CompactedError`` (the server turns it into 410 Gone and the client relists,
  as with Kubernetes' own watch cache). At start the ring is pre-filled from the store's history
  (up to ``prefill`` events), so clients resuming after a server restart usually need no relist.
- ``after_revision`` may be ahead of the cache (a client that listed from the store a moment
  ago): its events arrive as the cache catches up; nothing at or below it is delivered.
- A subscriber whose undelivered events exceed ``max_pending`` is closed with a reason (its
  ``next`` returns ``None``); nobody else waits for it. The pump never blocks on a subscriber.
- With ``keep_state=True`` the cache also holds the current decoded object of every key (listed
  from the store at start, then kept up to date by the same events), so ``list(prefix)`` answers
  without touching the store or decoding anything — kube-apiserver's list-from-cache. It costs
  the memory of every object decoded once.
- ``CachedEvent.obj`` is shared by every subscriber: never mutate it. For UPDATE ``prev_obj`` is
  the decoded previous value, decoded on first use (``None`` when the store no longer had it); for DELETE it is the
  same dict as ``obj`` (the last state); for ADDED it is ``None``. Only the newest
  ``DECODED_WINDOW`` events keep their decoded objects; older ones decode again on use.
- A value that is not a JSON object is logged and skipped (by the pump when its shape is wrong,
  by the watch stream when it fails to decode); it never stops the cache.

Concurrency: one pump thread reads the store watch, appends to the ring under a lock and
schedules delivery onto each subscriber's asyncio loop with ``loop.call_soon_threadsafe``. All
of a subscription's queue handling happens on its loop; ``next`` is a coroutine on that loop.
``subscribe``/``revision``/``stop`` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from typing import Any, Literal

import orjson

from controlplane.apiserver.resources import with_resource_version
from controlplane.storage.interface import CompactedError, Event, EventType, Store, StoreError, Watch

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# ``WatchCache.list`` shadows the builtin inside the class body; annotate through an alias.
_Events = list[Event]
EventTypeName = Literal["ADDED", "MODIFIED", "DELETED"]

_TYPES: dict[EventType, EventTypeName] = {
    EventType.CREATE: "ADDED",
    EventType.UPDATE: "MODIFIED",
    EventType.DELETE: "DELETED",
}

DEFAULT_MAX_PENDING = 10_000


#: How many of the newest events keep their decoded objects once decoded. Older ones drop them and
#: decode again if a late watcher asks (replays are rare): a ring of 100,000 decoded objects would
#: hold millions of dicts that every full garbage collection has to walk (pauses of 100+ ms).
DECODED_WINDOW = 4096


class CachedEvent:
    """One change: ``type``, ``key``, ``revision``, and its object decoded on first use, once.

    The cache keeps the stored bytes (``raw``); ``obj`` decodes them the first time a watcher needs
    the object (selectors, tables, the server's own namespace cache) and keeps the result for every
    later subscriber. A watcher without selectors needs no decoding at all: ``object_json`` splices
    the resourceVersion into the stored bytes. ``prev_obj`` of an UPDATE is decoded the same way.
    """

    __slots__ = ("_obj", "_prev", "_prev_raw", "_raw", "key", "revision", "type")

    def __init__(
        self,
        type: EventTypeName,
        key: str,
        revision: int,
        obj: Obj | None = None,
        prev_obj: Obj | None = None,
        *,
        raw: bytes | None = None,
        prev_raw: bytes | None = None,
    ) -> None:
        if obj is None and raw is None:
            raise ValueError("a CachedEvent needs its object or its stored bytes")
        self.type: EventTypeName = type
        self.key = key
        self.revision = revision
        self._raw = raw
        self._obj: Obj | None = obj
        self._prev_raw = prev_raw
        self._prev: Obj | None = prev_obj

    @property
    def obj(self) -> Obj:
        """The object (``metadata.resourceVersion`` = the event's revision). Shared: never mutate it.

        Raises ``ValueError`` if the stored bytes are not a JSON object (logged; watchers skip it).
        """
        obj = self._obj
        if obj is None:
            obj = _decode(self._raw or b"", self.revision, self.key)
            self._obj = obj
        return obj

    @property
    def prev_obj(self) -> Obj | None:
        """UPDATE: the previous object (``None`` if the store no longer had it); DELETE: ``obj``."""
        if self.type == "DELETED":
            return self.obj
        if self._prev is None and self._prev_raw is not None:
            try:
                decoded = orjson.loads(self._prev_raw)
                self._prev = decoded if isinstance(decoded, dict) else None
            except orjson.JSONDecodeError:
                self._prev_raw = None
        return self._prev

    @property
    def decoded(self) -> bool:
        """Whether the decoded object is held right now (it is dropped outside ``DECODED_WINDOW``)."""
        return self._obj is not None

    def object_json(self) -> bytes:
        """The object's JSON as served (with resourceVersion), from the stored bytes when it can."""
        if self._raw is not None:
            spliced = with_resource_version(self._raw, self.revision)
            if spliced is not None:
                return spliced
        return orjson.dumps(self.obj)

    def forget(self) -> None:
        """Drop the decoded objects (they can be decoded again from the stored bytes)."""
        if self._raw is not None:
            self._obj = None
        if self._prev_raw is not None:
            self._prev = None

    def __repr__(self) -> str:
        return f"CachedEvent({self.type}, {self.key!r}, {self.revision})"


def _decode(value: bytes, revision: int, key: str) -> Obj:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        log.error("watch cache: value of %s at revision %d is not JSON: %s", key, revision, exc)
        raise ValueError(f"the stored value of {key} is not JSON") from None
    if not isinstance(obj, dict):
        log.error("watch cache: value of %s at revision %d is not a JSON object", key, revision)
        raise ValueError(f"the stored value of {key} is not a JSON object")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    meta["resourceVersion"] = str(revision)
    return obj


def decode_event(ev: Event) -> CachedEvent | None:
    """A store event for the ring, still undecoded; ``None`` if its value cannot be a JSON object.

    Only a cheap shape check happens here (every value the API server writes is ``encode``'s JSON
    object); ``CachedEvent.obj`` decodes on first use.
    """
    value = ev.value
    if not (value[:1] == b"{" and value.rstrip()[-1:] == b"}"):
        log.error("watch cache: value of %s at revision %d is not a JSON object", ev.key, ev.revision)
        return None
    if ev.type is EventType.UPDATE:
        return CachedEvent("MODIFIED", ev.key, ev.revision, raw=value, prev_raw=ev.prev_value)
    if ev.type is EventType.DELETE:
        return CachedEvent("DELETED", ev.key, ev.revision, raw=value)
    return CachedEvent("ADDED", ev.key, ev.revision, raw=value)


class Subscription:
    """One watcher's view of the cache. Create with ``WatchCache.subscribe``."""

    def __init__(
        self,
        cache: WatchCache,
        prefix: str,
        after_revision: int,
        loop: asyncio.AbstractEventLoop,
        max_pending: int,
    ) -> None:
        self._cache = cache
        self.prefix = prefix
        self.after_revision = after_revision
        self._loop = loop
        self._max_pending = max_pending
        # Loop-side state (touched only on ``loop``):
        self._queue: deque[list[CachedEvent]] = deque()
        self._pending = 0
        self._waiter: asyncio.Future[None] | None = None
        # Read by the pump thread too; a stale read only costs one wasted delivery.
        self.closed = False
        self.closed_reason: str | None = None

    # -- consumer side (on the loop) -------------------------------------------------------

    async def next(self, timeout: float) -> list[CachedEvent] | None:
        """The events since the last call; ``[]`` after ``timeout`` with none; ``None`` once closed."""
        if self.closed:
            return None
        if not self._queue and timeout > 0:
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                pass
            finally:
                if self._waiter is waiter:
                    self._waiter = None
        if self.closed:
            return None
        if not self._queue:
            return []
        if len(self._queue) == 1:
            out = self._queue.popleft()
        else:
            out = [ev for batch in self._queue for ev in batch]
            self._queue.clear()
        self._pending = 0
        return out

    def close(self, reason: str = "closed by the watcher") -> None:
        """Stop receiving; a pending or later ``next`` returns ``None``. Any thread; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.closed_reason = reason
        self._cache._unsubscribe(self)
        self._call_on_loop(self._wake_closed)

    # -- producer side ---------------------------------------------------------------------

    def _push(self, events: list[CachedEvent]) -> None:
        """On the loop: queue a batch, or close the subscription if it is too far behind."""
        if self.closed:
            return
        self._pending += len(events)
        if self._pending > self._max_pending:
            log.info("watch on %s closed: %d events pending (too slow)", self.prefix, self._pending)
            self.closed_reason = f"too slow: more than {self._max_pending} events pending"
            self.closed = True
            self._queue.clear()
            self._cache._unsubscribe(self)
            self._cache.slow_closed += 1
            self._wake_closed()
            return
        self._queue.append(events)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_closed(self) -> None:
        self._queue.clear()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _call_on_loop(self, fn: Any, *args: Any) -> bool:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody will ever read this subscription
            self.closed = True
            if self.closed_reason is None:
                self.closed_reason = "event loop closed"
            return False
        return True


class WatchCache:
    def __init__(
        self,
        store: Store,
        prefix: str = "/registry/",
        window: int = 100_000,
        *,
        prefill: int = 10_000,
        poll_timeout: float = 0.5,
        keep_state: bool = False,
    ) -> None:
        if window < 1:
            raise ValueError(f"watch cache window must be at least 1, got {window}")
        self._store = store
        self._prefix = prefix
        self._window = window
        self._prefill = min(prefill, window)
        self._poll_timeout = poll_timeout
        self._lock = threading.Lock()
        self._ring: deque[CachedEvent] = deque()
        self._recent: deque[CachedEvent] = deque()  # the newest DECODED_WINDOW events (may keep objects)
        self._oldest = 0  # the ring has every event with revision > _oldest (up to _revision)
        self._revision = 0
        self._subs: set[Subscription] = set()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._watch: Watch | None = None
        self._stopping = threading.Event()
        self._restarting = False
        self._thread: threading.Thread | None = None
        # keep_state: the current decoded object of every key (for ``list``), at _state_rev or later.
        self._keep_state = keep_state
        self._state: dict[str, Obj] = {}
        self._state_rev = 0
        self.slow_closed = 0  # subscriptions closed for being too slow (a metric)
        self.events_seen = 0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store watch (pre-filling the ring from history) and start the pump thread."""
        if self._thread is not None:
            raise RuntimeError("watch cache already started")
        if self._keep_state:
            self._load_state()
            current = self._state_rev
        else:
            current = self._store.current_revision()
        watch, start = self._open_watch(max(0, current - self._prefill))
        with self._lock:
            self._oldest = self._revision = start
            self._watch = watch
        self._thread = threading.Thread(target=self._pump, name="watch-cache", daemon=True)
        self._thread.start()

    def _load_state(self) -> None:
        """List the store and decode every object once (keep_state); events after it update it."""
        kvs, rev = self._store.list(self._prefix)
        state: dict[str, Obj] = {}
        for kv in kvs:
            try:
                obj = orjson.loads(kv.value)
            except orjson.JSONDecodeError:
                log.error("watch cache: value of %s is not JSON; left out of the cache", kv.key)
                continue
            if isinstance(obj, dict):
                meta = obj.get("metadata")
                if not isinstance(meta, dict):
                    meta = obj["metadata"] = {}
                meta["resourceVersion"] = str(kv.mod_revision)
                state[kv.key] = obj
        with self._lock:
            self._state = state
            self._state_rev = rev

    def _open_watch(self, start: int) -> tuple[Watch, int]:
        for _ in range(10):
            try:
                return self._store.watch(self._prefix, start), start
            except CompactedError as exc:
                start = max(start + 1, exc.compacted)  # history is gone below that point
        return self._store.watch(self._prefix, self._store.current_revision()), self._store.current_revision()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            watch = self._watch
            subs = list(self._subs)
        if watch is not None:
            watch.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        for sub in subs:
            sub.close("watch cache stopped")

    @property
    def revision(self) -> int:
        """The newest revision the cache is current to (what ``list`` reads at)."""
        with self._lock:
            return max(self._revision, self._state_rev)

    def list(self, prefix: str) -> tuple[list[Obj], int]:
        """Every object under ``prefix`` (sorted by key) and the revision they are current at.

        Only with ``keep_state=True``. The objects are shared: never mutate them. For a read as
        fresh as the store's, ``await wait_for(store.current_revision(), timeout)`` first.
        """
        if not self._keep_state:
            raise RuntimeError("WatchCache.list needs keep_state=True")
        with self._lock:
            pairs = [(k, obj) for k, obj in self._state.items() if k.startswith(prefix)]
            rev = max(self._revision, self._state_rev)
        pairs.sort(key=lambda kv: kv[0])
        return [obj for _, obj in pairs], rev

    @property
    def oldest(self) -> int:
        """Subscriptions can start at any ``after_revision`` >= this."""
        with self._lock:
            return self._oldest

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    # -- subscribers -----------------------------------------------------------------------

    def subscribe(
        self,
        prefix: str,
        after_revision: int,
        loop: asyncio.AbstractEventLoop,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> Subscription:
        """Events under ``prefix`` with revision > ``after_revision``: replay, then live."""
        if not prefix.startswith(self._prefix):
            raise ValueError(f"prefix {prefix!r} is outside the cache's prefix {self._prefix!r}")
        sub = Subscription(self, prefix, after_revision, loop, max_pending)
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("watch cache is stopped")
            if self._restarting:
                raise CompactedError(after_revision, max(self._revision, after_revision + 1))
            if after_revision < self._oldest:
                raise CompactedError(after_revision, self._oldest)
            replay: list[CachedEvent] = []
            # Walk back from the newest event: the replay is usually short (a recent revision).
            for ev in reversed(self._ring):
                if ev.revision <= after_revision:
                    break
                if ev.key.startswith(prefix):
                    replay.append(ev)
            if replay:
                replay.reverse()
                sub._queue.append(replay)
                sub._pending = len(replay)
            self._subs.add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    async def wait_for(self, revision: int, timeout: float) -> bool:
        """Wait until the cache has applied ``revision``; ``False`` on timeout."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if max(self._revision, self._state_rev) >= revision:
                return True
            fut: asyncio.Future[None] = loop.create_future()
            entry = (revision, loop, fut)
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # -- the pump --------------------------------------------------------------------------

    def _pump(self) -> None:
        """Run ``_pump_loop``; if anything unexpected escapes it, never die silently (every
        watcher would stall): close the subscribers so clients re-watch, then start over."""
        while not self._stopping.is_set():
            try:
                self._pump_loop()
            except Exception:
                log.exception("watch cache pump failed; closing subscribers and restarting")
                with self._lock:
                    subs = list(self._subs)
                for sub in subs:
                    sub.close("watch cache error; re-watch")
                if self._stopping.wait(1.0):
                    return
                with contextlib.suppress(Exception):
                    self._restart("watch cache error; re-watch")

    def _pump_loop(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            watch = self._watch
            assert watch is not None
            t0 = time.monotonic()
            try:
                batch = watch.next_batch(timeout=self._poll_timeout)
                backoff = 0.1
            except CompactedError as exc:
                self._restart_after_compaction(exc)
                continue
            except (StoreError, RuntimeError) as exc:
                if self._stopping.is_set():
                    return
                log.warning("watch cache: store watch failed (%s); re-watching from %d", exc, self._revision)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._rewatch()
                continue
            # MemoryStore/SqliteStore watches report how far they scanned, events or not: that
            # lets ``revision`` advance past writes outside the prefix, for ``wait_for``.
            progress = getattr(watch, "position", 0)
            if batch:
                self._apply(batch, progress)
            elif isinstance(progress, int) and progress > self._revision:
                with self._lock:
                    self._revision = max(self._revision, progress)
                    self._resolve_waiters()
            elif time.monotonic() - t0 < self._poll_timeout / 2:
                # An empty batch long before the timeout: the store (or its watch) was closed
                # under us. Do not spin; stop() or a re-watch will end this.
                if self._stopping.wait(self._poll_timeout):
                    return
                self._rewatch()

    def _apply(self, batch: _Events, progress: Any) -> None:
        decoded = [ce for ce in map(decode_event, batch) if ce is not None]
        last = batch[-1].revision
        with self._lock:
            if self._keep_state:
                state = self._state
                floor = self._state_rev  # prefilled history at or below it is already in the state
                for ce in decoded:
                    if ce.revision <= floor:
                        continue
                    if ce.type == "DELETED":
                        state.pop(ce.key, None)
                    else:
                        try:
                            state[ce.key] = ce.obj
                        except ValueError:
                            continue  # not a JSON object (logged)
            ring = self._ring
            ring.extend(decoded)
            while len(ring) > self._window:
                self._oldest = ring.popleft().revision
            recent = self._recent
            recent.extend(decoded)
            while len(recent) > DECODED_WINDOW:
                recent.popleft().forget()
            self._revision = max(self._revision, last, progress if isinstance(progress, int) else 0)
            self.events_seen += len(batch)
            subs = list(self._subs)
            self._resolve_waiters()
        if not decoded or not subs:
            return
        # Filter once per distinct prefix, not once per subscriber.
        by_prefix: dict[str, list[CachedEvent]] = {}
        for sub in subs:
            if sub.closed:
                continue
            events = by_prefix.get(sub.prefix)
            if events is None:
                p = sub.prefix
                events = by_prefix[p] = [ev for ev in decoded if ev.key.startswith(p)]
            if events and events[-1].revision > sub.after_revision:
                if events[0].revision <= sub.after_revision:  # a subscriber ahead of the cache
                    events = [ev for ev in events if ev.revision > sub.after_revision]
                sub._call_on_loop(sub._push, events)

    def _resolve_waiters(self) -> None:
        """Lock held: wake every ``wait_for`` whose revision has been reached."""
        if not self._waiters:
            return
        keep = []
        for entry in self._waiters:
            rev, loop, fut = entry
            if rev <= max(self._revision, self._state_rev):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_set_done, fut)
            else:
                keep.append(entry)
        self._waiters = keep

    def _rewatch(self) -> None:
        old = self._watch
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        try:
            watch = self._store.watch(self._prefix, self._revision)
        except CompactedError as exc:
            self._restart_after_compaction(exc)
            return
        except Exception as exc:
            log.warning("watch cache: re-watch failed: %s", exc)
            return
        with self._lock:
            self._watch = watch

    def _restart_after_compaction(self, exc: CompactedError) -> None:
        """We fell behind the store's history: everyone must relist (as after etcd compaction)."""
        log.warning("watch cache fell behind compacted store history (%s); restarting", exc)
        self._restart("watch cache restarted after store compaction; relist")

    def _restart(self, reason: str) -> None:
        """Start over at the store's current revision; current subscribers are closed (``reason``).

        While it runs, ``subscribe`` answers ``CompactedError`` (the client relists): a
        subscription made against the old ring could otherwise miss the events in between.
        """
        with self._lock:
            self._restarting = True
            subs = list(self._subs)
            self._subs.clear()
        for sub in subs:
            sub.close(reason)
        old = self._watch
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        if self._keep_state:
            self._load_state()
            current = self._state_rev
        else:
            current = self._store.current_revision()
        watch, start = self._open_watch(current)
        with self._lock:
            self._ring.clear()
            self._recent.clear()
            self._oldest = self._revision = start
            self._watch = watch
            self._restarting = False


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
