"""AdmissionLister (controlplane/apiserver/listers.py): LimitRanges, ResourceQuotas and PriorityClasses
from memory once synced and fed by watch events; None (read the store) before sync, for untracked
prefixes, after the feed ends, and for a moment after this server admitted a write of one of them."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from controlplane.api import registry
from controlplane.apiserver import listers
from controlplane.storage.interface import KeyValue


class FakeSub:
    def __init__(self) -> None:
        self.q: asyncio.Queue[list[Any] | None] = asyncio.Queue()
        self.closed = False

    async def next(self, timeout: float) -> list[Any] | None:
        return await self.q.get()

    def close(self) -> None:
        self.closed = True


def _kv(key: str, obj: dict[str, Any]) -> KeyValue:
    return KeyValue(key, orjson.dumps(obj), 1, 1)


def test_lists_from_memory_follows_events_and_falls_back() -> None:
    async def scenario() -> None:
        lr = registry.LIMITRANGES.storage_key("lr", "ns1")
        stored = {registry.LIMITRANGES.storage_prefix(): [_kv(lr, {"metadata": {"name": "lr"}})]}
        subs: dict[str, FakeSub] = {}

        async def list_store(prefix: str) -> tuple[list[KeyValue], int]:
            return stored.get(prefix, []), 7

        def subscribe(prefix: str, rev: int) -> FakeSub:
            assert rev == 7
            subs[prefix] = FakeSub()
            return subs[prefix]

        lister = listers.AdmissionLister()
        assert lister.list(registry.LIMITRANGES.storage_prefix("ns1")) is None  # not synced yet
        await lister.start(list_store, subscribe)
        assert lister.list(registry.LIMITRANGES.storage_prefix("ns1")) == [{"metadata": {"name": "lr"}}]
        assert lister.list(registry.LIMITRANGES.storage_prefix("ns2")) == []
        assert lister.list(registry.PODS.storage_prefix("ns1")) is None  # not tracked
        assert lister.tracks(registry.RESOURCEQUOTAS) and not lister.tracks(registry.PODS)

        q = registry.RESOURCEQUOTAS.storage_key("q", "ns1")
        subs[registry.RESOURCEQUOTAS.storage_prefix()].q.put_nowait(
            [SimpleNamespace(type="ADDED", key=q, obj={"metadata": {"name": "q"}})]
        )
        subs[registry.LIMITRANGES.storage_prefix()].q.put_nowait([SimpleNamespace(type="DELETED", key=lr)])
        for _ in range(5):
            await asyncio.sleep(0)
        assert lister.list(registry.RESOURCEQUOTAS.storage_prefix("ns1")) == [{"metadata": {"name": "q"}}]
        assert lister.list(registry.LIMITRANGES.storage_prefix("ns1")) == []

        lister.touched()  # this server admitted a write: the store until the watch delivered it
        assert lister.list(registry.RESOURCEQUOTAS.storage_prefix("ns1")) is None
        lister._bypass_until = 0.0

        subs[registry.PRIORITYCLASSES.storage_prefix()].q.put_nowait(None)  # the feed ends
        for _ in range(5):
            await asyncio.sleep(0)
        assert subs[registry.PRIORITYCLASSES.storage_prefix()].closed
        assert lister.list(registry.PRIORITYCLASSES.storage_prefix()) is None
        lister.stop()

    asyncio.run(scenario())
