"""Backup and restore of the cluster's store: SQLite files and etcd snapshots.

Role: the storage half of ``kubelab backup save|restore FILE`` (``lab/backup.py`` is the lab half:
which component to stop, where the files live). Everything here works on files and endpoints
given to it and knows nothing of the lab.

- SQLite: ``save_sqlite`` copies a live database with SQLite's online backup API (a consistent
  snapshot while the API server keeps writing; WAL readers never block the writer).
  ``install_sqlite`` puts a backup in place of a stopped store's database.
- etcd: ``save_etcd`` runs ``etcdctl snapshot save`` (the maintenance API's Snapshot stream) and
  verifies the file with ``etcdctl snapshot status`` (hash, revision, keys);
  ``restore_etcd_data_dir`` runs ``etcdctl snapshot restore`` into a fresh data dir with a new
  cluster token (etcd's documented disaster-recovery procedure; etcd 3.4's etcdctl, Debian's
  ``etcd-client``, still carries the command that 3.5 moved to ``etcdutl``).
- ``inspect`` tells what a file is (``sqlite`` or ``etcd``) and refuses anything else — a corrupt
  file, a foreign SQLite database, an etcd snapshot holding no Kubernetes objects — with a message
  saying why, before anything is changed.

Invariant after a restore: the store's revision is *above* every revision a client may hold, and
everything at or below it is compacted. Objects come back with their old resourceVersions, but a
client resuming a watch or list from any revision it saw before gets ``410 Gone`` and relists —
what etcd 3.5's ``etcdutl snapshot restore --bump-revision --mark-compacted`` exists for, and what
Kubernetes' etcd restore guidance asks for so informers do not silently miss the rollback.
SQLite: the compaction point is written into the restored file (``kine_meta.compact_revision``,
which ``SqliteStore`` also takes as its revision floor). etcd 3.4 has no such flag, so
``bump_etcd_revision`` writes one marker key until the revision passes the old one, deletes it,
and compacts there, before any API server is started on the restored member.

Concurrency: none inside; callers make sure the store's owner is stopped before ``install_sqlite``
and that no API server runs on etcd before ``bump_etcd_revision`` has returned.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SQLITE_MAGIC = b"SQLite format 3\x00"
#: Every Kubernetes object lives under this prefix; a store without it is not a cluster's.
REGISTRY_PREFIX = "/registry/"
#: The key ``bump_etcd_revision`` writes and deletes (outside /registry/: no API server reads it).
BUMP_KEY = "/kubelab/restore-revision-bump"


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why (nothing was changed)."""


@dataclass(frozen=True)
class BackupInfo:
    kind: str  # "sqlite" | "etcd"
    revision: int  # the store revision the backup holds
    keys: int  # live keys (sqlite) / total keys in the snapshot (etcd, including history)
    sha256: str  # of the whole file
    size: int
    etcd_hash: int | None = None  # etcd's own hash of the snapshot's data (snapshot status)

    def describe(self) -> str:
        extra = f", etcd hash {self.etcd_hash:08x}" if self.etcd_hash is not None else ""
        return (
            f"{self.kind} backup at revision {self.revision}: {self.keys} keys, {self.size} bytes,"
            f" sha256 {self.sha256[:16]}…{extra}"
        )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detect_kind(path: Path) -> str:
    """``sqlite`` by its magic header, else ``etcd`` (confirmed later by ``etcdctl snapshot status``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BackupError(f"{path} is a directory, not a backup file") from None
    if not head:
        raise BackupError(f"{path} is empty: not a backup")
    return "sqlite" if head == SQLITE_MAGIC else "etcd"


# --- SQLite ---------------------------------------------------------------------------------------


def sqlite_revision(conn: sqlite3.Connection) -> int:
    """The store revision of a kine database, as ``SqliteStore`` computes it at open."""
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
    top = conn.execute("SELECT MAX(id) FROM kine").fetchone()
    comp = conn.execute("SELECT value FROM kine_meta WHERE name = 'compact_revision'").fetchone()
    return max(int(seq[0]) if seq else 0, int(top[0] or 0), int(comp[0]) if comp else 0)


def current_sqlite_revision(db: Path) -> int:
    """The revision of a (possibly running) store's database, read-only; 0 if there is none."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return sqlite_revision(conn)
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def inspect_sqlite(path: Path) -> BackupInfo:
    """Check that ``path`` is an intact kubelab SQLite store holding a cluster; raise BackupError if not."""
    if detect_kind(path) != "sqlite":
        raise BackupError(f"{path} is not a SQLite database (this lab's store is SQLite)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open: {exc}") from exc
    try:
        check = conn.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            raise BackupError(f"{path} is corrupt: {'; '.join(str(r[0]) for r in check[:3])}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"kine", "kine_meta"} <= tables:
            raise BackupError(f"{path} is a SQLite database but not a kubelab store (no kine table)")
        keys = conn.execute(
            "SELECT COUNT(*) FROM kine AS k JOIN (SELECT MAX(id) AS id FROM kine GROUP BY name) AS m"
            " ON k.id = m.id WHERE k.deleted = 0 AND k.name >= ? AND k.name < ?",
            (REGISTRY_PREFIX, REGISTRY_PREFIX[:-1] + "0"),
        ).fetchone()[0]
        if not keys:
            raise BackupError(f"{path} is a kubelab store without any Kubernetes object (nothing under /registry/)")
        revision = sqlite_revision(conn)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is corrupt: {exc}") from exc
    finally:
        conn.close()
    return BackupInfo("sqlite", revision, int(keys), file_sha256(path), path.stat().st_size)


def save_sqlite(db: Path, dest: Path) -> BackupInfo:
    """Online, consistent copy of a live store's database to ``dest`` (written atomically), verified."""
    if not db.exists():
        raise BackupError(f"no store at {db}")
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = sqlite3.connect(tmp)
        try:
            # One step (-1): the copy is of one read transaction, so it is a single point in time
            # even while the API server commits; the writer is never blocked (WAL).
            src.backup(out, pages=-1)
            out.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        finally:
            out.close()
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backup of {db} failed: {exc}") from exc
    finally:
        src.close()
    try:
        info = inspect_sqlite(tmp)
    except BackupError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return info


def install_sqlite(backup: Path, db: Path, *, compact_above: int) -> int:
    """Replace a **stopped** store's database by ``backup``; returns the restored store's revision.

    The copy is made beside ``db`` and renamed over it, and the old WAL/shared-memory files are
    removed first (a stale WAL would be replayed into the restored file). The restored file's
    compaction point is raised past ``compact_above`` (the revision the old store had reached), so
    every client revision is compacted: their watches and lists get 410 and they relist.
    """
    info = inspect_sqlite(backup)
    # The owner holds an flock on <db>.lock while open (SqliteStore): refuse while it runs.
    with open(db.with_name(db.name + ".lock"), "ab") as lockfile:
        try:
            fcntl.flock(lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"{db} is in use by a running API server: stop it first") from None
        return _install_sqlite_locked(backup, db, info, compact_above)


def _install_sqlite_locked(backup: Path, db: Path, info: BackupInfo, compact_above: int) -> int:
    tmp = db.with_name(f".{db.name}.restore")
    tmp.unlink(missing_ok=True)
    shutil.copyfile(backup, tmp)
    bumped = max(info.revision, compact_above) + 1
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO kine_meta (name, value) VALUES ('compact_revision', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (bumped,),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    os.replace(tmp, db)
    return bumped


# --- etcd -----------------------------------------------------------------------------------------


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise BackupError(f"{argv[0]} is not installed (Debian package etcd-client): {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{' '.join(argv[:3])} timed out after {timeout:.0f}s") from exc


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def etcd_snapshot_status(path: Path, etcdctl: list[str] | None = None) -> tuple[int, int, int]:
    """(hash, revision, total keys) of a snapshot file, by ``etcdctl snapshot status -w json``."""
    cmd = etcdctl or ["etcdctl"]
    res = _run([*cmd, "snapshot", "status", str(path), "-w", "json"], timeout=60)
    if res.returncode != 0:
        raise BackupError(f"{path} is not a readable etcd snapshot: {_last_line(res.stderr) or 'etcdctl failed'}")
    try:
        doc = json.loads(res.stdout)
        return int(doc["hash"]), int(doc["revision"]), int(doc["totalKey"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"etcdctl snapshot status gave no status for {path}: {res.stdout[:200]!r}") from exc


def _holds_registry(path: Path) -> bool:
    """Whether the snapshot's bytes mention a Kubernetes key (bbolt keeps mvcc KeyValues unencoded)."""
    needle = (REGISTRY_PREFIX + "namespaces/").encode()
    tail = b""
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            if needle in tail + chunk:
                return True
            tail = chunk[-len(needle) :]
    return False


def inspect_etcd(path: Path, etcdctl: list[str] | None = None) -> BackupInfo:
    if detect_kind(path) != "etcd":
        raise BackupError(f"{path} is a SQLite database, not an etcd snapshot (this lab's store is etcd)")
    h, rev, keys = etcd_snapshot_status(path, etcdctl)
    if not _holds_registry(path):
        raise BackupError(f"{path} is an etcd snapshot without any Kubernetes object (nothing under /registry/)")
    return BackupInfo("etcd", rev, keys, file_sha256(path), path.stat().st_size, etcd_hash=h)


def save_etcd(
    endpoints: list[str], dest: Path, *, prefix: list[str] | None = None, tls_args: list[str] | None = None
) -> BackupInfo:
    """``etcdctl snapshot save`` from the first healthy endpoint, written atomically and verified.

    ``prefix`` is put before etcdctl (e.g. ``nsenter --net=…`` to reach a member in a netns);
    ``tls_args`` after it (``--cacert``/``--cert``/``--key`` for a TLS cluster). A member that is
    down is skipped: the snapshot comes from the next one (every member holds the whole store).
    """
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.unlink(missing_ok=True)
    errors: list[str] = []
    for ep in endpoints:
        argv = [*(prefix or []), "etcdctl", *(tls_args or []), "--endpoints", ep, "--dial-timeout=3s"]
        res = _run([*argv, "snapshot", "save", str(tmp)], timeout=300)
        if res.returncode == 0:
            break
        errors.append(f"{ep}: {_last_line(res.stderr) or _last_line(res.stdout)}")
        tmp.unlink(missing_ok=True)
        # etcdctl leaves its download behind as <file>.part when the stream breaks
        tmp.with_name(tmp.name + ".part").unlink(missing_ok=True)
    else:
        raise BackupError("etcd snapshot failed on every member: " + "; ".join(errors))
    try:
        info = inspect_etcd(tmp)
    except BackupError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return info


def restore_etcd_data_dir(
    snapshot: Path, data_dir: Path, *, name: str, initial_cluster: str, peer_url: str, token: str
) -> None:
    """``etcdctl snapshot restore`` into a data dir that must not exist yet (checks the hash)."""
    if data_dir.exists():
        raise BackupError(f"{data_dir} already exists: etcd restores only into a new data dir")
    res = _run(
        [
            "etcdctl",
            "snapshot",
            "restore",
            str(snapshot),
            "--name",
            name,
            "--data-dir",
            str(data_dir),
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-token",
            token,
            "--initial-advertise-peer-urls",
            peer_url,
        ],
        timeout=300,
    )
    if res.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(data_dir)
        raise BackupError(f"etcdctl snapshot restore failed: {_last_line(res.stderr) or _last_line(res.stdout)}")


def bump_etcd_revision(
    endpoint: str, above: int, *, ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> int:
    """Raise a freshly restored etcd's revision past ``above`` and compact there; returns it.

    etcd 3.4 cannot do it at restore time (3.5's ``--bump-revision --mark-compacted``): each put
    of one marker key adds one revision, so it takes ``above - revision`` puts (~0.3 ms each).
    """
    from controlplane.storage.etcd import EtcdStore
    from controlplane.storage.interface import KeyExistsError

    store = EtcdStore([endpoint], ca=ca, cert=cert, key=key)  # ca/cert/key: https endpoints
    try:
        try:
            rev = store.create(BUMP_KEY, b"restore")
        except KeyExistsError:
            kv = store.get(BUMP_KEY)
            rev = kv.mod_revision if kv else store.current_revision()
        while rev <= above:
            rev = store.update(BUMP_KEY, b"restore", rev)
        _, rev = store.delete(BUMP_KEY)
        # Our compact(R) forgets revisions <= R; at the newest revision: everything before it.
        store.compact(rev)
        return rev
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m controlplane.storage.backup bump-etcd ENDPOINT ABOVE`` (run inside a node's netns)."""
    p = argparse.ArgumentParser(prog="python -m controlplane.storage.backup")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bump-etcd")
    b.add_argument("endpoint")
    b.add_argument("above", type=int)
    b.add_argument("--cacert", type=Path, default=None, help="etcd CA (https endpoint; etcdctl's flag names)")
    b.add_argument("--cert", type=Path, default=None, help="client certificate")
    b.add_argument("--key", type=Path, default=None, help="client key")
    args = p.parse_args(argv)
    try:
        print(bump_etcd_revision(args.endpoint, args.above, ca=args.cacert, cert=args.cert, key=args.key))
    except Exception as exc:
        print(f"revision bump failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
