"""``SqliteStore``: the embedded default store — one SQLite file, kine-style, owned by one process.

Role: what k3s's kine does for etcd, in-process. The file holds one append-only log table,
``kine``: one row per write, ``id`` = the write's revision, with ``name`` (the key), ``created`` /
``deleted`` flags, ``create_revision``, ``prev_revision`` (the row it supersedes), ``value`` and
``old_value``. The current value of a key is its newest row unless that row is a delete. History
for watchers is the rows themselves; ``compact`` deletes superseded rows.

Invariants:
- Durable on return: ``journal_mode=WAL`` + ``synchronous=FULL`` fsyncs the WAL at every commit,
  and a caller is acknowledged only after the commit that holds its row (``test_sqlite_store.py``
  SIGKILLs a writing process and finds every acknowledged write).
- No holes for watchers: revisions are assigned by one committer at a time, in commit order,
  and the revision watchers may read up to (``_rev``) is advanced only after the commit. A watcher can
  therefore never see revision N+1 while N is still uncommitted (the hazard of concurrent
  writers each taking an AUTOINCREMENT id and committing out of order).
- One process owns the file: an ``flock`` on ``<path>.lock`` is held while the store is open (a
  second opener gets ``StoreError``); the kernel drops it when the process dies, even by kill -9.

Concurrency and speed (leader/follower group commit, as LevelDB's writer queue): callers queue
their operations. If nobody is committing, the caller leads: it takes everything queued, checks
each operation against the current state (an in-memory index of the newest value per key, plus
the effects of earlier operations in the same batch), inserts the rows of the ones that pass in
ONE transaction, commits (one fsync for the whole batch), publishes the new state and events,
wakes each caller with its result, and hands leadership to the first caller that queued
meanwhile. A lone writer thus commits in its own thread with no hand-off; under load a batch
holds as many writes as there are waiting callers, so throughput scales with concurrency while
each caller still waits for at most about two commits. ``create_nowait`` queues a create in the
same queue without blocking its caller (an event loop): when such an operation is at the front and
nobody leads, the store's own committer thread leads, and the operation's callback runs after the
commit, on whichever thread committed it. Reads (``get``/``list``) are served from the
in-memory index under a lock — the table is the source of truth, the index is rebuilt from it at
open. Watches read recent events from an in-memory ring and older ones from the table.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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
    StoreError,
)

log = logging.getLogger(__name__)

# ``SqliteStore.list`` shadows the builtin inside the class body; annotate through an alias.
_Events = list[Event]

#: Recent events kept in memory for watchers; older ones are read back from the table.
DEFAULT_RING = 50_000
#: The most events one ``next_batch`` returns.
MAX_BATCH = 10_000
#: The most operations one commit carries (bounds the time a batch holds the write lock).
MAX_GROUP = 1_000
#: Revisions compacted per transaction.
COMPACT_CHUNK = 2_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL,
    old_value BLOB
);
CREATE INDEX IF NOT EXISTS kine_name_id ON kine (name, id);
CREATE TABLE IF NOT EXISTS kine_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

_INSERT = (
    "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value, old_value)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit is exactly where we say.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@dataclass(eq=False)
class _Op:
    kind: str  # "create" | "update" | "delete" | "compact"
    key: str
    value: bytes = b""
    expected: int | None = None
    result: object = None
    error: BaseException | None = None
    lo: int = 0  # compact: the first revision of the chunk
    # A blocking caller sleeps on ``signal`` until its operation is finished, or until it is
    # promoted to lead the next commit itself. A queued (``create_nowait``) operation has ``done``
    # instead and is never promoted: the committer thread leads for it.
    signal: threading.Event | None = None
    done: CreateDone | None = None
    finished: bool = False
    promoted: bool = False

    def finish(self) -> None:
        self.finished = True
        if self.done is not None:
            result = self.result if isinstance(self.result, int) else None
            try:
                self.done(result, self.error)
            except Exception:  # a callback must not break the commit loop of everyone else
                log.exception("create_nowait callback failed")
        else:
            assert self.signal is not None
            self.signal.set()


_Ops = list[_Op]


class SqliteStore(IndexedReads):
    def __init__(self, path: str | Path, *, ring_size: int = DEFAULT_RING) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lockfile: IO[bytes] | None = open(self._path.with_name(self._path.name + ".lock"), "ab")  # noqa: SIM115
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise StoreError(f"{self._path} is in use by another process (lock {self._path}.lock)") from None
        db: sqlite3.Connection | None = None
        try:
            db = _connect(self._path)
            db.executescript(_SCHEMA)
            data, rev, compacted = _load(db)
        except BaseException as exc:
            if db is not None:
                db.close()
            self._release_lockfile()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open store {self._path}: {exc}") from exc
            raise
        self._db = db
        # State published to readers and watchers; guarded by _cond.
        self._cond = threading.Condition(threading.Lock())
        self._data: dict[str, KeyValue] = data
        self._rev = rev
        self._compacted = compacted
        self._ring: deque[Event] = deque()  # contiguous revisions ending at _rev (may be empty)
        self._ring_size = max(1, ring_size)
        self._closed = False
        # Operations waiting to be committed, and whether some caller is leading a commit;
        # guarded by _qcond (which close() also waits on for the last leader to finish).
        self._qcond = threading.Condition(threading.Lock())
        self._queue: list[_Op] = []
        self._leading = False
        self._stopping = False
        # The committer thread leads commits for queued (``create_nowait``) operations; started on
        # first use. ``_committer_turn``: it has been handed the lead (guarded by _qcond).
        self._committer: threading.Thread | None = None
        self._committer_turn = False
        self.commit_count = 0  # write transactions committed (for tests and benchmarks)

    # -- reads (in-memory index) -----------------------------------------------------------

    # get, list, current_revision: IndexedReads (controlplane/storage/index.py)

    def compacted_revision(self) -> int:
        """Every revision at or below this one is forgotten (0: nothing compacted)."""
        with self._cond:
            return self._compacted

    # -- writes (leader/follower group commit) ----------------------------------------------

    def create(self, key: str, value: bytes) -> int:
        _check_key(key)
        res = self._submit(_Op("create", key, bytes(value)))
        assert isinstance(res, int)
        return res

    def update(self, key: str, value: bytes, expected_revision: int) -> int:
        _check_key(key)
        res = self._submit(_Op("update", key, bytes(value), expected_revision))
        assert isinstance(res, int)
        return res

    def delete(self, key: str, expected_revision: int | None = None) -> tuple[KeyValue, int]:
        _check_key(key)
        res = self._submit(_Op("delete", key, b"", expected_revision))
        assert isinstance(res, tuple)
        return res

    def compact(self, revision: int) -> None:
        """Forget history at and below ``revision``, a chunk of revisions per transaction.

        Each chunk goes through the writer queue like a write, so ordinary writes interleave with
        a long compaction instead of waiting for all of it (one statement over 100,000 rows held
        the write lock for seconds). Every chunk is complete in itself: a crash part-way leaves a
        store compacted up to the last committed chunk.
        """
        target = min(revision, self.current_revision())
        lo = self.compacted_revision() + 1
        while lo <= target:
            hi = min(lo + COMPACT_CHUNK - 1, target)
            self._submit(_Op("compact", "", b"", hi, lo=lo))
            lo = hi + 1

    def create_nowait(self, key: str, value: bytes, done: CreateDone) -> None:
        """Queue a create and return at once; ``done(revision, error)`` runs after the commit.

        The operation joins the same queue and batches as blocking writes (so it is exactly as
        durable and ordered); when nobody is leading, the store's committer thread leads, and
        ``done`` runs on whichever thread committed the batch.
        """
        _check_key(key)
        op = _Op("create", key, bytes(value), done=done)
        with self._qcond:
            if self._stopping:
                raise RuntimeError("store is closed")
            self._queue.append(op)
            if not self._leading:
                self._leading = True
                self._hand_to_committer()

    def _hand_to_committer(self) -> None:
        """_qcond held: the committer thread leads next (started on first use)."""
        self._committer_turn = True
        if self._committer is None:
            self._committer = threading.Thread(target=self._commit_loop, name="sqlite-commit", daemon=True)
            self._committer.start()
        self._qcond.notify_all()

    def _commit_loop(self) -> None:
        while True:
            with self._qcond:
                while not self._committer_turn and not self._stopping:
                    self._qcond.wait()
                if not self._committer_turn:
                    return  # stopping, and nothing handed to us
                self._committer_turn = False
            self._lead()

    def _submit(self, op: _Op) -> object:
        """Queue ``op``; lead a commit if nobody is, else sleep until done (or promoted to lead)."""
        op.signal = signal = threading.Event()
        with self._qcond:
            if self._stopping:
                raise RuntimeError("store is closed")
            self._queue.append(op)
            lead = not self._leading
            if lead:
                self._leading = True
        if not lead:
            signal.wait()
        if not op.finished:  # we lead: our op is at the front of the queue
            self._lead()
        if op.error is not None:
            raise op.error
        return op.result

    def _lead(self) -> None:
        """Commit everything queued (our op included) as one batch, then hand leadership on.

        Leader/follower group commit, as LevelDB's writer queue: the front caller does the
        work for all who queued behind it while it waited, so a lone writer commits in its own
        thread with no hand-off, and concurrent writers share one commit (one fsync) per batch.
        Only the leader touches the database connection and ``_data``: one at a time.
        """
        with self._qcond:
            batch = self._queue[:MAX_GROUP]
            del self._queue[:MAX_GROUP]
        try:
            self._run_batch(batch)
        except BaseException as exc:  # never leave a caller waiting
            for op in batch:
                if not op.finished:
                    op.result, op.error = None, StoreError(f"sqlite write failed: {exc}")
                    op.finish()
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like belong to this thread
        finally:
            with self._qcond:
                if self._queue:
                    nxt = self._queue[0]
                    if nxt.signal is None:  # a queued op: the committer thread leads for it
                        self._hand_to_committer()
                    else:
                        nxt.promoted = True
                        nxt.signal.set()
                else:
                    self._leading = False
                    self._qcond.notify_all()

    def _run_batch(self, batch: _Ops) -> None:
        # Compactions run alone, in order with the writes around them.
        i = 0
        while i < len(batch):
            if batch[i].kind == "compact":
                self._run_compact(batch[i])
                i += 1
                continue
            j = i
            while j < len(batch) and batch[j].kind != "compact":
                j += 1
            self._run_writes(batch[i:j])
            i = j

    def _run_writes(self, ops: _Ops) -> None:
        """Validate ``ops`` in order, commit the valid ones together, publish, acknowledge."""
        data = self._data  # only the leader mutates it, so reading it without the lock is safe
        overlay: dict[str, KeyValue | None] = {}
        rev = self._rev
        rows: list[tuple[int, str, int, int, int, int, bytes, bytes | None]] = []
        events: list[Event] = []
        accepted: list[_Op] = []
        for op in ops:
            key = op.key
            cur = overlay[key] if key in overlay else data.get(key)
            if op.kind == "create":
                if cur is not None:
                    op.error = KeyExistsError(key)
                    continue
                rev += 1
                overlay[key] = KeyValue(key, op.value, rev, rev)
                rows.append((rev, key, 1, 0, rev, 0, op.value, None))
                events.append(Event(EventType.CREATE, key, op.value, rev, None))
                op.result = rev
            elif op.kind == "update":
                if cur is None:
                    op.error = KeyNotFoundError(key)
                    continue
                if cur.mod_revision != op.expected:
                    op.error = ConflictError(key, op.expected or 0, cur.mod_revision)
                    continue
                rev += 1
                overlay[key] = KeyValue(key, op.value, cur.create_revision, rev)
                rows.append((rev, key, 0, 0, cur.create_revision, cur.mod_revision, op.value, cur.value))
                events.append(Event(EventType.UPDATE, key, op.value, rev, cur.value))
                op.result = rev
            else:  # delete
                if cur is None:
                    op.error = KeyNotFoundError(key)
                    continue
                if op.expected is not None and cur.mod_revision != op.expected:
                    op.error = ConflictError(key, op.expected, cur.mod_revision)
                    continue
                rev += 1
                overlay[key] = None
                rows.append((rev, key, 0, 1, cur.create_revision, cur.mod_revision, cur.value, cur.value))
                events.append(Event(EventType.DELETE, key, cur.value, rev, cur.value))
                op.result = (cur, rev)
            accepted.append(op)
        if rows:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_INSERT, rows)
                db.execute("COMMIT")
                self.commit_count += 1
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                for op in accepted:
                    op.result, op.error = None, StoreError(f"sqlite write failed: {exc}")
                events = []
            else:
                with self._cond:
                    for key, kv in overlay.items():
                        if kv is None:
                            data.pop(key, None)
                        else:
                            data[key] = kv
                    self._rev = rev
                    ring = self._ring
                    ring.extend(events)
                    excess = len(ring) - self._ring_size
                    for _ in range(excess):
                        ring.popleft()
                    self._cond.notify_all()
        for op in ops:
            op.finish()

    def _run_compact(self, op: _Op) -> None:
        """Compact revisions ``(max(op.lo, compacted+1))..op.expected``: one chunk, one commit."""
        lo = max(op.lo, self._compacted + 1)
        hi = min(op.expected or 0, self._rev)
        if hi < lo:
            op.finish()
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            # A row in the chunk that updates or deletes a key supersedes the row it names in
            # prev_revision: that older row can go (kine's rule). Then the chunk's delete rows
            # themselves go: a deleted key has no current value to keep. What stays at or below
            # the compaction point is exactly the newest row of every live key.
            db.execute(
                "DELETE FROM kine WHERE id IN"
                " (SELECT prev_revision FROM kine WHERE id BETWEEN ? AND ? AND prev_revision > 0)",
                (lo, hi),
            )
            db.execute("DELETE FROM kine WHERE id BETWEEN ? AND ? AND deleted = 1", (lo, hi))
            db.execute(
                "INSERT INTO kine_meta (name, value) VALUES ('compact_revision', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (hi,),
            )
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            op.error = StoreError(f"sqlite compaction failed: {exc}")
        else:
            with self._cond:
                self._compacted = hi
                while self._ring and self._ring[0].revision <= hi:
                    self._ring.popleft()
                self._cond.notify_all()
        op.finish()

    # -- watch -----------------------------------------------------------------------------

    def watch(self, prefix: str, after_revision: int) -> SqliteWatch:
        with self._cond:
            self._check_open()
            if after_revision < self._compacted:
                raise CompactedError(after_revision, self._compacted)
            return SqliteWatch(self, prefix, after_revision)

    def _read_history(self, conn: sqlite3.Connection, prefix: str, after: int, upto: int) -> _Events:
        """Events in (after, upto] under prefix, from the table, in one consistent snapshot."""
        conn.execute("BEGIN")
        try:
            row = conn.execute("SELECT value FROM kine_meta WHERE name = 'compact_revision'").fetchone()
            compacted = int(row[0]) if row else 0
            if after < compacted:
                raise CompactedError(after, compacted)
            cur = conn.execute(
                "SELECT id, name, created, deleted, value, old_value FROM kine"
                " WHERE id > ? AND id <= ? AND name >= ? AND name < ? ORDER BY id",
                (after, upto, prefix, prefix + "\U0010ffff"),
            )
            out: list[Event] = []
            for rid, name, created, deleted, value, old in cur:
                if not name.startswith(prefix):
                    continue
                if deleted:
                    out.append(Event(EventType.DELETE, name, bytes(value), rid, bytes(value)))
                elif created:
                    out.append(Event(EventType.CREATE, name, bytes(value), rid, None))
                else:
                    prev = bytes(old) if old is not None else None
                    out.append(Event(EventType.UPDATE, name, bytes(value), rid, prev))
            return out
        finally:
            conn.execute("COMMIT")

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        with self._qcond:
            if self._stopping:
                return
            self._stopping = True
            while self._leading:  # let the last commit finish; queued operations still complete
                self._qcond.wait()
            self._qcond.notify_all()  # the committer thread, idle now, ends
        committer = self._committer
        if committer is not None and committer is not threading.current_thread():
            committer.join(timeout=10)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._db.close()
        self._release_lockfile()

    def _release_lockfile(self) -> None:
        if self._lockfile is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_UN)
            self._lockfile.close()
            self._lockfile = None

    @property
    def path(self) -> Path:
        return self._path


class SqliteWatch:
    """A cursor: recent events come from the store's ring, older ones from the table."""

    def __init__(self, store: SqliteStore, prefix: str, after_revision: int) -> None:
        self._store = store
        self.prefix = prefix
        self.position = after_revision  # last revision scanned
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._reading = False  # a next_batch is using _conn outside the lock

    def next_batch(self, timeout: float | None = None) -> list[Event]:
        store = self._store
        deadline = None if timeout is None else time.monotonic() + timeout
        cond = store._cond
        cond.acquire()
        try:
            while True:
                if self._closed or store._closed:
                    return []
                if self.position < store._compacted:
                    raise CompactedError(self.position, store._compacted)
                if self.position < store._rev:
                    ring = store._ring
                    ring_start = ring[0].revision if ring else store._rev + 1
                    if self.position + 1 >= ring_start:
                        events = self._from_ring(ring, ring_start)
                    else:
                        # Older than the ring: read the table without holding the lock.
                        upto = min(ring_start - 1, self.position + MAX_BATCH)
                        after = self.position
                        self._reading = True
                        cond.release()
                        try:
                            events = store._read_history(self._connection(), self.prefix, after, upto)
                        finally:
                            cond.acquire()
                            self._reading = False
                            if self._closed:
                                self._close_conn()
                        self.position = upto
                    if events:
                        return events
                    continue
                if deadline is None:
                    cond.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    cond.wait(remaining)
        finally:
            cond.release()

    def _from_ring(self, ring: deque[Event], ring_start: int) -> list[Event]:
        out: list[Event] = []
        start = self.position + 1 - ring_start
        end = len(ring)
        i = start
        prefix = self.prefix
        while i < end and len(out) < MAX_BATCH:
            ev = ring[i]
            if ev.key.startswith(prefix):
                out.append(ev)
            i += 1
        if i > start:
            self.position = ring[i - 1].revision
        return out

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self._store.path, isolation_level=None, check_same_thread=False)
        return self._conn

    def close(self) -> None:
        with self._store._cond:
            self._closed = True
            self._store._cond.notify_all()
            if not self._reading:
                self._close_conn()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _load(db: sqlite3.Connection) -> tuple[dict[str, KeyValue], int, int]:
    """The current value of every key, the store revision and the compaction point."""
    data: dict[str, KeyValue] = {}
    rows = db.execute(
        "SELECT k.id, k.name, k.create_revision, k.value FROM kine AS k"
        " JOIN (SELECT MAX(id) AS id FROM kine GROUP BY name) AS latest ON k.id = latest.id"
        " WHERE k.deleted = 0"
    )
    for rid, name, create_rev, value in rows:
        data[name] = KeyValue(name, bytes(value), int(create_rev), int(rid))
    # AUTOINCREMENT's sqlite_sequence remembers the highest id ever written, even when compaction
    # has deleted that row: the revision must never go backwards across a restart.
    seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
    top = db.execute("SELECT MAX(id) FROM kine").fetchone()
    comp = db.execute("SELECT value FROM kine_meta WHERE name = 'compact_revision'").fetchone()
    compacted = int(comp[0]) if comp else 0
    rev = max(int(seq[0]) if seq else 0, int(top[0] or 0), compacted)
    return data, rev, compacted


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key must be a non-empty string, got {key!r}")


def remove_database(path: str | Path) -> None:
    """Delete a store's files (the database, its WAL and shared-memory files, the lock file)."""
    p = Path(path)
    for suffix in ("", "-wal", "-shm", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p.with_name(p.name + suffix))
