"""SqliteStore specifics: durability across kill -9, reopen, ownership, table-backed history."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from controlplane.storage.interface import CompactedError, Event, EventType, KeyExistsError, StoreError, Watch
from controlplane.storage.sqlite import SqliteStore
from tests.helpers.wait import wait_for

REPO = Path(__file__).resolve().parents[3]

WRITER = textwrap.dedent(
    """
    import sys, threading
    from controlplane.storage.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    out = threading.Lock()

    def writer(t):
        i = 0
        while True:
            key = f"/d/{t}/{i}"
            rev = store.create(key, f"value-{t}-{i}".encode())
            with out:  # acknowledged: the create returned
                sys.stdout.write(f"{key} {rev}\\n")
                sys.stdout.flush()
            i += 1

    for t in range(16):
        threading.Thread(target=writer, args=(t,), daemon=True).start()
    threading.Event().wait()
    """
)


# The same, through create_nowait: a producer keeps 64 creates queued; each is acknowledged by its
# callback (on the committer thread), never by the call that queued it.
NOWAIT_WRITER = textwrap.dedent(
    """
    import sys, threading
    from controlplane.storage.sqlite import SqliteStore

    store = SqliteStore(sys.argv[1])
    out = threading.Lock()
    slots = threading.Semaphore(64)

    def acked(key):
        def done(rev, err):
            if err is None:
                with out:
                    sys.stdout.write(f"{key} {rev}\\n")
                    sys.stdout.flush()
            slots.release()
        return done

    i = 0
    while True:
        slots.acquire()
        key = f"/d/n/{i}"
        store.create_nowait(key, f"value-{i}".encode(), acked(key))
        i += 1
    """
)


@pytest.mark.parametrize("writer", [WRITER, NOWAIT_WRITER], ids=["blocking", "nowait"])
def test_every_acknowledged_write_survives_sigkill(tmp_path: Path, writer: str) -> None:
    db = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", writer, str(db)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    acked: dict[str, int] = {}
    try:
        assert proc.stdout is not None
        while len(acked) < 1500:
            line = proc.stdout.readline()
            assert line, f"writer exited early with {proc.poll()}"
            key, rev = line.decode().split()
            acked[key] = int(rev)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        # Read the rest through the same buffered reader: communicate() reads the pipe's fd
        # directly and would miss what readline() already buffered, starting mid-line (a torn
        # "97 1234" once parsed as key "97" and looked like a lost write).
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=10)
    for line in out.decode().splitlines():  # acknowledged before the kill, still in the pipe
        if line.count(" ") == 1:
            key, rev = line.split()
            acked[key] = int(rev)
    assert proc.returncode == -signal.SIGKILL
    store = SqliteStore(db)
    try:
        missing = [k for k, rev in acked.items() if (kv := store.get(k)) is None or kv.mod_revision != rev]
        assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        assert store.current_revision() >= max(acked.values())
        # The log has no holes: revisions 1..N are all there, each once.
        items, rev = store.list("/d/")
        assert sorted(kv.mod_revision for kv in items) == list(range(1, rev + 1))
    finally:
        store.close()


def test_reopen_keeps_values_and_revision(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    r1 = store.create("/k/a", b"1")
    r2 = store.update("/k/a", b"2", r1)
    store.create("/k/b", b"b")
    _, r4 = store.delete("/k/b")
    store.close()
    store = SqliteStore(tmp_path / "s.db")
    try:
        kv = store.get("/k/a")
        assert kv is not None and (kv.value, kv.create_revision, kv.mod_revision) == (b"2", r1, r2)
        assert store.get("/k/b") is None
        assert store.current_revision() == r4
        assert store.create("/k/c", b"") == r4 + 1
        # History from before the restart replays from the table.
        events = _drain(store.watch("/k/", 0), 5)
        assert [(e.type, e.key, e.revision) for e in events] == [
            (EventType.CREATE, "/k/a", r1),
            (EventType.UPDATE, "/k/a", r2),
            (EventType.CREATE, "/k/b", r2 + 1),
            (EventType.DELETE, "/k/b", r4),
            (EventType.CREATE, "/k/c", r4 + 1),
        ]
        assert events[1].prev_value == b"1" and events[3].value == b"b"
    finally:
        store.close()


def test_revision_never_goes_back_after_compacting_everything(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.create("/k/a", b"")
    _, rev = store.delete("/k/a")
    store.compact(rev)
    store.close()
    assert _rows(tmp_path / "s.db") == 0
    store = SqliteStore(tmp_path / "s.db")
    try:
        assert store.current_revision() == rev
        assert store.create("/k/a", b"") == rev + 1
        with pytest.raises(CompactedError):
            store.watch("/", rev - 1)
    finally:
        store.close()


def test_compaction_keeps_only_latest_row_per_key(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        r = store.create("/k/a", b"1")
        for i in range(5):
            r = store.update("/k/a", str(i).encode(), r)
        store.create("/k/b", b"b")
        _, rdel = store.delete("/k/b")
        store.create("/k/c", b"c")
        assert _rows(tmp_path / "s.db") == 9
        store.compact(rdel)
        assert _rows(tmp_path / "s.db") == 2  # /k/a's latest and /k/c (newer than the compaction)
        assert [kv.value for kv in store.list("/k/")[0]] == [b"4", b"c"]
    finally:
        store.close()


def test_watch_older_than_the_ring_reads_the_table(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db", ring_size=3)
    try:
        revs = [store.create(f"/k/{i}", b"v") for i in range(10)]
        w = store.watch("/k/", revs[1])
        assert [e.revision for e in _drain(w, 8)] == revs[2:]
        w.close()
    finally:
        store.close()


def test_second_opener_is_refused_until_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    with pytest.raises(StoreError, match="in use by another process"):
        SqliteStore(tmp_path / "s.db")
    store.close()
    SqliteStore(tmp_path / "s.db").close()


def test_close_fails_pending_callers_never_hangs(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.create("/k/a", b"")
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.create("/k/b", b"")


def test_group_commit_batches_concurrent_writers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    barrier = threading.Barrier(32)
    done: list[int] = []

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(10):
            done.append(store.create(f"/k/{n}/{i}", b"x"))

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(done) == list(range(1, 321))
        # 32 writers at once share commits: far fewer commits than writes.
        assert store.commit_count < 320
    finally:
        store.close()


def test_nowait_creates_share_commits_with_blocking_writers(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    barrier = threading.Barrier(9)
    blocking: list[int] = []
    nowait: dict[str, int] = {}
    errors: list[BaseException] = []
    all_done = threading.Event()
    lock = threading.Lock()

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(20):
            blocking.append(store.create(f"/k/b{n}/{i}", b"x"))

    def queued(key: str) -> Callable[[int | None, BaseException | None], None]:
        def done(rev: int | None, err: BaseException | None) -> None:
            with lock:
                if err is not None:
                    errors.append(err)
                else:
                    assert rev is not None
                    nowait[key] = rev
                if len(nowait) + len(errors) == 161:
                    all_done.set()

        return done

    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        barrier.wait()
        for i in range(160):
            store.create_nowait(f"/k/n/{i}", b"y", queued(f"/k/n/{i}"))
        store.create_nowait("/k/n/0", b"again", queued("dup"))  # exists by the time it commits
        for t in threads:
            t.join()
        assert all_done.wait(10), f"{len(nowait)} callbacks of 161"
        assert [type(e) for e in errors] == [KeyExistsError]
        # One revision sequence for both kinds of writers, without holes, each revision once.
        assert sorted(blocking + list(nowait.values())) == list(range(1, 321))
        assert all((kv := store.get(k)) is not None and kv.mod_revision == r for k, r in nowait.items())
        assert store.commit_count < 320  # batched
    finally:
        store.close()
    assert not [t for t in threading.enumerate() if t.name == "sqlite-commit"], "committer thread left running"


def test_close_completes_queued_nowait_creates_then_refuses(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    results: dict[str, int | BaseException | None] = {}

    def done_for(key: str) -> Callable[[int | None, BaseException | None], None]:
        def done(rev: int | None, err: BaseException | None) -> None:
            assert key not in results, "a callback ran twice"
            results[key] = err if err is not None else rev

        return done

    for i in range(500):
        store.create_nowait(f"/k/{i}", b"v", done_for(f"/k/{i}"))
    store.close()
    # close() waited for every queued create: each was called back once, with its revision.
    assert len(results) == 500 and all(isinstance(r, int) for r in results.values())
    with pytest.raises(RuntimeError, match="closed"):
        store.create_nowait("/k/late", b"v", done_for("/k/late"))
    reopened = SqliteStore(tmp_path / "s.db")
    try:
        assert {kv.key: kv.mod_revision for kv in reopened.list("/k/")[0]} == results
    finally:
        reopened.close()


def _drain(w: Watch, n: int) -> list[Event]:
    got: list[Event] = []
    while len(got) < n:
        batch = w.next_batch(timeout=2)
        assert batch, f"watch stalled after {len(got)} events"
        got.extend(batch)
    return got


def _rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM kine").fetchone()[0])
    finally:
        conn.close()


def test_chunked_compaction_matches_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random writes and compactions (small chunks): what stays is exactly the newest row of every
    live key at or below the compaction point, plus every row above it; reopening agrees."""
    import random

    from controlplane.storage import sqlite as sqlite_mod

    monkeypatch.setattr(sqlite_mod, "COMPACT_CHUNK", 7)
    rnd = random.Random(1234)
    store = SqliteStore(tmp_path / "s.db")
    model: dict[str, tuple[bytes, int]] = {}  # key -> (value, mod_revision)
    rows: list[tuple[int, str, bool]] = []  # (revision, key, is_delete) of every write
    try:
        for step in range(400):
            key = f"/k/{rnd.randrange(12)}"
            if key in model and rnd.random() < 0.3:
                _, rev = store.delete(key)
                del model[key]
                rows.append((rev, key, True))
            elif key in model:
                value = f"v{step}".encode()
                rev = store.update(key, value, model[key][1])
                model[key] = (value, rev)
                rows.append((rev, key, False))
            else:
                value = f"v{step}".encode()
                rev = store.create(key, value)
                model[key] = (value, rev)
                rows.append((rev, key, False))
            if step % 97 == 96:
                store.compact(rev - rnd.randrange(20))
        point = store.compacted_revision()
        assert point > 0
        newest_at_or_below: dict[str, tuple[int, bool]] = {}
        for rev, key, deleted in rows:
            if rev <= point:
                newest_at_or_below[key] = (rev, deleted)
        expected_rows = sum(1 for _, deleted in newest_at_or_below.values() if not deleted)
        expected_rows += sum(1 for rev, _, _ in rows if rev > point)
        assert _rows(tmp_path / "s.db") == expected_rows
        # History above the compaction point still replays completely.
        events = _drain(store.watch("/k/", point), sum(1 for rev, _, _ in rows if rev > point))
        assert [e.revision for e in events] == [rev for rev, _, _ in rows if rev > point]
    finally:
        store.close()
    store = SqliteStore(tmp_path / "s.db")
    try:
        items, _ = store.list("/k/")
        assert {kv.key: (kv.value, kv.mod_revision) for kv in items} == model
    finally:
        store.close()


def test_writes_interleave_with_a_long_compaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.storage import sqlite as sqlite_mod

    monkeypatch.setattr(sqlite_mod, "COMPACT_CHUNK", 50)
    store = SqliteStore(tmp_path / "s.db")
    try:
        rev = store.create("/k/hot", b"0")
        for i in range(2000):
            rev = store.update("/k/hot", str(i).encode(), rev)
        compacting = threading.Thread(target=store.compact, args=(rev,))
        writes_during: list[int] = []
        compacting.start()
        while compacting.is_alive():
            writes_during.append(store.create(f"/k/new{len(writes_during)}", b""))
        compacting.join()
        # Writes were not held back until the end: they landed between the 40 chunks (one big
        # transaction would have let exactly one through, after it).
        assert store.compacted_revision() == rev
        assert len(writes_during) >= 5
        assert _rows(tmp_path / "s.db") == 1 + len(writes_during)
    finally:
        store.close()


def test_close_while_writers_run_finishes_or_refuses_every_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    acked: list[str] = []
    refused: list[str] = []
    started = threading.Barrier(9)

    def writer(t: int) -> None:
        started.wait()
        i = 0
        while True:
            key = f"/k/{t}/{i}"
            try:
                store.create(key, b"v")
            except RuntimeError:
                refused.append(key)
                return
            acked.append(key)
            i += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    started.wait()
    wait_for(lambda: len(acked) >= 200, message="writes under way")
    store.close()
    for th in threads:
        th.join(timeout=10)
    assert not any(th.is_alive() for th in threads), "a writer hung across close()"
    assert len(refused) == 8
    reopened = SqliteStore(tmp_path / "s.db")
    try:
        assert {kv.key for kv in reopened.list("/k/")[0]} == set(acked)
    finally:
        reopened.close()


def test_a_file_that_is_not_a_store_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "state.db"
    bad.write_bytes(b"this is not a database, just some text that is long enough" * 20)
    with pytest.raises(StoreError, match=r"cannot open store .*state\.db"):
        SqliteStore(bad)
    assert bad.read_bytes().startswith(b"this is not a database")  # left as it was
    SqliteStore(tmp_path / "good.db").close()  # and the lock was released properly
