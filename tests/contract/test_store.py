"""The ``Store`` contract (``controlplane/storage/interface.py``), run against every backend.

memory and sqlite always run; etcd runs against a real Debian ``etcd`` started once per module by
``tests/helpers/etcd.py`` on 127.0.0.1 (no root needed, so these run for root and non-root alike;
select them with ``-k etcd``). Revisions are compared relative to what each call returned, never
as absolute numbers: etcd starts at revision 1, the others at 0.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    NowaitCreates,
    Store,
    Watch,
)
from controlplane.storage.memory import MemoryStore
from tests.helpers.etcd import EtcdProcess, start_etcd
from tests.helpers.wait import wait_for


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, Callable[[], None]]:
    store = MemoryStore()
    return store, store.close


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, Callable[[], None]]:
    from controlplane.storage.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "state.db")
    return store, store.close


def _etcd(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, Callable[[], None]]:
    from controlplane.storage.etcd import EtcdStore

    etcd: EtcdProcess = request.getfixturevalue("etcd_server")
    # One etcd per module (it takes ~1 s to start and elect itself); each test starts from an
    # empty key space. Revisions keep counting, which the tests allow for (they are relative).
    httpx.post(
        f"{etcd.endpoint}/v3/kv/deleterange",
        json={"key": base64.b64encode(b"\0").decode(), "range_end": base64.b64encode(b"\0").decode()},
        timeout=10,
    ).raise_for_status()
    store = EtcdStore([etcd.endpoint])
    return store, store.close


BACKENDS = {"memory": _memory, "sqlite": _sqlite, "etcd": _etcd}


@pytest.fixture(scope="module")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdProcess]:
    etcd = start_etcd(tmp_path_factory.mktemp("etcd"))
    try:
        yield etcd
    finally:
        etcd.stop()


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s, teardown = BACKENDS[request.param](request, tmp_path)
    try:
        yield s
    finally:
        teardown()


def drain(w: Watch, count: int, timeout: float = 10.0) -> list[Event]:
    """Read batches until ``count`` events arrived (fail at the deadline)."""
    got: list[Event] = []

    def more() -> bool:
        got.extend(w.next_batch(timeout=0.2))
        return len(got) >= count

    wait_for(more, timeout=timeout, interval=0, message=f"{count} watch events")
    return got


# -- create / get / list -------------------------------------------------------------------


def test_create_then_get(store: Store) -> None:
    before = store.current_revision()
    rev = store.create("/registry/pods/default/a", b'{"a":1}')
    assert rev > before
    kv = store.get("/registry/pods/default/a")
    assert kv is not None
    assert (kv.key, kv.value, kv.create_revision, kv.mod_revision) == (
        "/registry/pods/default/a",
        b'{"a":1}',
        rev,
        rev,
    )
    assert store.current_revision() == rev


def test_create_nowait_reports_the_revision_or_the_error_once_durable(store: Store) -> None:
    if not isinstance(store, NowaitCreates):
        pytest.skip("this backend has only blocking creates")
    results: list[tuple[int | None, BaseException | None]] = []
    done = threading.Event()

    def record(rev: int | None, err: BaseException | None) -> None:
        results.append((rev, err))
        if len(results) == 2:
            done.set()

    before = store.current_revision()
    store.create_nowait("/k/a", b"one", record)
    store.create_nowait("/k/a", b"two", record)
    assert done.wait(10), f"callbacks: {results}"
    # Two queued creates of one key: exactly one wins. Which one is the backend's business (SQLite
    # and memory commit in queue order; etcd runs them on a thread pool, so either may land first).
    won = [(rev, err) for rev, err in results if err is None]
    lost = [(rev, err) for rev, err in results if err is not None]
    assert len(won) == 1 and len(lost) == 1, results
    rev = won[0][0]
    assert rev is not None and rev > before
    rev2, err2 = lost[0]
    assert rev2 is None and isinstance(err2, KeyExistsError) and err2.key == "/k/a"
    kv = store.get("/k/a")
    assert kv is not None and kv.value in (b"one", b"two") and kv.mod_revision == rev
    from controlplane.storage.etcd import EtcdStore

    if not isinstance(store, EtcdStore):
        assert kv.value == b"one"  # a single committer: queue order
    assert store.current_revision() == rev


def test_get_missing_is_none(store: Store) -> None:
    assert store.get("/registry/pods/default/nope") is None


def test_create_existing_conflicts_and_changes_nothing(store: Store) -> None:
    rev = store.create("/k/a", b"one")
    with pytest.raises(KeyExistsError) as exc:
        store.create("/k/a", b"two")
    assert exc.value.key == "/k/a"
    kv = store.get("/k/a")
    assert kv is not None and kv.value == b"one" and kv.mod_revision == rev
    assert store.current_revision() == rev


def test_list_prefix_sorted_with_read_revision(store: Store) -> None:
    for name in ["c", "a", "b"]:
        store.create(f"/registry/pods/ns1/{name}", name.encode())
    store.create("/registry/pods/ns10/x", b"other namespace")
    store.create("/registry/services/ns1/a", b"other resource")
    items, rev = store.list("/registry/pods/ns1/")
    assert [kv.key for kv in items] == [f"/registry/pods/ns1/{n}" for n in "abc"]
    assert [kv.value for kv in items] == [b"a", b"b", b"c"]
    assert rev == store.current_revision()
    everything, _ = store.list("/registry/")
    assert len(everything) == 5
    assert store.list("/nothing/") == ([], rev)


# -- update --------------------------------------------------------------------------------


def test_update_if_revision(store: Store) -> None:
    created = store.create("/k/a", b"v1")
    rev2 = store.update("/k/a", b"v2", created)
    assert rev2 > created
    kv = store.get("/k/a")
    assert kv is not None
    assert (kv.value, kv.create_revision, kv.mod_revision) == (b"v2", created, rev2)


def test_stale_update_conflicts_and_changes_nothing(store: Store) -> None:
    created = store.create("/k/a", b"v1")
    rev2 = store.update("/k/a", b"v2", created)
    with pytest.raises(ConflictError) as exc:
        store.update("/k/a", b"v3", created)
    assert (exc.value.key, exc.value.expected, exc.value.actual) == ("/k/a", created, rev2)
    kv = store.get("/k/a")
    assert kv is not None and kv.value == b"v2" and kv.mod_revision == rev2
    assert store.current_revision() == rev2


def test_update_missing_key(store: Store) -> None:
    before = store.current_revision()
    with pytest.raises(KeyNotFoundError):
        store.update("/k/missing", b"v", 1)
    assert store.current_revision() == before
    assert store.get("/k/missing") is None


# -- delete --------------------------------------------------------------------------------


def test_delete_without_expected_revision(store: Store) -> None:
    created = store.create("/k/a", b"v1")
    mod = store.update("/k/a", b"v2", created)
    old, rev = store.delete("/k/a")
    assert rev > mod
    assert (old.key, old.value, old.create_revision, old.mod_revision) == ("/k/a", b"v2", created, mod)
    assert store.get("/k/a") is None
    assert store.current_revision() == rev


def test_delete_with_expected_revision(store: Store) -> None:
    created = store.create("/k/a", b"v1")
    mod = store.update("/k/a", b"v2", created)
    with pytest.raises(ConflictError) as exc:
        store.delete("/k/a", expected_revision=created)
    assert exc.value.actual == mod
    assert store.get("/k/a") is not None
    assert store.current_revision() == mod
    old, rev = store.delete("/k/a", expected_revision=mod)
    assert old.value == b"v2" and rev > mod
    assert store.get("/k/a") is None


def test_delete_missing_key(store: Store) -> None:
    before = store.current_revision()
    with pytest.raises(KeyNotFoundError):
        store.delete("/k/missing")
    with pytest.raises(KeyNotFoundError):
        store.delete("/k/missing", expected_revision=5)
    assert store.current_revision() == before


def test_recreate_after_delete_starts_a_new_life(store: Store) -> None:
    first = store.create("/k/a", b"v1")
    store.delete("/k/a")
    second = store.create("/k/a", b"v2")
    kv = store.get("/k/a")
    assert kv is not None and kv.create_revision == second > first and kv.value == b"v2"


# -- revisions -----------------------------------------------------------------------------


def test_revision_is_global_and_strictly_increasing(store: Store) -> None:
    revs = [store.create("/a/1", b"")]
    revs.append(store.create("/b/1", b""))
    revs.append(store.update("/a/1", b"x", revs[0]))
    revs.append(store.delete("/b/1")[1])
    revs.append(store.create("/c/1", b""))
    assert revs == sorted(set(revs))
    assert store.current_revision() == revs[-1]
    # A failed write takes no revision.
    with pytest.raises(ConflictError):
        store.update("/a/1", b"y", revs[0])
    assert store.create("/d/1", b"") == revs[-1] + 1


# -- watch ---------------------------------------------------------------------------------


def test_watch_replays_history_then_streams_live_in_order(store: Store) -> None:
    start = store.current_revision()
    r1 = store.create("/w/a", b"1")
    r2 = store.update("/w/a", b"2", r1)
    r3 = store.create("/w/b", b"b")
    _, r4 = store.delete("/w/a")
    w = store.watch("/w/", start)
    try:
        history = drain(w, 4)
        assert [(e.type, e.key, e.value, e.revision) for e in history] == [
            (EventType.CREATE, "/w/a", b"1", r1),
            (EventType.UPDATE, "/w/a", b"2", r2),
            (EventType.CREATE, "/w/b", b"b", r3),
            (EventType.DELETE, "/w/a", b"2", r4),
        ]
        assert history[1].prev_value == b"1"
        # Now live: nothing pending, then new writes arrive in order.
        assert w.next_batch(timeout=0.05) == []
        r5 = store.update("/w/b", b"b2", r3)
        r6 = store.create("/w/c", b"c")
        live = drain(w, 2)
        assert [(e.type, e.key, e.revision) for e in live] == [
            (EventType.UPDATE, "/w/b", r5),
            (EventType.CREATE, "/w/c", r6),
        ]
    finally:
        w.close()


def test_watch_from_a_middle_revision(store: Store) -> None:
    r1 = store.create("/w/a", b"1")
    r2 = store.create("/w/b", b"2")
    r3 = store.create("/w/c", b"3")
    w = store.watch("/w/", r1)
    try:
        assert [e.revision for e in drain(w, 2)] == [r2, r3]
    finally:
        w.close()


def test_watch_filters_by_prefix(store: Store) -> None:
    start = store.current_revision()
    store.create("/registry/pods/a", b"")
    rb = store.create("/registry/services/a", b"")
    store.create("/registry/podsecurity/x", b"")  # shares the string prefix "/registry/pods"
    rc = store.create("/registry/services/b", b"")
    w = store.watch("/registry/services/", start)
    try:
        events = drain(w, 2)
        assert [(e.key, e.revision) for e in events] == [
            ("/registry/services/a", rb),
            ("/registry/services/b", rc),
        ]
        store.create("/registry/pods/b", b"")
        rd = store.delete("/registry/services/a")[1]
        assert [(e.type, e.key, e.revision) for e in drain(w, 1)] == [(EventType.DELETE, "/registry/services/a", rd)]
    finally:
        w.close()


def test_watch_next_batch_times_out_empty(store: Store) -> None:
    w = store.watch("/quiet/", store.current_revision())
    try:
        t0 = time.monotonic()
        assert w.next_batch(timeout=0.2) == []
        assert time.monotonic() - t0 >= 0.15
    finally:
        w.close()


def test_closing_a_watch_wakes_a_blocked_next_batch(store: Store) -> None:
    w = store.watch("/quiet/", store.current_revision())
    result: list[list[Event]] = []
    t = threading.Thread(target=lambda: result.append(w.next_batch(timeout=None)), daemon=True)
    t.start()
    wait_for(lambda: t.is_alive(), message="watcher thread running")
    w.close()
    t.join(timeout=5)
    assert not t.is_alive(), "next_batch stayed blocked after close"
    assert result == [[]]
    assert w.next_batch(timeout=None) == []  # closed stays closed, never blocks


def test_watch_sees_every_concurrent_write_without_holes(store: Store) -> None:
    start = store.current_revision()
    w = store.watch("/cw/", start)
    revs: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(25):
            r = store.create(f"/cw/{n}/{i}", b"x")
            with lock:
                revs.append(r)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        events = drain(w, len(revs), timeout=20)
        seen = [e.revision for e in events]
        assert seen == sorted(revs)  # in order, each exactly once, nothing missing
        assert seen == list(range(start + 1, start + 1 + len(revs)))  # no holes
    finally:
        w.close()


# -- compaction ----------------------------------------------------------------------------


def test_compaction_forgets_history_but_keeps_current_values(store: Store) -> None:
    r1 = store.create("/c/a", b"a1")
    store.create("/c/b", b"b1")
    r3 = store.update("/c/a", b"a2", r1)
    r4 = store.create("/c/gone", b"g")
    store.delete("/c/gone", expected_revision=r4)
    r6 = store.create("/c/d", b"d")
    store.compact(r3)
    with pytest.raises(CompactedError) as exc:
        store.watch("/c/", r1)
    assert exc.value.requested == r1
    w = store.watch("/c/", r3)
    try:
        assert [e.revision for e in drain(w, 3)] == [r4, r4 + 1, r6]
    finally:
        w.close()
    items, _ = store.list("/c/")
    assert [(kv.key, kv.value) for kv in items] == [("/c/a", b"a2"), ("/c/b", b"b1"), ("/c/d", b"d")]
    # Writes go on from where they were.
    assert store.create("/c/e", b"") == r6 + 1


# -- concurrency ---------------------------------------------------------------------------


def test_concurrent_compare_and_swap_loses_no_update(store: Store) -> None:
    rev0 = store.create("/counter", b"0")
    revisions: list[int] = [rev0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def incrementer() -> None:
        try:
            for _ in range(15):
                while True:
                    kv = store.get("/counter")
                    assert kv is not None
                    try:
                        r = store.update("/counter", str(int(kv.value) + 1).encode(), kv.mod_revision)
                    except ConflictError:
                        continue
                    with lock:
                        revisions.append(r)
                    break
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=incrementer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    kv = store.get("/counter")
    assert kv is not None and int(kv.value) == 90
    assert len(set(revisions)) == len(revisions) == 91


def test_concurrent_creates_get_unique_revisions(store: Store) -> None:
    revs: list[int] = []
    lock = threading.Lock()
    duplicates: list[str] = []

    def creator(n: int) -> None:
        for i in range(20):
            key = f"/u/{i}"
            try:
                r = store.create(key, str(n).encode())
            except KeyExistsError:
                duplicates.append(key)
                continue
            with lock:
                revs.append(r)

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every key was created exactly once; the four other attempts each got KeyExistsError.
    assert len(revs) == 20 and len(set(revs)) == 20
    assert len(duplicates) == 80
    assert len(store.list("/u/")[0]) == 20


def test_list_is_a_consistent_snapshot_under_concurrent_writes(store: Store) -> None:
    created: dict[str, int] = {}
    snapshots: list[tuple[set[str], int]] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(150):
                key = f"/snap/{i:04d}"
                created[key] = store.create(key, b"x")
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    while True:
        finished = done.wait(0.002)  # paces the lists so the writer is not starved of the GIL
        items, rev = store.list("/snap/")
        assert all(kv.mod_revision <= rev for kv in items)
        snapshots.append(({kv.key for kv in items}, rev))
        if finished:
            break
    t.join()
    assert len(snapshots[-1][0]) == 150
    for keys, rev in snapshots:
        # Exactly the keys created at or before the revision the list says it was read at.
        assert keys == {k for k, r in created.items() if r <= rev}


def test_empty_prefix_means_every_key(store: Store) -> None:
    start = store.current_revision()
    ra = store.create("/a/1", b"")
    rb = store.create("/b/1", b"")
    assert [kv.key for kv in store.list("")[0]] == ["/a/1", "/b/1"]
    w = store.watch("", start)
    try:
        assert [e.revision for e in drain(w, 2)] == [ra, rb]
    finally:
        w.close()
