"""Keep the RBAC policy index and the Node authorizer's graph current from the watch cache.

Role: list a storage prefix once from the store, then follow the server's shared watch cache from
that revision (no store watch of our own), handing each object to a callback. If the subscription
is closed (too slow, or the cache restarted after compaction) the follower starts over: it resets
the consumer and lists again, so it converges whatever happened.

Pods are most of the write traffic: the graph needs only pods bound to a node, so an ADDED or
MODIFIED pod whose stored bytes do not even mention ``nodeName`` is skipped without decoding
(``nodeName`` never goes away once set, and a DELETE always reaches the graph).

Invariants: ``synced`` is set once the first list has been applied (before that the RBAC index is
empty: requests are refused, never wrongly allowed). Concurrency: the follow loop is one asyncio
task on the server's loop; callbacks run there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from controlplane.storage.interface import CompactedError, KeyValue

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Apply = Callable[[str, Obj, bool], None]  # (key, object, deleted)


class Follower:
    def __init__(
        self,
        prefix: str,
        list_fn: Callable[[str], Awaitable[tuple[list[KeyValue], int]]],
        subscribe: Callable[[str, int], Any],
        apply: Apply,
        reset: Callable[[], None],
        skip_raw: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.prefix = prefix
        self._list = list_fn
        self._subscribe = subscribe
        self._apply = apply
        self._reset = reset
        self._skip_raw = skip_raw
        self.synced = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._once()
            except asyncio.CancelledError:
                raise
            except CompactedError:
                log.info("authorization feed for %s fell behind compaction; relisting", self.prefix)
            except Exception:
                log.warning("authorization feed for %s failed; relisting", self.prefix, exc_info=True)
                await asyncio.sleep(1.0)

    async def _once(self) -> None:
        kvs, rev = await self._list(self.prefix)
        self._reset()
        for kv in kvs:
            try:
                obj = orjson.loads(kv.value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                self._apply(kv.key, obj, False)
        self.synced.set()
        sub = self._subscribe(self.prefix, rev)
        try:
            while True:
                batch = await sub.next(30.0)
                if batch is None:
                    return  # closed: relist
                for ev in batch:
                    deleted = ev.type == "DELETED"
                    raw = getattr(ev, "_raw", None)  # CachedEvent's stored bytes, when it has them
                    if not deleted and self._skip_raw is not None and isinstance(raw, bytes) and self._skip_raw(raw):
                        continue
                    try:
                        obj = ev.obj
                    except ValueError:
                        continue
                    self._apply(ev.key, obj, deleted)
        finally:
            sub.close()


def plural_of(key: str) -> str:
    """``/registry/rbac.authorization.k8s.io/roles/ns/name`` → ``roles``."""
    parts = key.split("/")
    return parts[3] if len(parts) > 3 else ""
