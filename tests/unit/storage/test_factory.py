"""open_store and the Compactor."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.storage.compactor import Compactor
from controlplane.storage.factory import open_store, parse_endpoints
from controlplane.storage.interface import CompactedError
from controlplane.storage.memory import MemoryStore
from controlplane.storage.sqlite import SqliteStore
from tests.helpers.wait import wait_for


def test_open_memory_and_sqlite(tmp_path: Path) -> None:
    mem = open_store("memory", tmp_path)
    assert isinstance(mem, MemoryStore)
    mem.close()
    db = open_store("sqlite", tmp_path / "data")
    try:
        assert isinstance(db, SqliteStore)
        db.create("/k", b"v")
    finally:
        db.close()
    assert (tmp_path / "data" / "state.db").exists()


def test_bad_kind_and_missing_endpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown store 'mysql'"):
        open_store("mysql", tmp_path)
    with pytest.raises(ValueError, match="needs --etcd-endpoints"):
        open_store("etcd", tmp_path, [" "])
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_parse_endpoints() -> None:
    assert parse_endpoints("http://a:1, http://b:2,") == ["http://a:1", "http://b:2"]


def test_compactor_compacts_one_interval_behind() -> None:
    store = MemoryStore()
    first = store.create("/k/a", b"")
    compactor = Compactor(store, interval=0.05).start()
    try:
        # The first tick only records the revision; the next compacts at what it recorded.
        wait_for(lambda: compactor.last_compacted >= first, message="a compaction")
        with pytest.raises(CompactedError):
            store.watch("/", first - 1)
        assert store.get("/k/a") is not None
    finally:
        compactor.stop()
    with pytest.raises(ValueError, match="positive"):
        Compactor(store, interval=0)
