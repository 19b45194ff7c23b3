"""The informer: list + watch one resource into a local, indexed cache and tell handlers what changed.

Role: client-go's reflector + store + shared informer in one class. Controllers read from the cache
(never from the API server in their hot path) and let handlers enqueue keys.

The reflector loop (one thread per informer):

1. **List** (``resourceVersion`` unset: a consistent, current read; in pages of ``page_size``
   following ``continue`` tokens, as client-go's pager) and *replace* the cache: objects
   new to the cache fire ``on_add``, changed ones ``on_update(old, new)``, vanished ones
   ``on_delete(last_known)``. The informer is *synced* after the first list.
2. **Watch** from the list's resourceVersion (with bookmarks and a server-side timeout of a few
   minutes). ADDED/MODIFIED/DELETED update the cache and fire handlers; BOOKMARK only advances the
   resourceVersion.
3. When the stream ends normally, **re-watch** from the last resourceVersion seen (nothing lost:
   the server replays everything after it). On ``410 Gone`` (our resourceVersion was compacted
   away) go back to 1 and **relist**. On transport errors back off (0.1 s doubling to 5 s) and
   re-watch; a failing list is retried the same way.

Resync (``resync_period`` > 0): every period, ``on_update(obj, obj)`` is delivered for every cached
object, so a level-triggered controller periodically re-checks everything even without changes.

Keys are ``namespace/name`` (or ``name`` for cluster-scoped kinds), like client-go's
``MetaNamespaceKeyFunc``. Index functions map an object to a list of index values.

Typed reads: ``view(Model.decode)`` gives a ``View`` of the same cache as typed read models
(``controlplane.api.models``), decoded once when an object enters the cache; handlers and the raw
cache keep the wire dicts, which controllers copy and write back.

Concurrency: the cache is guarded by one lock; ``get``/``list``/``by_index`` return the stored dicts
(treat them as read-only — copy before mutating). Handlers run one at a time (a dispatch lock), in
the informer's thread or the resync thread, in the order changes were applied to the cache. A
handler added after the informer started first receives ``on_add`` for every cached object.
"""

from __future__ import annotations

import builtins
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import httpx

from controlplane.api import errors
from controlplane.api.registry import Resource
from controlplane.client.rest import ApiClient, WatchStream

log = logging.getLogger(__name__)

Obj = dict[str, Any]
IndexFunc = Callable[[Obj], list[str]]
M = TypeVar("M")


class View(Generic[M]):
    """The informer's cache as typed read models (``controlplane.api.models``), decoded once.

    Made by ``Informer.view(Node.decode)``: every object is decoded when it enters the cache (not
    on each read), under the informer's lock, so a view is always exactly the cache. An object
    that does not decode is logged once per resourceVersion and left out of the view (the raw
    cache and the handlers still see it); it never stops the informer.
    """

    def __init__(self, informer: Informer, decode: Callable[[Obj], M]) -> None:
        self._informer = informer
        self._decode = decode
        self._items: dict[str, M] = {}

    def get(self, key: str) -> M | None:
        with self._informer._lock:
            return self._items.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> M | None:
        return self.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[M]:
        with self._informer._lock:
            return list(self._items.values())

    def by_index(self, name: str, value: str) -> builtins.list[M]:
        """The typed objects under one value of one of the informer's indexes."""
        with self._informer._lock:
            keys = self._informer._indices.get(name)
            if keys is None:
                raise KeyError(f"informer {self._informer.name}: no index named {name!r}")
            return [m for k in keys.get(value, ()) if (m := self._items.get(k)) is not None]

    def _put(self, key: str, obj: Obj) -> None:
        try:
            self._items[key] = self._decode(obj)
        except Exception as exc:  # a malformed object must not stop the reflector
            self._items.pop(key, None)
            log.warning("informer %s: %s %s does not decode (%s); left out", self._informer.name, key, _rv(obj), exc)

    def _remove(self, key: str) -> None:
        self._items.pop(key, None)

    def _clear(self) -> None:
        self._items = {}


def object_key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name', '')}" if ns else str(meta.get("name", ""))


def namespace_index(obj: Obj) -> list[str]:
    ns = (obj.get("metadata") or {}).get("namespace")
    return [ns] if ns else []


def _rv(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class _Handler:
    def __init__(
        self,
        on_add: Callable[[Obj], None] | None,
        on_update: Callable[[Obj, Obj], None] | None,
        on_delete: Callable[[Obj], None] | None,
    ) -> None:
        self.on_add = on_add
        self.on_update = on_update
        self.on_delete = on_delete


class Informer:
    def __init__(
        self,
        client: ApiClient,
        res: Resource,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resync_period: float = 0.0,
        *,
        watch_timeout: tuple[int, int] = (300, 600),
        name: str = "",
        page_size: int = 500,
    ) -> None:
        self.client = client
        self.res = res
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.name = name or res.plural
        self._lock = threading.RLock()
        self._dispatch = threading.RLock()
        self._items: dict[str, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        # index name -> value -> keys; key_values: index name -> key -> values (for removal)
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._key_values: dict[str, dict[str, list[str]]] = {}
        self._handlers: list[_Handler] = []
        self._views: list[View[Any]] = []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stream: WatchStream | None = None
        self._started = False
        self.last_resource_version = ""
        # Counters, mostly for tests and debugging.
        self.lists = 0
        self.watches = 0

    # -- configuration --------------------------------------------------------------------------------
    def add_handler(
        self,
        on_add: Callable[[Obj], None] | None = None,
        on_update: Callable[[Obj, Obj], None] | None = None,
        on_delete: Callable[[Obj], None] | None = None,
    ) -> None:
        h = _Handler(on_add, on_update, on_delete)
        with self._dispatch:
            self._handlers.append(h)
            if self._started and on_add is not None:
                for obj in self.list():
                    self._call(on_add, obj)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        with self._lock:
            self._index_funcs[name] = fn
            self._indices[name] = {}
            self._key_values[name] = {}
            for key, obj in self._items.items():
                self._index_locked(name, key, obj)

    def view(self, decode: Callable[[Obj], M]) -> View[M]:
        """A typed view of this cache: ``decode`` (e.g. ``Node.decode``) runs once per object change."""
        v: View[M] = View(self, decode)
        with self._lock:
            for key, obj in self._items.items():
                v._put(key, obj)
            self._views.append(v)
        return v

    # -- cache reads ----------------------------------------------------------------------------------
    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._items.get(key)

    def get_by_name(self, name: str, namespace: str | None = None) -> Obj | None:
        return self.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        with self._lock:
            if name not in self._indices:
                raise KeyError(f"informer {self.name}: no index named {name!r}")
            return [self._items[k] for k in self._indices[name].get(value, ())]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        t = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._threads.append(t)
        t.start()
        if self.resync_period > 0:
            r = threading.Thread(target=self._resync_loop, name=f"resync-{self.name}", daemon=True)
            self._threads.append(r)
            r.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    # -- the reflector --------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.1
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list_and_replace()
                    need_list = False
                started = time.monotonic()
                if self._watch_once() == 0 and time.monotonic() - started < 1.0:
                    # A stream that ends at once and empty, again and again, must not spin.
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                else:
                    backoff = 0.1
            except errors.Gone:
                log.info("informer %s: resourceVersion %s expired; relisting", self.name, self.last_resource_version)
                need_list = True
            except (httpx.HTTPError, errors.ApiError, OSError) as e:
                if self._stop.is_set():
                    break
                log.warning("informer %s: %s; retrying in %.1fs", self.name, e, backoff)
                self._stop.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 5.0)
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("informer %s: unexpected error; relisting", self.name)
                need_list = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _list_and_replace(self) -> None:
        items, list_rv = self._list_pages()
        self.lists += 1
        kind = self.res.kind
        api_version = self.res.api_version
        fresh: dict[str, Obj] = {}
        for obj in items:
            # List items carry no kind/apiVersion on the wire; restore them as client-go does.
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api_version)
            fresh[object_key(obj)] = obj
        with self._dispatch:
            with self._lock:
                old_items = self._items
                self._items = {}
                for v in self._views:
                    v._clear()
                for name in self._indices:
                    self._indices[name] = {}
                    self._key_values[name] = {}
                for key, obj in fresh.items():
                    self._put_locked(key, obj)
            for key, obj in fresh.items():
                old = old_items.get(key)
                if old is None:
                    self._fire_add(obj)
                elif _rv(old) != _rv(obj):
                    self._fire_update(old, obj)
            for key, old in old_items.items():
                if key not in fresh:
                    self._fire_delete(old)
            self.last_resource_version = list_rv
        self._synced.set()

    def _list_pages(self) -> tuple[builtins.list[Obj], str]:
        """The whole collection, ``page_size`` items per request (client-go's pager: every page is
        served at the first page's revision; an expired continue token raises Gone → relist)."""
        items: builtins.list[Obj] = []
        token: str | None = None
        list_rv = ""
        while True:
            result = self.client.list(
                self.res,
                namespace=self.namespace,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
                limit=self.page_size or None,
                continue_=token,
            )
            meta = result.get("metadata") or {}
            if not list_rv:
                list_rv = str(meta.get("resourceVersion", ""))
            items.extend(result.get("items") or [])
            token = meta.get("continue") or None
            if not token or self._stop.is_set():
                return items, list_rv

    def _watch_once(self) -> int:
        """Consume one watch stream; return how many events it carried."""
        lo, hi = self.watch_timeout
        stream = self.client.watch(
            self.res,
            namespace=self.namespace,
            resource_version=self.last_resource_version,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=random.randint(lo, hi) if hi > 0 else None,
            allow_bookmarks=True,
        )
        self.watches += 1
        self._stream = stream
        n = 0
        try:
            if self._stop.is_set():
                return n
            for ev in stream:
                if self._stop.is_set():
                    return n
                n += 1
                self._apply(ev.type, ev.object)
            return n
        finally:
            stream.close()
            self._stream = None

    def _apply(self, etype: str, obj: Obj) -> None:
        rv = _rv(obj)
        if etype == "BOOKMARK":
            if rv:
                self.last_resource_version = rv
            return
        obj.setdefault("kind", self.res.kind)
        obj.setdefault("apiVersion", self.res.api_version)
        key = object_key(obj)
        with self._dispatch:
            with self._lock:
                old = self._items.get(key)
                if etype == "DELETED":
                    if old is not None:
                        self._remove_locked(key)
                else:
                    self._put_locked(key, obj)
            if etype == "DELETED":
                self._fire_delete(obj)
            elif old is None:
                self._fire_add(obj)
            else:
                self._fire_update(old, obj)
            if rv:
                self.last_resource_version = rv

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync_period):
            if not self.has_synced():
                continue
            with self._dispatch:
                for obj in self.list():
                    self._fire_update(obj, obj)

    # -- cache internals ------------------------------------------------------------------------------
    def _put_locked(self, key: str, obj: Obj) -> None:
        if key in self._items:
            self._unindex_locked(key)
        self._items[key] = obj
        for name in self._index_funcs:
            self._index_locked(name, key, obj)
        for v in self._views:
            v._put(key, obj)

    def _remove_locked(self, key: str) -> None:
        self._unindex_locked(key)
        self._items.pop(key, None)
        for v in self._views:
            v._remove(key)

    def _index_locked(self, name: str, key: str, obj: Obj) -> None:
        try:
            values = self._index_funcs[name](obj)
        except Exception:
            log.exception("informer %s: index %s failed on %s", self.name, name, key)
            values = []
        self._key_values[name][key] = values
        idx = self._indices[name]
        for v in values:
            idx.setdefault(v, set()).add(key)

    def _unindex_locked(self, key: str) -> None:
        for name, kv in self._key_values.items():
            idx = self._indices[name]
            for v in kv.pop(key, ()):
                keys = idx.get(v)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[v]

    # -- dispatch -------------------------------------------------------------------------------------
    def _call(self, fn: Callable[..., None], *args: Obj) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("informer %s: handler %s failed", self.name, getattr(fn, "__name__", fn))

    def _fire_add(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_add is not None:
                self._call(h.on_add, obj)

    def _fire_update(self, old: Obj, new: Obj) -> None:
        for h in self._handlers:
            if h.on_update is not None:
                self._call(h.on_update, old, new)

    def _fire_delete(self, obj: Obj) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)
