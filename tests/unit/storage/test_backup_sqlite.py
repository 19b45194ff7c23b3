"""SQLite backup and restore (controlplane.storage.backup): online copy, verification, refusal of
bad files, and the restored store's revision raised past the old one with everything before it
compacted (so a watcher resuming from an old revision gets CompactedError → 410 → relist)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from controlplane.storage import backup
from controlplane.storage.interface import CompactedError
from controlplane.storage.sqlite import SqliteStore


def _store(tmp_path: Path) -> tuple[SqliteStore, Path]:
    db = tmp_path / "data" / "state.db"
    s = SqliteStore(db)
    s.create("/registry/namespaces/default", b'{"kind":"Namespace"}')
    s.create("/registry/configmaps/default/kept", b"{}")
    s.create("/registry/configmaps/default/deleted-after", b"{}")
    return s, db


def test_save_is_consistent_while_the_store_is_open_and_verified(tmp_path: Path) -> None:
    s, db = _store(tmp_path)
    try:
        out = tmp_path / "b.db"
        info = backup.save_sqlite(db, out)
        assert info.kind == "sqlite" and info.revision == s.current_revision() and info.keys == 3
        assert info.sha256 == backup.file_sha256(out)
        assert not (tmp_path / "b.db-wal").exists()
        assert backup.inspect_sqlite(out) == info
    finally:
        s.close()


def test_restore_brings_back_deleted_drops_created_and_compacts_old_revisions(tmp_path: Path) -> None:
    s, db = _store(tmp_path)
    out = tmp_path / "b.db"
    saved = backup.save_sqlite(db, out)
    _, _ = s.delete("/registry/configmaps/default/deleted-after")
    s.create("/registry/configmaps/default/created-after", b"{}")
    old_rev = s.current_revision()
    with pytest.raises(backup.BackupError, match="in use by a running API server"):
        backup.install_sqlite(out, db, compact_above=old_rev)
    s.close()
    assert backup.current_sqlite_revision(db) == old_rev
    rev = backup.install_sqlite(out, db, compact_above=old_rev)
    assert rev == old_rev + 1
    r = SqliteStore(db)
    try:
        assert r.current_revision() == rev
        assert r.get("/registry/configmaps/default/deleted-after") is not None
        assert r.get("/registry/configmaps/default/created-after") is None
        kept = r.get("/registry/configmaps/default/kept")
        assert kept is not None and kept.mod_revision <= saved.revision  # its old resourceVersion
        for client_rev in (saved.revision, old_rev):
            with pytest.raises(CompactedError):
                r.watch("/registry/", client_rev)
        r.watch("/registry/", rev).close()
        assert r.create("/registry/configmaps/default/new", b"{}") == rev + 1
    finally:
        r.close()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"hello, not a database at all" * 100, "not a SQLite database"),
    ],
)
def test_garbage_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "bad"
    f.write_bytes(content)
    with pytest.raises(backup.BackupError, match=message):
        backup.inspect_sqlite(f)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(backup.BackupError, match="no such file"):
        backup.inspect_sqlite(tmp_path / "nope")


def test_foreign_and_corrupt_databases_are_refused_and_nothing_changes(tmp_path: Path) -> None:
    s, db = _store(tmp_path)
    s.close()
    before = db.read_bytes()
    foreign = tmp_path / "foreign.db"
    c = sqlite3.connect(foreign)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()
    with pytest.raises(backup.BackupError, match="not a kubelab store"):
        backup.install_sqlite(foreign, db, compact_above=10)
    empty = tmp_path / "empty.db"
    SqliteStore(empty).close()
    with pytest.raises(backup.BackupError, match="without any Kubernetes object"):
        backup.install_sqlite(empty, db, compact_above=10)
    good = tmp_path / "good.db"
    backup.save_sqlite(db, good)
    corrupt = tmp_path / "corrupt.db"
    raw = bytearray(good.read_bytes())
    for i in range(4096, len(raw), 7):  # scribble over every page after the header page
        raw[i] ^= 0x5A
    corrupt.write_bytes(bytes(raw))
    with pytest.raises(backup.BackupError, match="corrupt"):
        backup.install_sqlite(corrupt, db, compact_above=10)
    assert db.read_bytes() == before
    assert not list(db.parent.glob(".*restore*"))


def test_an_etcd_lab_refuses_a_sqlite_file(tmp_path: Path) -> None:
    s, db = _store(tmp_path)
    s.close()
    with pytest.raises(backup.BackupError, match="SQLite database, not an etcd snapshot"):
        backup.inspect_etcd(db)
