"""The ``Store`` interface: a revisioned key-value store, the shape of etcd v3.

Role: the API server keeps every object under a key such as ``/registry/pods/default/web-1`` and
asks the store for optimistic concurrency and change streams; nothing else talks to a store.

Invariants every backend keeps (checked by ``tests/contract/test_store.py`` against each one):
- One global, strictly increasing revision. Every successful create, update or delete gets the
  next revision, and that revision becomes the key's ``mod_revision`` (the object's
  ``resourceVersion``). Revisions seen by watchers have no holes that could hide an event.
- ``update`` and ``delete`` take the ``mod_revision`` the caller last saw; a mismatch raises
  ``ConflictError`` and changes nothing (etcd's compare-and-swap on ``mod_revision``).
- ``watch(prefix, after_revision)`` delivers, in revision order, every event with a revision
  greater than ``after_revision`` under ``prefix``: first the ones already in history, then live
  ones. If history before that point was compacted it raises ``CompactedError`` (HTTP 410).
- A write is durable once the call returns (the API server acknowledges only after that).

Concurrency: every method may be called from any thread at the same time. ``Watch.next_batch``
blocks the calling thread; ``Watch.close`` may be called from another thread to wake it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """Base of every store error."""


class StoreUnavailableError(StoreError):
    """The store cannot serve right now (etcd lost quorum, has no leader, or is unreachable).

    The API server answers 503 ``ServiceUnavailable`` with this message and no traceback; the
    request may be retried once the store is back."""


class KeyExistsError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} already exists")
        self.key = key


class KeyNotFoundError(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} not found")
        self.key = key


class ConflictError(StoreError):
    """The key's mod_revision is not the one the caller expected."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"key {key!r} is at revision {actual}, not {expected}")
        self.key = key
        self.expected = expected
        self.actual = actual


class CompactedError(StoreError):
    """The requested revision is older than the oldest one the store still has."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (oldest kept: {compacted})")
        self.requested = requested
        self.compacted = compacted


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


class EventType(enum.Enum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETE, ``value`` is the last value the key had before the delete."""

    type: EventType
    key: str
    value: bytes
    revision: int
    prev_value: bytes | None = None


class Watch(Protocol):
    def next_batch(self, timeout: float | None = None) -> list[Event]:
        """Block until events arrive (or ``timeout`` passes: then return ``[]``).

        Returns ``[]`` at once after ``close``. Batches are in revision order.
        Raises ``CompactedError`` if the watcher fell behind history that was compacted (or that
        a bounded history dropped), and ``StoreError`` if the stream broke (etcd went away); in
        both cases the watch is finished and the caller re-watches (or relists) from the last
        revision it processed.
        """
        ...

    def close(self) -> None: ...


class Store(Protocol):
    def get(self, key: str) -> KeyValue | None: ...

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` (sorted by key) and the store revision they were read at."""
        ...

    def create(self, key: str, value: bytes) -> int:
        """Create ``key``; returns the new revision. Raises ``KeyExistsError``."""
        ...

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        """Replace ``key`` if its mod_revision is ``expected_revision``; returns the new revision.

        Raises ``KeyNotFoundError`` or ``ConflictError``.
        """
        ...

    def delete(self, key: str, expected_revision: int | None = None) -> tuple[KeyValue, int]:
        """Delete ``key`` (if ``expected_revision`` matches, when given).

        Returns the deleted key-value and the revision of the delete. Raises ``KeyNotFoundError``
        or ``ConflictError``.
        """
        ...

    def watch(self, prefix: str, after_revision: int) -> Watch:
        """Events under ``prefix`` with revision > ``after_revision``. Raises ``CompactedError``."""
        ...

    def current_revision(self) -> int: ...

    def compact(self, revision: int) -> None:
        """Forget history at and below ``revision`` (current values are kept)."""
        ...

    def close(self) -> None: ...


#: ``create_nowait``'s completion: (new revision, None) or (None, the error ``create`` would raise).
CreateDone = Callable[[int | None, BaseException | None], None]


@runtime_checkable
class NowaitCreates(Protocol):
    """A store that can queue a create without blocking the caller (all three backends).

    An event-loop server does its CPU work on the loop and hands only the write to the store, so
    no request needs a thread of its own while the commit (one fsync for the whole batch) runs.
    """

    def create_nowait(self, key: str, value: bytes, done: CreateDone) -> None:
        """Queue ``create(key, value)``; ``done`` is called once, after it is durable or failed.

        ``done`` may run on any thread (the store's committer, or the caller's at once) and must be
        quick and never raise. Durability is exactly ``create``'s. Creates queued one after the
        other may commit in either order (etcd runs them on a thread pool; SQLite and memory keep
        queue order), as two concurrent ``create`` calls would.
        """
        ...
