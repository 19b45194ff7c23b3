"""``MemoryStore``: the in-process fake of the ``Store`` interface (dict + revision + history).

Role: unit tests and ``--store memory`` use it; it keeps exactly the invariants of
``interface.py`` (one global revision, compare-and-swap on ``mod_revision``, watch replay then
live, ``CompactedError`` below the kept history) so code tested against it behaves the same on
SQLite and etcd. Nothing survives the process.

Invariants:
- Every successful write takes the next revision and appends exactly one event to the history,
  so the history is contiguous: ``history[i].revision == compacted + 1 + i``. That makes the
  replay position of any revision an index computation, never a search.
- The history is bounded (``history_limit`` events). Dropping the oldest event advances
  ``compacted`` exactly as an explicit ``compact`` would: a watcher that falls that far behind
  gets ``CompactedError`` from ``next_batch`` (etcd cancels such a watch the same way).

Concurrency: one ``threading.Condition`` guards everything. Writers notify it; each watch waits
on it with its own position, so one slow watcher never blocks writers or other watchers (a
watch holds no buffer of its own: it reads the shared history when it is ready).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from controlplane.storage.index import IndexedReads
from controlplane.storage.interface import (
    CompactedError,
    ConflictError,
    CreateDone,
    Event,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
)

# ``MemoryStore.list`` shadows the builtin inside the class body; annotate through an alias.
_Events = list[Event]

DEFAULT_HISTORY_LIMIT = 200_000
#: The most events one ``next_batch`` returns; bounds the work a consumer does per wake-up.
MAX_BATCH = 10_000


class MemoryStore(IndexedReads):
    def __init__(self, history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, got {history_limit}")
        self._cond = threading.Condition(threading.Lock())
        self._data: dict[str, KeyValue] = {}
        self._rev = 0
        self._compacted = 0  # every revision <= this is forgotten
        self._history: deque[Event] = deque()
        self._history_limit = history_limit
        self._closed = False

    # -- reads ---------------------------------------------------------------------------

    # get, list, current_revision: IndexedReads (controlplane/storage/index.py)

    # -- writes --------------------------------------------------------------------------

    def create(self, key: str, value: bytes) -> int:
        _check_key(key)
        value = bytes(value)
        with self._cond:
            self._check_open()
            if key in self._data:
                raise KeyExistsError(key)
            rev = self._rev + 1
            self._data[key] = KeyValue(key, value, rev, rev)
            self._append(Event(EventType.CREATE, key, value, rev, None))
            return rev

    def create_nowait(self, key: str, value: bytes, done: CreateDone) -> None:
        """``create`` now, in the caller's thread (nothing to wait for), then ``done``."""
        try:
            rev = self.create(key, value)
        except KeyExistsError as exc:
            done(None, exc)
            return
        done(rev, None)

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        _check_key(key)
        value = bytes(value)
        with self._cond:
            self._check_open()
            old = self._data.get(key)
            if old is None:
                raise KeyNotFoundError(key)
            if old.mod_revision != expected_revision:
                raise ConflictError(key, expected_revision, old.mod_revision)
            rev = self._rev + 1
            self._data[key] = KeyValue(key, value, old.create_revision, rev)
            self._append(Event(EventType.UPDATE, key, value, rev, old.value))
            return rev

    def delete(self, key: str, expected_revision: int | None = None) -> tuple[KeyValue, int]:
        _check_key(key)
        with self._cond:
            self._check_open()
            old = self._data.get(key)
            if old is None:
                raise KeyNotFoundError(key)
            if expected_revision is not None and old.mod_revision != expected_revision:
                raise ConflictError(key, expected_revision, old.mod_revision)
            rev = self._rev + 1
            del self._data[key]
            self._append(Event(EventType.DELETE, key, old.value, rev, old.value))
            return old, rev

    def _append(self, event: Event) -> None:
        # Caller holds the lock and has checked everything: this cannot fail half-way.
        self._rev = event.revision
        self._history.append(event)
        while len(self._history) > self._history_limit:
            dropped = self._history.popleft()
            self._compacted = dropped.revision
        self._cond.notify_all()

    # -- history -------------------------------------------------------------------------

    def compact(self, revision: int) -> None:
        with self._cond:
            self._check_open()
            target = min(revision, self._rev)
            while self._history and self._history[0].revision <= target:
                self._history.popleft()
            self._compacted = max(self._compacted, target)

    def compacted_revision(self) -> int:
        """Every revision at or below this one is forgotten (0: nothing compacted)."""
        with self._cond:
            return self._compacted

    def watch(self, prefix: str, after_revision: int) -> MemoryWatch:
        with self._cond:
            self._check_open()
            if after_revision < self._compacted:
                raise CompactedError(after_revision, self._compacted)
            return MemoryWatch(self, prefix, after_revision)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- used by MemoryWatch (lock held) ---------------------------------------------------

    def _collect(self, watch: MemoryWatch) -> _Events:
        """Matching events after ``watch.position``; advances the position past what it scanned."""
        if watch.position < self._compacted:
            raise CompactedError(watch.position, self._compacted)
        out: list[Event] = []
        start = watch.position - self._compacted  # index of revision position+1
        end = len(self._history)
        i = start
        prefix = watch.prefix
        while i < end and len(out) < MAX_BATCH:
            ev = self._history[i]
            if ev.key.startswith(prefix):
                out.append(ev)
            i += 1
        if i > start:
            watch.position = self._history[i - 1].revision
        return out


class MemoryWatch:
    """A cursor over the store's shared history; see the module docstring."""

    def __init__(self, store: MemoryStore, prefix: str, after_revision: int) -> None:
        self._store = store
        self.prefix = prefix
        self.position = after_revision  # last revision scanned
        self._closed = False

    def next_batch(self, timeout: float | None = None) -> list[Event]:
        store = self._store
        deadline = None if timeout is None else time.monotonic() + timeout
        with store._cond:
            while True:
                if self._closed or store._closed:
                    return []
                events = store._collect(self)
                if events:
                    return events
                if deadline is None:
                    store._cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    store._cond.wait(remaining)

    def close(self) -> None:
        with self._store._cond:
            self._closed = True
            self._store._cond.notify_all()


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key must be a non-empty string, got {key!r}")
