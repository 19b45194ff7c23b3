"""EtcdStore over client TLS on a real 3-member etcd cluster (kubeadm's layout: a separate etcd CA,
client and peer TLS with client-certificate auth), on loopback, no root needed.

- The whole Store contract (tests/contract/test_store.py) runs again here, against the TLS cluster.
- Failover: the member in use stops → the store carries on with the next endpoint (reads, writes,
  lists; a broken watch is re-opened from its last revision); a store opened while its first
  endpoint is down starts on the next one.
- TLS is really checked: a wrong CA or a missing client certificate is refused; a missing,
  unreadable or malformed file is a ValueError naming it, and ``kubelab apiserver`` says so in one
  line, without a traceback.

The cluster is started once for the module and stopped by pid at its end (its files removed too);
a test that stops a member starts it again before it ends.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from controlplane import pki
from controlplane.storage.etcd import EtcdStore
from controlplane.storage.interface import Store, StoreError, StoreUnavailableError
from tests.contract import test_store as contract
from tests.helpers.etcd_cluster import EtcdCluster, TlsMember, start_tls_cluster
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (make deps)")

# The contract's tests, collected here too: they take the ``store`` fixture below (TLS etcd).
globals().update({name: fn for name, fn in vars(contract).items() if name.startswith("test_") and callable(fn)})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    base = tmp_path_factory.mktemp("etcdtls")
    c = start_tls_cluster(base, members=3)
    try:
        yield c
    finally:
        c.stop()
        shutil.rmtree(base, ignore_errors=True)


def _wipe(cluster: EtcdCluster) -> None:
    everything = base64.b64encode(b"\0").decode()
    for m in cluster.members:
        if m.alive():
            r = httpx.post(
                f"{m.client_url}/v3/kv/deleterange",
                json={"key": everything, "range_end": everything},
                timeout=10,
                verify=cluster.tls(),
            )
            r.raise_for_status()
            return


@pytest.fixture
def store(cluster: EtcdCluster) -> Iterator[Store]:
    _wipe(cluster)
    s = EtcdStore(cluster.endpoints, **cluster.store_kwargs())
    try:
        yield s
    finally:
        s.close()


def _follower_first(cluster: EtcdCluster) -> list[TlsMember]:
    """The members, a follower first (stopping it needs no election, so no write is refused)."""
    ctx = cluster.tls()
    roles = []
    for m in cluster.members:
        st = httpx.post(f"{m.client_url}/v3/maintenance/status", json={}, timeout=5, verify=ctx).json()
        roles.append((st["header"]["member_id"] == st["leader"], m))
    return [m for leader, m in sorted(roles, key=lambda r: r[0])]


def _restart(cluster: EtcdCluster, m: TlsMember) -> None:
    m.start()
    wait_for(lambda: cluster.healthy(via=m), timeout=30, message=f"etcd member {m.name} to serve again")


def test_fails_over_when_the_member_in_use_stops(cluster: EtcdCluster) -> None:
    order = _follower_first(cluster)
    first = order[0]
    s = EtcdStore([m.client_url for m in order], **cluster.store_kwargs())
    try:
        rev = s.create("/fo/a", b"1")
        assert s.endpoint == first.client_url
        w = s.watch("/fo/", rev)
        first.stop()
        try:
            rev2 = s.create("/fo/b", b"2")  # the next endpoint, at once
            assert rev2 > rev and s.endpoint != first.client_url
            kv = s.get("/fo/a")
            assert kv is not None and kv.value == b"1"
            assert [kv.key for kv in s.list("/fo/")[0]] == ["/fo/a", "/fo/b"]
            # The watch was streaming from the stopped member: it fails, and a new one from its
            # last revision (what the watch cache does) goes on from the live member.
            with pytest.raises(StoreError, match="etcd watch stream broke"):
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    assert not w.next_batch(timeout=0.2), "no event was written"
            w.close()
            w = s.watch("/fo/", w.position)
            got = contract.drain(w, 1)
            assert [(e.key, e.revision) for e in got] == [("/fo/b", rev2)]
        finally:
            w.close()
            _restart(cluster, first)
    finally:
        s.close()


def test_opens_on_the_next_endpoint_when_the_first_is_down(cluster: EtcdCluster) -> None:
    first = _follower_first(cluster)[0]
    first.stop()
    try:
        rest = [m.client_url for m in cluster.members if m is not first]
        s = EtcdStore([first.client_url, *rest], **cluster.store_kwargs())
        try:
            rev = s.create("/fo2/a", b"1")
            assert s.endpoint in rest and s.current_revision() >= rev
            assert s.health() is None
        finally:
            s.close()
    finally:
        _restart(cluster, first)


def test_a_server_not_signed_by_our_ca_is_refused(cluster: EtcdCluster, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_bytes(pki.new_ca("not-etcd").cert_pem)
    with pytest.raises(StoreUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
        EtcdStore(cluster.endpoints, ca=other, cert=cluster.cert, key=cluster.key, timeout=5)


def test_a_client_without_certificate_is_refused(cluster: EtcdCluster) -> None:
    # etcd runs with --client-cert-auth: verifying the server is not enough.
    with pytest.raises(StoreUnavailableError, match="etcd unreachable"):
        EtcdStore(cluster.endpoints, ca=cluster.ca, timeout=5)


def test_bad_tls_files_are_named(cluster: EtcdCluster, tmp_path: Path) -> None:
    missing = tmp_path / "nope.crt"
    with pytest.raises(ValueError, match=f"etcd CA file {missing}: No such file"):
        EtcdStore(cluster.endpoints, ca=missing, cert=cluster.cert, key=cluster.key)
    with pytest.raises(ValueError, match=f"etcd client key file {tmp_path}: Is a directory"):
        EtcdStore(cluster.endpoints, ca=cluster.ca, cert=cluster.cert, key=tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=f"etcd CA file {garbage}: not a PEM certificate"):
        EtcdStore(cluster.endpoints, ca=garbage)
    with pytest.raises(ValueError, match=f"etcd client certificate {garbage} with key {cluster.key}"):
        EtcdStore(cluster.endpoints, ca=cluster.ca, cert=garbage, key=cluster.key)
    with pytest.raises(ValueError, match="go together"):
        EtcdStore(cluster.endpoints, ca=cluster.ca, cert=cluster.cert)


def test_apiserver_names_a_missing_etcd_file_without_a_traceback(cluster: EtcdCluster, tmp_path: Path) -> None:
    missing = tmp_path / "etcd-client.key"
    argv = [
        sys.executable, "-m", "lab", "apiserver", "--data-dir", str(tmp_path / "data"),
        "--listen", "127.0.0.1:0", "--store", "etcd", "--etcd-endpoints", ",".join(cluster.endpoints),
        "--etcd-cafile", str(cluster.ca), "--etcd-certfile", str(cluster.cert), "--etcd-keyfile", str(missing),
    ]  # fmt: skip
    res = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    assert f"etcd client key file {missing}: No such file or directory" in res.stderr
    assert "Traceback" not in res.stderr, res.stderr


def test_store_inspector_reads_over_tls(cluster: EtcdCluster, store: Store) -> None:
    import argparse
    import io

    from controlplane.storage import cli

    rev = store.create("/registry/pods/default/web", b'{"kind":"Pod"}')
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    words = ["store", "--store", "etcd", "--etcd-endpoints", ",".join(cluster.endpoints),
            "--etcd-cafile", str(cluster.ca), "--etcd-certfile", str(cluster.cert), "--etcd-keyfile", str(cluster.key),
            "keys"]  # fmt: skip
    out = io.StringIO()
    assert cli.run(parser.parse_args(words), out) == 0
    assert out.getvalue().splitlines()[2].split() == [str(rev), str(rev), "14", "/registry/pods/default/web"]


def test_many_nowait_creates_each_call_back_once(store: Store) -> None:
    """More creates in flight than the writer has connections (it queues them), some of one key."""
    import threading

    from controlplane.storage.interface import KeyExistsError, NowaitCreates

    assert isinstance(store, NowaitCreates)
    results: dict[int, list[tuple[int | None, BaseException | None]]] = {}
    lock = threading.Lock()
    n = 300
    all_done = threading.Event()

    def record(i: int) -> Callable[[int | None, BaseException | None], None]:
        def done(rev: int | None, err: BaseException | None) -> None:
            with lock:
                results.setdefault(i, []).append((rev, err))
                if sum(len(v) for v in results.values()) == n:
                    all_done.set()

        return done

    for i in range(n):
        key = f"/many/{i}" if i < n - 20 else "/many/same"
        store.create_nowait(key, b"v", record(i))
    assert all_done.wait(30), f"{sum(len(v) for v in results.values())} of {n} callbacks"
    assert all(len(v) == 1 for v in results.values())
    revs = [r for v in results.values() for r, e in v if e is None]
    errs = [e for v in results.values() for r, e in v if e is not None]
    assert len(revs) == n - 19 and len(set(revs)) == len(revs)  # one of the 20 "same" won
    assert len(errs) == 19 and all(isinstance(e, KeyExistsError) for e in errs)
    assert len(store.list("/many/")[0]) == n - 19
