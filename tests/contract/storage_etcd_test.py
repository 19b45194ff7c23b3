"""EtcdStore beyond the shared contract: failures of the real etcd, compaction points, paging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.storage import etcd as etcd_mod
from controlplane.storage.etcd import EtcdStore
from controlplane.storage.interface import CompactedError, StoreError
from tests.helpers.etcd import EtcdProcess, free_port, start_etcd
from tests.helpers.wait import wait_for


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdProcess]:
    proc = start_etcd(tmp_path)
    try:
        yield proc
    finally:
        proc.stop()


def test_compacted_watch_names_the_compaction_point(etcd: EtcdProcess) -> None:
    store = EtcdStore([etcd.endpoint])
    try:
        revs = [store.create(f"/k/{i}", b"v") for i in range(5)]
        store.compact(revs[2])
        with pytest.raises(CompactedError) as exc:
            store.watch("/k/", revs[0])
        assert exc.value.requested == revs[0]
        assert exc.value.compacted == revs[2]
        store.compact(revs[1])  # older than what is already compacted: a no-op, no error
    finally:
        store.close()


def test_watch_reports_a_broken_stream_and_resumes_after_restart(etcd: EtcdProcess) -> None:
    store = EtcdStore([etcd.endpoint])
    try:
        rev = store.create("/k/a", b"1")
        w = store.watch("/k/", rev)
        etcd.kill()

        def broke() -> bool:
            try:
                w.next_batch(timeout=0.1)
            except StoreError:
                return True
            return False

        wait_for(broke, timeout=10, message="watch to report the lost stream")
        w.close()
        # Writes while etcd is down fail with a clear error (the pooled connection is dead) ...
        with pytest.raises(StoreError, match="etcd unreachable at http://"):
            store.create("/k/b", b"x")
        etcd.restart()  # ... and work again once it is back (the pool opens a new connection)
        w2 = store.watch("/k/", rev)
        r2 = store.update("/k/a", b"2", rev)
        events = wait_for(lambda: w2.next_batch(timeout=0.2), message="event after restart")
        assert [e.revision for e in events] == [r2]
        w2.close()
    finally:
        store.close()


def test_list_pages_at_one_revision(etcd: EtcdProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_mod, "PAGE", 7)
    store = EtcdStore([etcd.endpoint])
    try:
        for i in range(30):
            store.create(f"/p/{i:03d}", str(i).encode())
        store.create("/q/other", b"")
        items, rev = store.list("/p/")
        assert [kv.key for kv in items] == [f"/p/{i:03d}" for i in range(30)]
        assert rev == store.current_revision()
    finally:
        store.close()


def test_fails_over_to_a_live_endpoint(etcd: EtcdProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = EtcdStore([dead, etcd.endpoint])
    try:
        rev = store.create("/k/a", b"v")
        kv = store.get("/k/a")
        assert kv is not None and kv.mod_revision == rev
        assert store.endpoint == etcd.endpoint
    finally:
        store.close()


def test_bad_endpoints_are_named() -> None:
    with pytest.raises(ValueError, match="at least one endpoint"):
        EtcdStore([])
    with pytest.raises(ValueError, match=r"127\.0\.0\.1:notaport"):
        EtcdStore(["127.0.0.1:notaport"])
    with pytest.raises(ValueError, match="must look like"):
        EtcdStore(["http://127.0.0.1:notaport"])
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError, match="etcd unreachable"):
        EtcdStore([dead], timeout=2)


def test_store_inspector_reads_etcd(etcd: EtcdProcess) -> None:
    import argparse
    import io

    from controlplane.storage import cli

    store = EtcdStore([etcd.endpoint])
    try:
        r1 = store.create("/registry/pods/default/web", b'{"kind":"Pod"}')
        _, r2 = store.delete("/registry/pods/default/web")
        r3 = store.create("/registry/pods/default/db", b'{"kind":"Pod"}')
    finally:
        store.close()
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    common = ["store", "--store", "etcd", "--etcd-endpoints", etcd.endpoint]
    out = io.StringIO()
    assert cli.run(parser.parse_args([*common, "keys"]), out) == 0
    assert out.getvalue().splitlines()[2].split() == [str(r3), str(r3), "14", "/registry/pods/default/db"]
    out = io.StringIO()
    assert cli.run(parser.parse_args([*common, "log", "--since", str(r1 - 1)]), out) == 0
    assert [line.split()[:2] for line in out.getvalue().splitlines()] == [
        [str(r1), "CREATE"],
        [str(r2), "DELETE"],
        [str(r3), "CREATE"],
    ]
