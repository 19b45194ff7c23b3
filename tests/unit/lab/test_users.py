"""``kubelab user add|list`` and the component identities of the PKI (no root: a temporary data dir)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controlplane import pki
from lab import users


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    pki.ensure_cluster_pki(tmp_path, server_url="https://192.168.56.10:6443")
    return tmp_path


def _user_of(kubeconfig: Path) -> tuple[str, tuple[str, ...], str]:
    import base64

    doc = yaml.safe_load(kubeconfig.read_text())
    cert = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    return (*pki.cert_subject(cert), doc["clusters"][0]["cluster"]["server"])


def test_control_plane_components_have_their_own_identities(data_dir: Path) -> None:
    assert _user_of(data_dir / "scheduler.kubeconfig") == ("system:kube-scheduler", (), "https://192.168.56.10:6443")
    assert _user_of(data_dir / "controller-manager.kubeconfig")[:2] == ("system:kube-controller-manager", ())
    assert _user_of(data_dir / "admin.kubeconfig")[:2] == ("kubernetes-admin", ("system:masters",))
    assert (data_dir / "pki" / "sa.key").stat().st_mode & 0o777 == 0o600
    before = (data_dir / "pki" / "sa.key").read_bytes(), (data_dir / "pki" / "scheduler.crt").read_bytes()
    pki.ensure_cluster_pki(data_dir, server_url="https://192.168.56.10:6443")
    assert before == ((data_dir / "pki" / "sa.key").read_bytes(), (data_dir / "pki" / "scheduler.crt").read_bytes())


def test_user_add_and_list(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = users.add_user(data_dir, "alice", ["devs", "ops"])
    assert path == data_dir / "users" / "alice.kubeconfig"
    assert _user_of(path) == ("alice", ("devs", "ops"), "https://192.168.56.10:6443")
    assert path.stat().st_mode & 0o777 == 0o600
    first = (data_dir / "pki" / "users" / "alice.crt").read_bytes()
    users.add_user(data_dir, "alice", ["devs", "ops"])
    assert (data_dir / "pki" / "users" / "alice.crt").read_bytes() == first  # same groups: reused
    users.add_user(data_dir, "alice", ["devs"])
    assert _user_of(path)[:2] == ("alice", ("devs",))
    users.add_user(data_dir, "bob", [])
    listed = [(u.name, u.groups, u.kubeconfig) for u in users.list_users(data_dir)]
    assert listed == [("alice", ("devs",), path), ("bob", (), data_dir / "users" / "bob.kubeconfig")]
    args = users.argparse.Namespace(action="list", name="", group=[], data_dir=data_dir, server="")
    assert users.cmd_user(args) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "devs" in out and "bob" in out


@pytest.mark.parametrize("name", ["", "../evil", ".hidden", "a/b", " alice"])
def test_bad_names_change_nothing(data_dir: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = users.argparse.Namespace(action="add", name=name, group=[], data_dir=data_dir, server="")
    assert users.cmd_user(args) == 1
    assert "kubelab user:" in capsys.readouterr().err
    assert not (data_dir / "users").exists()


def test_no_cluster_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(users.UserError, match="no cluster CA"):
        users.add_user(tmp_path, "alice", [])
