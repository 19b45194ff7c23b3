"""``AdmissionLister``: the objects admission reads on every pod create, kept in memory (informer-like).

Role: Kubernetes' admission plugins read ResourceQuotas, LimitRanges and PriorityClasses from
informer listers, not from etcd. Ours read the store, which on SQLite is an in-memory index but on
etcd is one network round trip each — three per pod create, the largest cost of the create path on
etcd after the write itself (py-spy, issue 17). This keeps the current objects of those three
resources, listed once from the store and then fed by the API server's watch cache.

Invariants:
- ``list(prefix)`` answers only for prefixes of the tracked resources, only once synced, and only
  while the feed runs; otherwise it returns None and the caller reads the store.
- Read-your-writes on this server: when admission lets a write of a tracked resource through
  (``touched``), the lister is bypassed for ``BYPASS`` seconds, long enough for the watch cache to
  deliver that write, so a pod created right after its namespace's LimitRange sees it. Writes through
  another API server arrive with the watch delay, as with Kubernetes' informers.
- Returned objects are shared with the watch cache: callers must not mutate them.

Concurrency: the feed runs on the event loop; ``list`` is called from store threads. Each resource's
map is replaced or updated under a lock; ``list`` copies the values it returns under it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from controlplane.api import registry
from controlplane.api.registry import Resource

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# ``AdmissionLister.list`` shadows the builtin inside the class body; annotate through aliases.
_Objs = list[Obj]
_KVList = list[Any]
TRACKED: tuple[Resource, ...] = (registry.RESOURCEQUOTAS, registry.LIMITRANGES, registry.PRIORITYCLASSES)
BYPASS = 2.0  # seconds the store is read instead after this server admitted a tracked write


class AdmissionLister:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objs: dict[str, dict[str, Obj]] = {r.storage_prefix(): {} for r in TRACKED}
        self._synced: set[str] = set()
        self._bypass_until = 0.0
        self._tasks: list[asyncio.Future[None]] = []

    def tracks(self, res: Resource) -> bool:
        return res in TRACKED

    def touched(self) -> None:
        self._bypass_until = time.monotonic() + BYPASS

    def serving(self) -> bool:
        """Every tracked resource synced and followed, and no bypass: ``list`` answers from memory."""
        if time.monotonic() < self._bypass_until:
            return False
        with self._lock:
            return len(self._synced) == len(self._objs)

    def list(self, prefix: str) -> _Objs | None:
        if time.monotonic() < self._bypass_until:
            return None
        for root, objs in self._objs.items():
            if prefix.startswith(root):
                with self._lock:
                    if root not in self._synced:
                        return None
                    return [o for k, o in objs.items() if k.startswith(prefix)]
        return None

    async def start(
        self,
        list_store: Callable[[str], Awaitable[tuple[_KVList, int]]],
        subscribe: Callable[[str, int], Any],
    ) -> None:
        """List each resource (``list_store(prefix)`` → KeyValues, revision), then follow the watch cache."""
        for root in self._objs:
            kvs, rev = await list_store(root)
            objs = {}
            for kv in kvs:
                try:
                    objs[kv.key] = orjson.loads(kv.value)
                except ValueError:
                    continue
            sub = subscribe(root, rev)
            with self._lock:
                self._objs[root] = objs
                self._synced.add(root)
            self._tasks.append(asyncio.ensure_future(self._follow(root, sub)))

    async def _follow(self, root: str, sub: Any) -> None:
        try:
            while True:
                batch = await sub.next(5.0)
                if batch is None:
                    return
                with self._lock:
                    objs = self._objs[root]
                    for ev in batch:
                        if ev.type == "DELETED":
                            objs.pop(ev.key, None)
                            continue
                        try:
                            objs[ev.key] = ev.obj
                        except ValueError:
                            continue  # not a JSON object (the watch cache logged it)
        finally:
            sub.close()
            with self._lock:
                self._synced.discard(root)  # stale from now on: callers read the store
            log.info("admission lister for %s stopped; reading the store", root)

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
