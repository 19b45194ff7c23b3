"""The read side shared by the memory and SQLite stores: the newest value of every key, in memory.

``MemoryStore`` keeps only this (plus its event history); ``SqliteStore`` keeps it as a cache of
its table, rebuilt when the store opens, so reads never touch the database. Subclasses own the
state (``_cond`` guarding ``_data``, ``_rev``, ``_closed``) and every write; this class only reads
it, under ``_cond``, so a read sees a consistent (items, revision) pair.
"""

from __future__ import annotations

import threading

from controlplane.storage.interface import KeyValue


class IndexedReads:
    _cond: threading.Condition
    _data: dict[str, KeyValue]
    _rev: int
    _closed: bool

    def get(self, key: str) -> KeyValue | None:
        with self._cond:
            self._check_open()
            return self._data.get(key)

    def list(self, prefix: str) -> tuple[list[KeyValue], int]:
        with self._cond:
            self._check_open()
            items = [kv for k, kv in self._data.items() if k.startswith(prefix)]
            rev = self._rev
        items.sort(key=lambda kv: kv.key)
        return items, rev

    def current_revision(self) -> int:
        with self._cond:
            return self._rev

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("store is closed")
