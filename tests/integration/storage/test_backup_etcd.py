"""etcd backup and restore on a real etcd (no root): ``etcdctl snapshot save`` verified, refusal of
corrupt and foreign snapshots, ``etcdctl snapshot restore`` into a new data dir with a new cluster
token, then the revision bump + compaction that makes every old client revision 410."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controlplane.storage import backup
from controlplane.storage.etcd import EtcdStore
from controlplane.storage.interface import CompactedError
from tests.helpers.etcd import start_etcd

pytestmark = pytest.mark.skipif(shutil.which("etcdctl") is None, reason="etcdctl (etcd-client) not installed")


def test_snapshot_round_trip_with_revision_bump(tmp_path: Path) -> None:
    etcd = start_etcd(tmp_path)
    try:
        s = EtcdStore([etcd.endpoint])
        s.create("/registry/namespaces/default", b"{}")
        s.create("/registry/configmaps/default/kept", b"{}")
        s.create("/registry/configmaps/default/deleted-after", b"{}")
        snap = tmp_path / "snap.db"
        info = backup.save_etcd([etcd.endpoint], snap)
        assert info.kind == "etcd" and info.revision == s.current_revision() and info.etcd_hash is not None
        assert backup.inspect_etcd(snap) == info
        s.delete("/registry/configmaps/default/deleted-after")
        for i in range(20):
            s.create(f"/registry/configmaps/default/created-after-{i}", b"{}")
        old_rev = s.current_revision()
        s.close()

        etcd.stop()
        peer = next(a for a in etcd.argv if a.startswith("kltest="))  # --initial-cluster value
        previous = etcd.data_dir.with_name("data.before")
        etcd.data_dir.rename(previous)
        backup.restore_etcd_data_dir(
            snap,
            etcd.data_dir,
            name="kltest",
            initial_cluster=peer,
            peer_url=peer.split("=", 1)[1],
            token="kltest-restored",
        )
        etcd.restart()
        rev = backup.bump_etcd_revision(etcd.endpoint, old_rev)
        assert rev > old_rev
        r = EtcdStore([etcd.endpoint])
        try:
            assert r.current_revision() == rev
            assert r.get("/registry/configmaps/default/deleted-after") is not None
            assert r.get("/registry/configmaps/default/created-after-0") is None
            assert r.get(backup.BUMP_KEY) is None
            for client_rev in (info.revision, old_rev):
                with pytest.raises(CompactedError):
                    r.watch("/registry/", client_rev).close()
            r.watch("/registry/", rev).close()
        finally:
            r.close()
    finally:
        etcd.stop()


def test_corrupt_and_foreign_snapshots_are_refused(tmp_path: Path) -> None:
    etcd = start_etcd(tmp_path)
    try:
        s = EtcdStore([etcd.endpoint])
        s.create("/not-kubernetes/x", b"{}")
        s.close()
        foreign = tmp_path / "foreign.db"
        with pytest.raises(backup.BackupError, match="without any Kubernetes object"):
            backup.save_etcd([etcd.endpoint], foreign)
        assert not foreign.exists() and not list(tmp_path.glob(".foreign*"))
    finally:
        etcd.stop()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(backup.BackupError, match="not a readable etcd snapshot"):
        backup.inspect_etcd(garbage)
    target = tmp_path / "never"
    with pytest.raises(backup.BackupError):
        backup.restore_etcd_data_dir(
            garbage, target, name="x", initial_cluster="x=http://127.0.0.1:1", peer_url="http://127.0.0.1:1", token="t"
        )
    assert not target.exists()
