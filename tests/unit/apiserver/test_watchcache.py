"""WatchCache on a MemoryStore: decode once, replay + live, prefixes, slow watchers, stop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from controlplane.apiserver.watchcache import CachedEvent, Subscription, WatchCache
from controlplane.storage.interface import CompactedError, Event, StoreError, Watch
from controlplane.storage.memory import MemoryStore


def pod(name: str, ns: str = "default", **extra: Any) -> bytes:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, **extra}
    return orjson.dumps(obj)


def run(fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(fn(), 30))


async def collect(sub: Subscription, count: int, timeout: float = 10.0) -> list[CachedEvent]:
    got: list[CachedEvent] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} events arrived"
        batch = await sub.next(0.5)
        assert batch is not None, f"subscription closed: {sub.closed_reason}"
        got.extend(batch)
    return got


def test_events_are_decoded_with_resource_version_and_types() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/pods/", store.current_revision(), asyncio.get_running_loop())
            r1 = store.create("/registry/pods/default/a", pod("a"))
            r2 = store.update("/registry/pods/default/a", pod("a", spec={"x": 1}), r1)
            _, r3 = store.delete("/registry/pods/default/a")
            events = await collect(sub, 3)
            assert [(e.type, e.key, e.revision) for e in events] == [
                ("ADDED", "/registry/pods/default/a", r1),
                ("MODIFIED", "/registry/pods/default/a", r2),
                ("DELETED", "/registry/pods/default/a", r3),
            ]
            assert [e.obj["metadata"]["resourceVersion"] for e in events] == [str(r1), str(r2), str(r3)]
            assert events[0].prev_obj is None
            assert events[1].prev_obj is not None and "spec" not in events[1].prev_obj
            assert events[1].obj["spec"] == {"x": 1}
            assert events[2].prev_obj is events[2].obj and events[2].obj["spec"] == {"x": 1}
        finally:
            cache.stop()

    run(main)


def test_each_event_is_decoded_once_for_all_subscribers() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        loop = asyncio.get_running_loop()
        try:
            rev = store.current_revision()
            a, b = cache.subscribe("/registry/", rev, loop), cache.subscribe("/registry/pods/", rev, loop)
            store.create("/registry/pods/default/a", pod("a"))
            ea, eb = await collect(a, 1), await collect(b, 1)
            assert ea[0].obj is eb[0].obj
        finally:
            cache.stop()

    run(main)


def test_replay_from_the_ring_then_live_filtered_by_prefix() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        loop = asyncio.get_running_loop()
        try:
            start = store.current_revision()
            revs = [store.create(f"/registry/pods/ns{i % 2}/p{i}", pod(f"p{i}", f"ns{i % 2}")) for i in range(6)]
            store.create("/registry/services/ns0/s", b'{"kind":"Service","metadata":{"name":"s"}}')
            assert await cache.wait_for(store.current_revision(), 5)
            # Replay only what is after the requested revision, only under the prefix.
            sub = cache.subscribe("/registry/pods/ns0/", revs[1], loop)
            replay = await collect(sub, 2)
            assert [e.revision for e in replay] == [revs[2], revs[4]]
            # Then live, still filtered.
            store.create("/registry/pods/ns1/late", pod("late", "ns1"))
            live_rev = store.create("/registry/pods/ns0/late", pod("late", "ns0"))
            live = await collect(sub, 1)
            assert [(e.key, e.revision) for e in live] == [("/registry/pods/ns0/late", live_rev)]
            assert await sub.next(0.05) == []
            # A full replay from the start includes everything under /registry/.
            everything = cache.subscribe("/registry/", start, loop)
            assert len(await collect(everything, 9)) == 9
        finally:
            cache.stop()

    run(main)


def test_prefill_lets_clients_resume_from_before_the_cache_started() -> None:
    async def main() -> None:
        store = MemoryStore()
        early = store.create("/registry/pods/default/a", pod("a"))
        store.create("/registry/pods/default/b", pod("b"))
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/pods/", early, asyncio.get_running_loop())
            assert [e.key for e in await collect(sub, 1)] == ["/registry/pods/default/b"]
        finally:
            cache.stop()

    run(main)


def test_older_than_the_window_is_compacted() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store, window=3, prefill=0)
        cache.start()
        loop = asyncio.get_running_loop()
        try:
            start = store.current_revision()
            revs = [store.create(f"/registry/pods/default/p{i}", pod(f"p{i}")) for i in range(5)]
            assert await cache.wait_for(revs[-1], 5)
            assert cache.oldest == revs[1]
            with pytest.raises(CompactedError):
                cache.subscribe("/registry/pods/", start, loop)
            sub = cache.subscribe("/registry/pods/", revs[1], loop)
            assert [e.revision for e in await collect(sub, 3)] == revs[2:]
        finally:
            cache.stop()

    run(main)


def test_subscriber_ahead_of_the_cache_gets_nothing_at_or_below_its_revision() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        try:
            base = store.current_revision()
            sub = cache.subscribe("/registry/", base + 2, asyncio.get_running_loop())
            for i in range(4):
                store.create(f"/registry/pods/default/p{i}", pod(f"p{i}"))
            assert [e.revision for e in await collect(sub, 2)] == [base + 3, base + 4]
        finally:
            cache.stop()

    run(main)


def test_hundred_subscribers_and_a_slow_one_that_is_closed() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        loop = asyncio.get_running_loop()
        try:
            rev = store.current_revision()
            fast = [cache.subscribe("/registry/pods/", rev, loop) for _ in range(100)]
            slow = cache.subscribe("/registry/pods/", rev, loop, max_pending=50)
            n = 500

            def write() -> None:
                for i in range(n):
                    store.create(f"/registry/pods/default/p{i}", pod(f"p{i}"))

            writer = threading.Thread(target=write)
            writer.start()
            results = await asyncio.gather(*(collect(s, n) for s in fast))
            writer.join()
            for events in results:
                assert [e.revision for e in events] == list(range(rev + 1, rev + n + 1))
            # The slow one never read: it was closed with a reason, and did not hold anyone up.
            assert slow.closed and slow.closed_reason is not None and "too slow" in slow.closed_reason
            assert await slow.next(1) is None
            assert cache.slow_closed == 1
            assert cache.subscribers == 100
        finally:
            cache.stop()

    run(main)


def test_close_and_stop_end_subscriptions() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        loop = asyncio.get_running_loop()
        rev = store.current_revision()
        a = cache.subscribe("/registry/", rev, loop)
        b = cache.subscribe("/registry/", rev, loop)
        assert await a.next(0.05) == []
        waiting = asyncio.ensure_future(a.next(30))
        await asyncio.sleep(0)
        a.close()
        assert await waiting is None
        assert cache.subscribers == 1
        waiting_b = asyncio.ensure_future(b.next(30))
        await asyncio.sleep(0)
        await asyncio.get_running_loop().run_in_executor(None, cache.stop)
        assert await waiting_b is None
        assert b.closed_reason == "watch cache stopped"
        with pytest.raises(RuntimeError):
            cache.subscribe("/registry/", rev, loop)

    run(main)


def test_cancelled_next_leaves_the_subscription_usable() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/", store.current_revision(), asyncio.get_running_loop())
            task = asyncio.ensure_future(sub.next(30))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            r = store.create("/registry/pods/default/a", pod("a"))
            assert [e.revision for e in await collect(sub, 1)] == [r]
        finally:
            cache.stop()

    run(main)


def test_wait_for_revision() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        try:
            r = store.create("/registry/pods/default/a", pod("a"))
            assert await cache.wait_for(r, 5)
            assert cache.revision >= r
            # Writes outside the prefix still move the cache's revision (store progress).
            outside = store.create("/other/x", b"{}")
            assert await cache.wait_for(outside, 5)
            assert not await cache.wait_for(outside + 10, 0.1)
        finally:
            cache.stop()

    run(main)


def test_bad_values_are_skipped_not_fatal() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/", store.current_revision(), asyncio.get_running_loop())
            store.create("/registry/pods/default/bad", b"not json")
            good = store.create("/registry/pods/default/good", pod("good"))
            assert [e.revision for e in await collect(sub, 1)] == [good]
            # Shaped like an object but broken: found on first use, as ValueError (watchers skip it).
            broken = store.create("/registry/pods/default/broken", b"{broken}")
            (ev,) = await collect(sub, 1)
            assert ev.revision == broken
            with pytest.raises(ValueError, match="not JSON"):
                _ = ev.obj
        finally:
            cache.stop()

    run(main)


class FlakyStore(MemoryStore):
    """A store whose first watch breaks after one batch (like an etcd stream that drops)."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0

    def watch(self, prefix: str, after_revision: int) -> Any:
        inner = super().watch(prefix, after_revision)
        self.watches += 1
        if self.watches > 1:
            return inner

        class Broken:
            def next_batch(self, timeout: float | None = None) -> list[Event]:
                raise StoreError("stream broke")

            def close(self) -> None:
                inner.close()

        broken: Watch = Broken()
        return broken


def test_pump_rewatches_from_its_revision_after_a_store_watch_failure() -> None:
    async def main() -> None:
        store = FlakyStore()
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/", store.current_revision(), asyncio.get_running_loop())
            revs = [store.create(f"/registry/pods/default/p{i}", pod(f"p{i}")) for i in range(3)]
            assert [e.revision for e in await collect(sub, 3)] == revs
            assert store.watches >= 2
        finally:
            cache.stop()

    run(main)


def test_subscribe_outside_the_cache_prefix_is_refused() -> None:
    cache = WatchCache(MemoryStore())
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="outside the cache's prefix"):
            cache.subscribe("/elsewhere/", 0, loop)
    finally:
        loop.close()


def test_keep_state_lists_current_objects_without_the_store() -> None:
    async def main() -> None:
        store = MemoryStore()
        r_a = store.create("/registry/pods/default/a", pod("a"))
        store.create("/registry/pods/default/gone", pod("gone"))
        store.create("/registry/services/default/s", b'{"kind":"Service","metadata":{"name":"s"}}')
        cache = WatchCache(store, keep_state=True)
        cache.start()
        try:
            items, rev = cache.list("/registry/pods/")
            assert [o["metadata"]["name"] for o in items] == ["a", "gone"]
            assert items[0]["metadata"]["resourceVersion"] == str(r_a)
            assert rev == store.current_revision()
            # Later events keep the state current; a fresh read waits for the store's revision.
            r_a2 = store.update("/registry/pods/default/a", pod("a", spec={"v": 2}), r_a)
            store.delete("/registry/pods/default/gone")
            store.create("/registry/pods/other/b", pod("b", "other"))
            assert await cache.wait_for(store.current_revision(), 5)
            items, rev = cache.list("/registry/pods/")
            assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in items] == [
                ("default", "a"),
                ("other", "b"),
            ]
            assert items[0]["spec"] == {"v": 2} and items[0]["metadata"]["resourceVersion"] == str(r_a2)
            assert rev == store.current_revision()
            assert [o["metadata"]["name"] for o in cache.list("/registry/pods/other/")[0]] == ["b"]
        finally:
            cache.stop()

    run(main)


def test_list_needs_keep_state() -> None:
    cache = WatchCache(MemoryStore())
    with pytest.raises(RuntimeError, match="keep_state"):
        cache.list("/registry/")


def test_on_sqlite_prefill_comes_from_the_table_after_a_restart(tmp_path: Path) -> None:
    from controlplane.storage.sqlite import SqliteStore

    first = SqliteStore(tmp_path / "s.db")
    revs = [first.create(f"/registry/pods/default/p{i}", pod(f"p{i}")) for i in range(5)]
    first.close()

    async def main() -> None:
        store = SqliteStore(tmp_path / "s.db")  # a restarted server: its ring starts empty
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/pods/", revs[1], asyncio.get_running_loop())
            assert [e.revision for e in await collect(sub, 3)] == revs[2:]
            live = store.create("/registry/pods/default/new", pod("new"))
            assert [e.revision for e in await collect(sub, 1)] == [live]
        finally:
            cache.stop()
            store.close()

    run(main)


class BuggyStore(MemoryStore):
    """The first watch fails with an exception nobody planned for."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0

    def watch(self, prefix: str, after_revision: int) -> Any:
        inner = super().watch(prefix, after_revision)
        self.watches += 1
        if self.watches > 1:
            return inner

        class Bug:
            def next_batch(self, timeout: float | None = None) -> list[Event]:
                raise ZeroDivisionError("a bug")

            def close(self) -> None:
                inner.close()

        bug: Watch = Bug()
        return bug


def test_an_unexpected_pump_failure_closes_subscribers_and_recovers() -> None:
    async def main() -> None:
        store = BuggyStore()
        cache = WatchCache(store, poll_timeout=0.1)
        cache.start()
        loop = asyncio.get_running_loop()
        try:
            sub = cache.subscribe("/registry/", store.current_revision(), loop)
            assert await sub.next(10) is None  # closed, not left hanging
            assert sub.closed_reason is not None and "error" in sub.closed_reason
            deadline = time.monotonic() + 10
            again: Subscription | None = None
            while again is None:  # during the restart, subscribe answers CompactedError (relist)
                assert time.monotonic() < deadline, "the pump did not restart"
                if store.watches >= 2:
                    with contextlib.suppress(CompactedError):
                        again = cache.subscribe("/registry/", store.current_revision(), loop)
                await asyncio.sleep(0.02)
            r = store.create("/registry/pods/default/a", pod("a"))
            assert [e.revision for e in await collect(again, 1)] == [r]
        finally:
            cache.stop()

    run(main)


class CompactingStore(MemoryStore):
    """The first watch finds its history compacted away under it (it fell behind)."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0
        self.compact_now = threading.Event()

    def watch(self, prefix: str, after_revision: int) -> Any:
        inner = super().watch(prefix, after_revision)
        self.watches += 1
        if self.watches > 1:
            return inner
        go = self.compact_now

        class Behind:
            def next_batch(self, timeout: float | None = None) -> list[Event]:
                if not go.wait(timeout):
                    return []
                raise CompactedError(after_revision, after_revision + 1)

            def close(self) -> None:
                inner.close()

        behind: Watch = Behind()
        return behind


def test_falling_behind_compaction_restarts_and_makes_watchers_relist() -> None:
    async def main() -> None:
        store = CompactingStore()
        store.create("/registry/pods/default/a", pod("a"))
        cache = WatchCache(store, prefill=0, poll_timeout=0.1)
        cache.start()
        try:
            sub = cache.subscribe("/registry/", store.current_revision(), asyncio.get_running_loop())
            store.compact_now.set()
            assert await sub.next(10) is None
            assert sub.closed_reason is not None and "compaction" in sub.closed_reason
        finally:
            cache.stop()

    run(main)


def test_events_are_decoded_only_when_used_and_served_from_the_stored_bytes() -> None:
    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/pods/", store.current_revision(), asyncio.get_running_loop())
            value = pod("a", spec={"containers": [{"name": "c", "image": "busybox"}]})
            r1 = store.create("/registry/pods/default/a", value)
            (ev,) = await collect(sub, 1)
            assert not ev.decoded  # nobody needed the object yet
            served = orjson.loads(ev.object_json())
            assert served == {
                **orjson.loads(value),
                "metadata": {"name": "a", "namespace": "default", "resourceVersion": str(r1)},
            }
            assert not ev.decoded  # the JSON came from the stored bytes
            assert ev.obj == served and ev.decoded
            assert ev.obj is ev.obj  # decoded once, shared
        finally:
            cache.stop()

    run(main)


def test_only_recent_events_keep_their_decoded_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    import controlplane.apiserver.watchcache as wc

    monkeypatch.setattr(wc, "DECODED_WINDOW", 3)

    async def main() -> None:
        store = MemoryStore()
        cache = WatchCache(store)
        cache.start()
        try:
            sub = cache.subscribe("/registry/pods/", store.current_revision(), asyncio.get_running_loop())
            first = [store.create(f"/registry/pods/default/p{i}", pod(f"p{i}")) for i in range(2)]
            events = await collect(sub, 2)
            assert [e.obj["metadata"]["name"] for e in events] == ["p0", "p1"]
            more = [store.create(f"/registry/pods/default/q{i}", pod(f"q{i}")) for i in range(3)]
            await collect(sub, 3)
            assert await cache.wait_for(more[-1], 5)
            # The two oldest fell out of the window of 3: their objects were dropped ...
            assert [e.decoded for e in events] == [False, False]
            # ... and come back from the stored bytes on use, with the right resourceVersion.
            assert [e.obj["metadata"]["resourceVersion"] for e in events] == [str(r) for r in first]
        finally:
            cache.stop()

    run(main)
