"""MemoryStore specifics beyond the contract suite: the bounded history acts as compaction."""

from __future__ import annotations

import threading

import pytest

from controlplane.storage.interface import CompactedError, EventType
from controlplane.storage.memory import MemoryStore


def test_bounded_history_compacts_oldest_events() -> None:
    store = MemoryStore(history_limit=3)
    revs = [store.create(f"/k/{i}", b"v") for i in range(5)]
    assert store.compacted_revision() == revs[1]
    with pytest.raises(CompactedError):
        store.watch("/k/", revs[0])
    w = store.watch("/k/", revs[1])
    assert [e.revision for e in w.next_batch(timeout=0)] == revs[2:]
    # Current values survive the history limit.
    assert len(store.list("/k/")[0]) == 5


def test_watcher_that_falls_behind_the_history_gets_compacted() -> None:
    store = MemoryStore(history_limit=2)
    w = store.watch("/", 0)
    for i in range(4):
        store.create(f"/k/{i}", b"v")
    with pytest.raises(CompactedError):
        w.next_batch(timeout=0)


def test_close_store_wakes_watchers() -> None:
    store = MemoryStore()
    w = store.watch("/", 0)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(w.next_batch()))
    t.start()
    store.close()
    t.join(timeout=5)
    assert not t.is_alive() and got == [[]]


def test_delete_event_carries_last_value() -> None:
    store = MemoryStore()
    rev = store.create("/k", b"one")
    rev = store.update("/k", b"two", rev)
    _, drev = store.delete("/k")
    events = store.watch("/", rev).next_batch(timeout=0)
    assert [(e.type, e.value, e.prev_value, e.revision) for e in events] == [(EventType.DELETE, b"two", b"two", drev)]


def test_bad_key_is_rejected_and_changes_nothing() -> None:
    store = MemoryStore()
    with pytest.raises(ValueError, match="non-empty string"):
        store.create("", b"v")
    assert store.current_revision() == 0
