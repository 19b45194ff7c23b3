"""The authorization feed: list, then follow; relist from scratch when the subscription closes;
pods whose stored bytes do not mention ``nodeName`` are skipped without decoding."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from controlplane.apiserver.authz.feed import Follower, plural_of
from controlplane.storage.interface import KeyValue


class _Ev:
    def __init__(self, type_: str, key: str, obj: dict[str, Any]) -> None:
        self.type, self.key = type_, key
        self._raw = orjson.dumps(obj)
        self.decoded = 0
        self._obj = obj

    @property
    def obj(self) -> dict[str, Any]:
        self.decoded += 1
        return self._obj


class _Sub:
    def __init__(self, batches: list[list[_Ev] | None]) -> None:
        self.batches = batches
        self.closed = False

    async def next(self, timeout: float) -> list[_Ev] | None:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(3600)
        return None

    def close(self) -> None:
        self.closed = True


def test_follow_relist_and_skip() -> None:
    key = "/registry/pods/ns/"
    lists = [
        ([KeyValue(key + "a", orjson.dumps({"n": "a"}), 1, 1)], 5),
        ([KeyValue(key + "b", orjson.dumps({"n": "b"}), 1, 1)], 9),
    ]
    bound = _Ev("MODIFIED", key + "c", {"spec": {"nodeName": "n1"}})
    unbound = _Ev("ADDED", key + "d", {"spec": {}})
    gone = _Ev("DELETED", key + "a", {"spec": {}})
    subs = [_Sub([[bound, unbound, gone], None]), _Sub([])]
    seen: list[tuple[str, bool]] = []
    resets: list[int] = []
    subscribed: list[int] = []

    async def list_fn(prefix: str) -> tuple[list[KeyValue], int]:
        return lists.pop(0)

    def subscribe(prefix: str, rev: int) -> _Sub:
        subscribed.append(rev)
        return subs[len(subscribed) - 1]

    async def run() -> None:
        f = Follower(
            key,
            list_fn,
            subscribe,
            lambda k, obj, deleted: seen.append((k.rsplit("/", 1)[1], deleted)),
            lambda: resets.append(1),
            skip_raw=lambda raw: b'"nodeName"' not in raw,
        )
        task = asyncio.ensure_future(f.run())
        for _ in range(200):
            if len(subscribed) == 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        assert f.synced.is_set()

    asyncio.run(run())
    assert subscribed == [5, 9]  # each watch starts at its own list's revision
    assert len(resets) == 2  # the relist started from an empty state
    assert seen == [("a", False), ("c", False), ("a", True), ("b", False)]
    assert unbound.decoded == 0 and subs[0].closed and subs[1].closed


def test_plural_of() -> None:
    assert plural_of("/registry/rbac.authorization.k8s.io/roles/ns/name") == "roles"
    assert plural_of("/registry") == ""
